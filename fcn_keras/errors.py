"""The project's own error type.

Every problem caused by the user's input (bad files, bad flags, impossible sizes) is raised as
`FCNError` so the command line can print one clear message and exit with status 2 instead of a
traceback. Anything else is a bug and keeps its traceback.
"""


class FCNError(Exception):
    """A user-facing error: the message names the file (when there is one) and what is wrong."""

    exit_code = 2


class DataError(FCNError):
    """A dataset, annotation, image or mask file cannot be used."""


class ConfigError(FCNError):
    """A combination of flags or sizes that cannot work."""


class OutputError(FCNError, OSError):
    """An output file or folder cannot be written (a read-only place, a folder where a file
    should go). Also an `OSError`, so code that handles failed writes as `OSError` still does."""


class WorkerLost(FCNError):
    """Another worker of a multi-worker run died or stopped answering. Not the user's input,
    but the same one-line report; exit status 75 (EX_TEMPFAIL): restart with `--resume`."""

    exit_code = 75
