"""The one error type for user mistakes (bad path, bad config, wrong checkpoint, bad input)."""


class RtilError(Exception):
    """A user-facing error with an actionable message; CLIs print it without a traceback and exit 2."""
