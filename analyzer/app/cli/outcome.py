"""Exit statuses shared by `run` and `rollout`: 0 promoted, 1 rolled back, 3 inconclusive or paused, 2 error."""

from __future__ import annotations

EXIT_PROMOTED, EXIT_ROLLED_BACK, EXIT_ERROR, EXIT_UNDECIDED = 0, 1, 2, 3

EXIT_BY_OUTCOME = {
    "promoted": EXIT_PROMOTED,
    "rolled_back": EXIT_ROLLED_BACK,
    "aborted": EXIT_ROLLED_BACK,  # the canary is gone, as after a rollback
    "failed": EXIT_ERROR,  # the analyzer could not act
    "inconclusive": EXIT_UNDECIDED,
    "paused": EXIT_UNDECIDED,
}


def exit_status(outcome: str | None) -> int:
    """The exit status for a rollout's outcome; a rollout still running counts as undecided."""
    return EXIT_BY_OUTCOME.get(outcome or "", EXIT_UNDECIDED)
