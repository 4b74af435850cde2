"""Storage by URI: local paths, ``file://`` and ``s3://`` behind one small set of functions.

Local paths go to the operating system directly (fast listing that never follows directory symlinks, so a
symlink loop cannot hang a scan); ``s3://bucket/key`` goes through :class:`pyarrow.fs.S3FileSystem`, whose
endpoint comes from ``AWS_ENDPOINT_URL`` (any S3-compatible server) and credentials from the usual
``AWS_*`` variables. Writes are atomic: a local file is written under a temporary name in the same folder
and renamed; an S3 object becomes visible only when its upload completes. :class:`DeferredWrites` finishes
them on a background thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.fs as pafs

from batchsep.errors import StorageError
from batchsep.io.listing import exists, is_file, iter_files, list_files
from batchsep.io.uris import (
    FULL_ERRNOS,
    S3_ACCESS_ERRORS,
    S3_FULL_ERRORS,
    S3_NETWORK_ERRORS,
    TMP_PREFIX,
    FileEntry,
    _local_path,
    _s3_filesystem,
    _wrap,
    filesystem,
    is_s3,
    join,
    normalize,
    parent,
    resolve_links,
    s3_filesystem,
)

__all__ = [  # the storage API; URIs from batchsep.io.uris, listings from batchsep.io.listing
    "COPY_BLOCK", "FULL_ERRNOS", "S3_ACCESS_ERRORS", "S3_FULL_ERRORS", "S3_NETWORK_ERRORS",
    "S3_REQUEST_THREADS", "TMP_PREFIX", "DeferredWrites", "FileEntry", "WriteGuard", "_local_path",
    "_s3_filesystem", "_wrap", "atomic_writer", "check_writable", "delete", "delete_many", "exists",
    "filesystem", "is_file", "is_s3", "iter_files", "join", "list_files", "makedirs", "normalize",
    "open_input", "parent", "read_bytes", "read_text", "remove_stale_temps", "resolve_links",
    "s3_filesystem", "write_bytes", "write_text",
]  # fmt: skip

COPY_BLOCK = 8 << 20


def read_bytes(uri: str) -> bytes:
    """The whole content of ``uri``; raises StorageError with the reason when it cannot be read."""
    try:
        if not is_s3(uri):
            with open(_local_path(uri), "rb") as f:
                return f.read()
        fs, path = filesystem(uri)
        with fs.open_input_stream(path) as f:
            return bytes(f.read())
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "read", e) from e


@contextlib.contextmanager
def open_input(uri: str) -> Iterator[IO[bytes]]:
    """A seekable binary file object for ``uri`` (for streaming decoders)."""
    try:
        if not is_s3(uri):
            f: Any = open(_local_path(uri), "rb")  # noqa: SIM115
        else:
            fs, path = filesystem(uri)
            f = fs.open_input_file(path)
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "open", e) from e
    with f:
        yield f


def makedirs(uri: str) -> None:
    """Create a local folder (and parents); a no-op for S3, whose prefixes need no creation."""
    if is_s3(uri):
        return
    try:
        os.makedirs(_local_path(uri), exist_ok=True)
    except OSError as e:
        raise _wrap(uri, "create folder", e) from e


def first_missing_folder(uri: str) -> str | None:
    """The outermost folder on the way to local ``uri`` that does not exist yet (``uri`` itself, or a
    parent writing into it would create); None if ``uri`` exists or is on S3. With
    :func:`remove_if_empty`, a run that fails before writing anything leaves no empty folders behind."""
    if is_s3(uri):
        return None
    path, missing = os.path.abspath(_local_path(uri)), None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def remove_if_empty(path: str | None) -> bool:
    """Delete local folder ``path`` if it (and every folder in it) holds no file; whether it did."""
    if not path or not os.path.isdir(path):
        return False
    if any(files for _dir, _dirs, files in os.walk(path)):
        return False
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):  # a file arriving meanwhile keeps its folder
            os.rmdir(dirpath)
    return not os.path.exists(path)


class DeferredWrites:
    """Publishes atomic writes on a background thread: a local file is made durable (fsync) and renamed into
    place, an S3 object is uploaded from its local spool.

    Passed to :func:`atomic_writer`, it lets the caller go on with its next file while the disk (or the
    network) finishes the last one: the fsync of every output file otherwise blocks the enhance workers for
    2-3 s per 2000 files (``bench/enhance.py``), and an upload for a round trip or more. :meth:`wait` returns
    once every write handed over so far is published (final name, complete and durable), with the errors of
    those that were not (their temporaries removed).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="batchsep-publish")
        self._pending: list[tuple[str, Future[None]]] = []

    def _submit(self, uri: str, publish: Callable[[], None]) -> None:
        self._pending.append((uri, self._pool.submit(publish)))

    def wait(self) -> dict[str, StorageError]:
        """Block until every write handed over is published; the failed ones by URI."""
        errors: dict[str, StorageError] = {}
        pending, self._pending = self._pending, []
        for uri, done in pending:
            try:
                done.result()
            except StorageError as e:
                errors[uri] = e
            except OSError as e:
                errors[uri] = _wrap(uri, "write", e)
            except Exception as e:  # whatever failed, the write did not happen: that file's error
                errors[uri] = StorageError(f"cannot write {uri}: {type(e).__name__}: {e}")
        return errors

    def close(self) -> dict[str, StorageError]:
        """:meth:`wait`, then stop the thread."""
        try:
            return self.wait()
        finally:
            self._pool.shutdown()


