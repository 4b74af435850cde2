"""The one exception tree of batchsep.

Every error raised on purpose by batchsep derives from :class:`BatchsepError`, so callers can catch
the whole family at once; the subclasses say *what* went wrong, and messages name the offending value
and the rule it broke (``"sample_rate=0 must be > 0"``).
"""

from __future__ import annotations


class BatchsepError(Exception):
    """Base class of every error batchsep raises deliberately."""


class ParameterError(BatchsepError, ValueError):
    """An argument has an invalid value, dtype or shape."""


class OutputBusyError(ParameterError):
    """The output folder is held by another live run (its lease, :mod:`batchsep.io.lease`)."""


class ConfigError(ParameterError):
    """A configuration or job spec is invalid (unknown key, wrong type, missing field)."""


class AudioDecodeError(BatchsepError):
    """Bytes could not be decoded as audio, or the decoded audio is unusable (empty, NaN, ...)."""


class StorageError(BatchsepError):
    """A URI could not be listed, read or written."""


class StorageAccessError(StorageError):
    """The object store refused the credentials or could not be reached: not a missing or bad URI."""


class StorageFullError(StorageError):
    """A write was refused for lack of room (no space left on the device, quota exceeded) or by a
    read-only file system: every further write to that storage fails the same way."""


class JobStoppedError(BatchsepError):
    """A job stopped before its end because every further file would fail too (the output storage is
    full, the object store refuses the credentials): what was done is committed, and ``summary`` (the
    stage's summary object) counts it. The message says what to do before running the job again."""

    def __init__(self, message: str, summary: object = None) -> None:
        super().__init__(message)
        self.summary = summary


class RegistryError(BatchsepError, KeyError):
    """A registry lookup failed, or a name was registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
