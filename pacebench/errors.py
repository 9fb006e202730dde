"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class PacebenchError(Exception):
    """A failure the user can fix; the message names the problem and the fix. Exit code 1."""

    exit_code = 1


class UsageError(PacebenchError):
    """Bad input on the command line or in a config (unknown name, malformed value). Exit code 2."""

    exit_code = 2


class DataError(PacebenchError):
    """A data set or weight file is missing, malformed or unreadable."""


def one_line(exc: BaseException) -> str:
    """The message of `exc` as one line. An error raised in a DataLoader worker comes back re-raised with the
    worker's traceback in its message; the last line holds the original message."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split(": ", 1)[1] if text.split(": ", 1)[0].endswith("Error") else text
    return " ".join(text.split())
