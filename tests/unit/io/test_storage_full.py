"""Writes that fail for lack of room: the error is kept, named, and nothing is published.

``FullDisk`` is a real file whose raw writes stop fitting after ``limit`` bytes (the part that fits is
written, then ``OSError(ENOSPC)``), under Python's own buffering, as on a full file system.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import pytest
from full_disk import full_disk

from batchsep.errors import StorageAccessError, StorageError, StorageFullError
from batchsep.io import storage
from batchsep.io.storage import TMP_PREFIX


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, StorageFullError),
        (errno.EDQUOT, StorageFullError),
        (errno.EROFS, StorageFullError),
        (errno.EACCES, StorageError),
    ],
)
def test_wrap_tells_a_full_storage_from_a_file_of_its_own(code, kind):
    err = storage._wrap("/out/a.wav", "write", OSError(code, os.strerror(code)))
    assert type(err) is kind
    assert str(err) == f"cannot write /out/a.wav: {os.strerror(code)}"


def test_s3_quota_and_access_errors():
    assert isinstance(
        storage._wrap("s3://b/a.wav", "write", OSError("XMinioStorageFull: drive full")),
        StorageFullError,
    )
    assert isinstance(
        storage._wrap("s3://b/a.wav", "write", OSError("AWS Error ACCESS_DENIED")),
        StorageAccessError,
    )


def _temps(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(TMP_PREFIX)]


@pytest.mark.parametrize("limit", [0, 100, 70_000])
def test_a_failed_write_that_the_writer_swallowed_is_raised_and_nothing_is_published(
    tmp_path, monkeypatch, limit
):
    """As soundfile's C callbacks do: the OSError is caught inside the block, the encoder goes on (or
    fails its own way); the atomic writer raises the disk's error, never publishes, leaves no temp."""
    full_disk(monkeypatch, limit)
    uri = str(tmp_path / "a.wav")
    expected = r"cannot write .*a\.wav: No space left on device"
    with pytest.raises(StorageFullError, match=expected), storage.atomic_writer(uri) as f:
        for _ in range(20):
            with contextlib.suppress(OSError):  # swallowed, as by cffi
                f.write(b"x" * 8192)
    assert not os.path.exists(uri) and _temps(tmp_path) == []


def test_the_disk_error_replaces_the_encoders_own_failure(tmp_path, monkeypatch):
    full_disk(monkeypatch, 10)
    uri = str(tmp_path / "a.wav")
    with pytest.raises(StorageFullError) as info, storage.atomic_writer(uri) as f:
        with contextlib.suppress(OSError):
            f.write(b"x" * 100_000)  # a write larger than the buffer reaches the disk at once
        raise AssertionError  # soundfile: assert written == len(data)
    assert isinstance(info.value.__cause__, AssertionError)
    assert not os.path.exists(uri) and _temps(tmp_path) == []


def test_a_failure_at_the_last_flush_is_reported_deferred_or_not(tmp_path, monkeypatch):
    """The bytes of the end stay in Python's buffer until the file is published: the disk fills then."""
    full_disk(monkeypatch, 1000)
    with pytest.raises(StorageFullError), storage.atomic_writer(str(tmp_path / "now.bin")) as f:
        f.write(b"x" * 2000)  # buffered: no error yet
    deferred = storage.DeferredWrites()
    with storage.atomic_writer(str(tmp_path / "later.bin"), deferred=deferred) as f:
        f.write(b"x" * 2000)
    errors = deferred.close()
    assert list(errors) == [str(tmp_path / "later.bin")]
    assert isinstance(errors[str(tmp_path / "later.bin")], StorageFullError)
    assert os.listdir(tmp_path) == []


def test_a_write_after_a_failed_one_is_refused(tmp_path, monkeypatch):
    """A file that lost bytes is never written any further (a later write could fit and hide the gap)."""
    full_disk(monkeypatch, 0)
    with pytest.raises(StorageFullError), storage.atomic_writer(str(tmp_path / "a.bin")) as f:
        with pytest.raises(OSError):
            f.write(b"x" * 100_000)
        with pytest.raises(OSError):
            f.write(b"y")
        with pytest.raises(OSError):
            f.seek(0)
    assert os.listdir(tmp_path) == []
