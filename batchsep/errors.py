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


class ConfigError(ParameterError):
    """A configuration or job spec is invalid (unknown key, wrong type, missing field)."""


class AudioDecodeError(BatchsepError):
    """Bytes could not be decoded as audio, or the decoded audio is unusable (empty, NaN, ...)."""


class StorageError(BatchsepError):
    """A URI could not be listed, read or written."""


class StorageAccessError(StorageError):
    """The object store refused the credentials or could not be reached: not a missing or bad URI."""


class RegistryError(BatchsepError, KeyError):
    """A registry lookup failed, or a name was registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