def _publish(fh: IO[bytes], tmp: str, path: str) -> None:
    """Make ``tmp`` durable, close it and give it its final name (or remove it)."""
    try:
        with fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _upload(spool: IO[bytes], fs: pafs.FileSystem, path: str, uri: str) -> None:
    """Upload a spooled object (visible once the upload completes), then close (remove) the spool."""
    with spool:
        spool.seek(0)
        try:
            with fs.open_output_stream(path) as out:
                while piece := spool.read(COPY_BLOCK):
                    out.write(piece)
        except (OSError, pa.ArrowException) as e:
            raise _wrap(uri, "write", e) from e


class WriteGuard:
    """The file object :func:`atomic_writer` hands out: the temporary file's, which keeps (``error``) the
    first OSError its ``write``, ``seek``, ``tell`` or ``flush`` raised.

    An encoder that writes through a C callback cannot pass that error on: soundfile's prints it
    ("Exception ignored from cffi callback") and then fails ``assert written == len(data)``, or swallows
    it while it closes. :func:`atomic_writer` raises the kept error instead (as a StorageError naming the
    output; :class:`StorageFullError` for a full disk), whatever the encoder raised or did not, and never
    publishes a file that saw one.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def _guard(self, method: Callable[..., Any], *args: Any) -> Any:
        if self.error is not None:  # a file that failed once is not written any further
            raise self.error
        try:
            return method(*args)
        except OSError as e:
            self.error = e
            raise

    def write(self, data: Any) -> int:
        return int(self._guard(self._f.write, data))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return int(self._guard(self._f.seek, offset, whence))

    def tell(self) -> int:
        return int(self._guard(self._f.tell))

    def flush(self) -> None:
        self._guard(self._f.flush)

    def __getattr__(self, name: str) -> Any:  # read, fileno, closed, ...: the file's own
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_writer(uri: str, *, deferred: DeferredWrites | None = None) -> Iterator[IO[bytes]]:
    """Write ``uri`` atomically: readers see the old content or the complete new one, never a part.

    On an exception inside the ``with`` block nothing is published and the temporary is removed. With
    ``deferred`` the file is published by its background thread (see :class:`DeferredWrites`); it appears
    under its name only once complete and durable, as without.

    The file object is a :class:`WriteGuard`: when one of its writes failed, the ``with`` block ends with
    that error as a StorageError (:class:`StorageFullError` for a full disk or quota), in place of
    whatever the code inside raised (or even if it raised nothing), and nothing is published.
    """
    if is_s3(uri):
        fs, path = filesystem(uri)
        # Spool to a seekable local temp file (WAV writers seek back to patch headers), then upload;
        # the object becomes visible only when the upload completes.
        spool = tempfile.TemporaryFile(prefix=TMP_PREFIX)  # noqa: SIM115 (closed by _upload)
        guard = WriteGuard(spool)
        try:
            yield cast("IO[bytes]", guard)  # reads as a file; see WriteGuard
        except Exception as e:
            spool.close()
            if guard.error is not None:
                raise _spool_error(uri, guard.error) from e
            raise
        except BaseException:
            spool.close()
            raise
        if guard.error is not None:
            spool.close()
            raise _spool_error(uri, guard.error)
        if deferred is not None:
            deferred._submit(uri, functools.partial(_upload, spool, fs, path, uri))
        else:
            _upload(spool, fs, path, uri)
        return
    path = _local_path(uri)
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        os.makedirs(folder, exist_ok=True)
        fh = open(tmp, "wb")  # noqa: SIM115
    except OSError as e:
        raise _wrap(uri, "write", e) from e
    guard = WriteGuard(fh)
    try:
        try:
            yield cast("IO[bytes]", guard)  # reads as a file; see WriteGuard
            if guard.error is not None:  # the code inside went on after a failed write
                raise guard.error
        except BaseException as e:
            with contextlib.suppress(OSError):
                fh.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if guard.error is not None and isinstance(e, Exception) and e is not guard.error:
                # the cause, not the encoder's failure it led to
                raise _wrap(uri, "write", guard.error) from e
            raise
        if deferred is not None:
            deferred._submit(uri, functools.partial(_publish, fh, tmp, path))  # the thread owns fh
        else:
            _publish(fh, tmp, path)
    except OSError as e:
        raise _wrap(uri, "write", e) from e


def _spool_error(uri: str, exc: OSError) -> StorageError:
    """The error of an S3 upload's local spool (``tempfile``'s folder full, say), naming both."""
    err = _wrap(uri, "write", exc)
    return type(err)(f"{err} (spooling the upload in {tempfile.gettempdir()})")


def write_bytes(uri: str, data: bytes) -> None:
    """Atomically write ``data`` to ``uri``."""
    with atomic_writer(uri) as f:
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def delete(uri: str, *, missing_ok: bool = True) -> None:
    """Delete one file/object."""
    try:
        if not is_s3(uri):
            os.unlink(_local_path(uri))
            return
        fs, path = filesystem(uri)
        fs.delete_file(path)
    except FileNotFoundError:
        if not missing_ok:
            raise StorageError(f"cannot delete {uri}: not found") from None
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "delete", e) from e


S3_REQUEST_THREADS = 16
"""Concurrent requests for many small S3 operations (one round trip each)."""


def delete_many(uris: Iterable[str]) -> None:
    """Delete many files/objects (missing ones are fine): on S3, :data:`S3_REQUEST_THREADS` at a time."""
    uris = list(uris)
    if len(uris) > 1 and any(is_s3(u) for u in uris):
        with ThreadPoolExecutor(min(S3_REQUEST_THREADS, len(uris))) as pool:
            list(pool.map(delete, uris))  # re-raises the first failure
    else:
        for uri in uris:
            delete(uri)


def check_writable(uri: str) -> None:
    """Fail early, with a clear StorageError, when nothing can be written under folder ``uri`` (a folder
    the check had to create is removed again)."""
    if not is_s3(uri) and os.path.exists(_local_path(uri)) and not os.path.isdir(_local_path(uri)):
        raise StorageError(f"{uri} is a file, not a folder")
    if is_s3(
        uri
    ):  # some servers create a missing bucket on the first write: a typo would go unnoticed
        bucket = normalize(uri)[5:].split("/")[0]
        try:
            missing = not exists(f"s3://{bucket}")
        except StorageError:  # may write under a prefix without the right to ask about the bucket
            missing = False
        if missing:
            raise StorageError(f"cannot write {uri}: no such bucket {bucket!r}")
    probe = join(uri, f"{TMP_PREFIX}probe-{uuid.uuid4().hex}")
    created = first_missing_folder(uri)  # the probe's folders are not left behind
    try:
        write_bytes(probe, b"")
        delete(probe)
    except StorageError as e:  # name the folder asked for, not the probe's temporary name
        raise type(e)(str(e).replace(f" {probe}:", f" {uri}:", 1)) from e
    finally:
        remove_if_empty(created)


def remove_stale_temps(uri: str) -> int:
    """Delete temporaries left under local folder ``uri`` by interrupted writes; returns how many.

    S3 needs no cleanup: an interrupted upload never becomes a visible object.
    """
    if is_s3(uri) or not os.path.isdir(_local_path(uri)):
        return 0
    n = 0
    for dirpath, _dirs, files in os.walk(_local_path(uri), followlinks=False):
        for name in files:
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
    return n
