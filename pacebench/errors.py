"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class PacebenchError(Exception):
    """A failure the user can fix; the message names the problem and the fix. Exit code 1."""

    exit_code = 1


class UsageError(PacebenchError):
    """Bad input on the command line or in a config (unknown name, malformed value). Exit code 2."""

    exit_code = 2


class DataError(PacebenchError):
    """A data set or weight file is missing, malformed or unreadable."""
