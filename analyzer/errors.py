"""The project's own exception types for a user's mistake: the CLI prints the message as one line and exits 2."""


class UserError(Exception):
    """Bad input from the user (a spec, an option, an id); the message names the field and the value."""


class NotFound(UserError):
    """Something the user named (a rollout id, a history store) does not exist; the message says what and where."""
