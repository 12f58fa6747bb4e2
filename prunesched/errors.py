"""The exceptions prunesched raises for bad input.

Every message is one line that names what is wrong and what would be valid, so the CLI can
print it as is and exit with code 2.
"""


class PruneschedError(Exception):
    """Base class of every error caused by input the user can fix."""


class ScheduleError(PruneschedError, ValueError):
    """A schedule document or table is malformed, or does not fit the pipeline it is applied to."""


class UnsupportedModelError(PruneschedError, TypeError):
    """The pipeline or one of its blocks is of a kind the runtime cannot patch correctly."""


class StorageError(PruneschedError):
    """A search database that cannot be used: missing, not ours, from a newer version, unknown ids."""


class ConfigError(PruneschedError, ValueError):
    """An invalid search configuration."""


class OutputError(PruneschedError):
    """A file a command was asked to write that it must not or cannot: the search database, a link or device, a full disk."""
