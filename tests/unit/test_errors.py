"""The exception tree: who derives from what, and readable messages."""

from __future__ import annotations

import pytest

from batchsep.errors import (
    AudioDecodeError,
    BatchsepError,
    ConfigError,
    ParameterError,
    RegistryError,
    StorageError,
)


@pytest.mark.parametrize(
    ("cls", "bases", "not_bases"),
    [
        (ParameterError, (BatchsepError, ValueError), (KeyError,)),
        (ConfigError, (ParameterError, BatchsepError, ValueError), (KeyError,)),
        (AudioDecodeError, (BatchsepError,), (ValueError, OSError)),
        (StorageError, (BatchsepError,), (ValueError, OSError)),
        (RegistryError, (BatchsepError, KeyError), (ValueError,)),
    ],
)
def test_hierarchy(cls, bases, not_bases):
    assert issubclass(cls, Exception)
    for b in bases:
        assert issubclass(cls, b), (cls, b)
    for b in not_bases:
        assert not issubclass(cls, b), (cls, b)


def test_one_except_catches_every_kind():
    caught = []
    for cls in (ParameterError, ConfigError, AudioDecodeError, StorageError, RegistryError):
        try:
            raise cls("x")
        except BatchsepError as e:
            caught.append(type(e))
    assert caught == [ParameterError, ConfigError, AudioDecodeError, StorageError, RegistryError]


def test_parameter_error_is_caught_as_value_error():
    with pytest.raises(ValueError, match=r"sample_rate=0 must be > 0"):
        raise ParameterError("sample_rate=0 must be > 0")


def test_registry_error_message_is_not_quoted():
    # A plain KeyError renders as "'msg'"; RegistryError keeps the message readable.
    assert str(KeyError("unknown model 'x'")) == "\"unknown model 'x'\""
    assert str(RegistryError("unknown model 'x'")) == "unknown model 'x'"
    assert str(RegistryError()) == ""
    with pytest.raises(KeyError):
        raise RegistryError("missing")
