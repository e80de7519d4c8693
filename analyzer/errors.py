"""The one exception type for a user's mistake: the CLI prints it as is and exits 2, without a traceback."""


class UserError(Exception):
    """Bad input from the user (a spec, an option, an id); the message names the field and the value."""
