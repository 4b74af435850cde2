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
import errno
import functools
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, cast
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from batchsep.errors import StorageAccessError, StorageError, StorageFullError

TMP_PREFIX = ".batchsep-tmp-"
COPY_BLOCK = 8 << 20


@dataclass(frozen=True)
class FileEntry:
    """One listed object: its full ``uri``, its path relative to the listed prefix, its size, and its
    modification time in nanoseconds since the epoch (local ``st_mtime_ns``; S3 ``LastModified``, whole
    seconds; None when unknown)."""

    uri: str
    rel_path: str
    size: int
    mtime_ns: int | None = None


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _local_path(uri: str) -> str:
    if uri.startswith(
        "file://"
    ):  # RFC 8089: the path is percent-encoded (as Path.as_uri() writes it)
        return unquote(urlparse(uri).path)
    if "://" in uri:
        raise StorageError(f"unsupported URI scheme in {uri!r}; use a local path, file:// or s3://")
    return os.path.abspath(os.path.expanduser(uri))


def normalize(uri: str) -> str:
    """Canonical form of a URI: absolute local path, or ``s3://bucket/key`` without trailing slash."""
    if is_s3(uri):
        return "s3://" + uri[5:].strip("/")
    return _local_path(uri).rstrip("/") or "/"


def resolve_links(uri: str) -> str:
    """:func:`normalize`, with symbolic links resolved for a local path (where it really is); the part
    of the path that does not exist yet is kept as written."""
    if is_s3(uri):
        return normalize(uri)
    return os.path.realpath(_local_path(uri))


def join(uri: str, *parts: str) -> str:
    """Join path components onto a URI (``/`` separators for every scheme).

    A part's leading ``/`` does not restart the path (unlike :func:`os.path.join`): parts always
    land under ``uri``, for local paths as for S3.
    """
    if is_s3(uri):
        return posixpath.join(normalize(uri), *[p.strip("/") for p in parts])
    return os.path.join(_local_path(uri), *[p.lstrip("/") for p in parts])


def parent(uri: str) -> str:
    if is_s3(uri):
        return posixpath.dirname(normalize(uri))
    return os.path.dirname(_local_path(uri))


@functools.lru_cache(maxsize=8)
def _s3_filesystem(endpoint: str | None, region: str) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {"region": region, "allow_bucket_creation": True}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem configured from the environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``)."""
    return _s3_filesystem(
        os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path for ``uri`` (for pyarrow.parquet/dataset)."""
    if is_s3(uri):
        return s3_filesystem(), normalize(uri)[5:]
    return pafs.LocalFileSystem(), _local_path(uri)


S3_ACCESS_ERRORS = (
    "ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID",
    "Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
)  # fmt: skip
"""Markers of an S3 error caused by the credentials (not by the object asked for)."""
S3_NETWORK_ERRORS = ("NETWORK_CONNECTION",)
"""Markers of an S3 endpoint that could not be reached (unknown host, refused connection, timeout)."""
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""A write refused for the whole storage, not for one file: no space left, quota exceeded, read-only."""
S3_FULL_ERRORS = ("StorageFull", "QuotaExceeded")
"""Markers of an S3 server out of room (MinIO's ``XMinioStorageFull``, quota-enforcing servers)."""


def _wrap(uri: str, action: str, exc: BaseException) -> StorageError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    hint = ""
    if is_s3(uri) and any(marker in reason for marker in S3_NETWORK_ERRORS):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        hint = (
            f" (the S3 endpoint {endpoint} could not be reached: check AWS_ENDPOINT_URL and the network)"
            if endpoint
            else " (AWS could not be reached; for another S3 server set AWS_ENDPOINT_URL)"
        )
    elif is_s3(uri) and any(marker in reason for marker in S3_ACCESS_ERRORS):
        hint = (
            " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL for a server "
            "other than AWS)"
        )
    error: type[StorageError] = StorageAccessError if hint else StorageError
    if getattr(exc, "errno", None) in FULL_ERRNOS or (
        is_s3(uri) and any(marker in reason for marker in S3_FULL_ERRORS)
    ):
        error = StorageFullError
    return error(f"cannot {action} {uri}: {reason}{hint}")


def exists(uri: str) -> bool:
    """True if ``uri`` names an existing file or folder/prefix."""
    if not is_s3(uri):
        return os.path.exists(_local_path(uri))
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "check", e) from e


def is_file(uri: str) -> bool:
    if not is_s3(uri):
        return os.path.isfile(_local_path(uri))
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path).type == pafs.FileType.File
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "check", e) from e


def list_files(uri: str, *, suffixes: Iterable[str] | None = None) -> list[FileEntry]:
    """All files under ``uri`` (recursively), sorted by relative path.

    Local listing does not descend into symlinked folders (no symlink loops); symlinked files are
    listed. Hidden temporary files of interrupted atomic writes are never listed.

    Parameters
    ----------
    uri : str
        A folder/prefix, or a single file (then that one file is listed).
    suffixes : iterable of str, optional
        Keep only names ending in one of these (case-insensitive), e.g. ``{".wav", ".flac"}``.

    Raises
    ------
    StorageError
        If ``uri`` does not exist or cannot be listed.
    """
    suf = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    entries = _list_s3(uri) if is_s3(uri) else _list_local(uri)
    out = [
        e
        for e in entries
        if not posixpath.basename(e.rel_path).startswith(TMP_PREFIX)
        and (suf is None or e.rel_path.lower().endswith(suf))
    ]
    return sorted(out, key=lambda e: e.rel_path)


def iter_files(uri: str, *, sizes: bool = True) -> Iterator[FileEntry]:
    """The files of :func:`list_files` (temporaries left out), unsorted and one at a time: a local folder
    is walked as it is read, an S3 prefix folder by folder (one paginated listing of each ``/``-delimited
    prefix), so a caller that keeps only what it needs holds at most one folder's entries. (On S3 that is
    one request per folder and per 1 000 keys, where :func:`list_files` makes one per 1 000 keys.)

    ``sizes=False``: a local file's size and time are not read (-1 and None), names only (S3 lists them
    anyway).

    Raises StorageError as :func:`list_files` does.
    """
    if not is_s3(uri):
        yield from _walk_local(uri, sizes=sizes)  # temporaries left out as it walks
        return
    for e in _walk_s3(uri):
        if not posixpath.basename(e.rel_path).startswith(TMP_PREFIX):
            yield e


def _list_local(uri: str) -> list[FileEntry]:
    return list(_walk_local(uri))


def _walk_local(uri: str, *, sizes: bool = True) -> Iterator[FileEntry]:
    root = _local_path(uri)
    if os.path.isfile(root):
        st = os.stat(root)
        yield FileEntry(root, os.path.basename(root), st.st_size, st.st_mtime_ns)
        return
    if not os.path.isdir(root):
        raise StorageError(f"cannot list {uri}: no such file or directory")
    base = len(os.path.join(root, ""))
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            it = os.scandir(folder)
        except OSError as e:
            if folder == root:
                raise _wrap(uri, "list", e) from e
            continue  # an unreadable subfolder: its files are not listed (as os.walk)
        below = []
        with it:
            for entry in it:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                # a link to a folder is neither listed nor followed (no loops), as os.walk
                if is_dir:
                    if not entry.is_symlink():
                        below.append(entry.path)
                    continue
                if entry.name.startswith(TMP_PREFIX):  # an interrupted write's temporary
                    continue
                size, mtime_ns = -1, None
                if sizes:
                    try:
                        st = entry.stat()  # a link's target, as os.stat
                        size, mtime_ns = st.st_size, st.st_mtime_ns
                    except OSError:  # dangling link or symlink loop: list it; reading reports why
                        pass
                rel = entry.path[base:]
                yield FileEntry(entry.path, rel if os.sep == "/" else rel.replace(os.sep, "/"),
                                size, mtime_ns)  # fmt: skip
        folders.extend(reversed(below))


def _list_s3(uri: str) -> list[FileEntry]:
    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [
                FileEntry(normalize(uri), posixpath.basename(path), info.size or 0, info.mtime_ns)
            ]
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"cannot list {uri}: no such bucket or prefix")
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "list", e) from e
    base = path.rstrip("/") + "/"
    return [
        FileEntry("s3://" + i.path, i.path[len(base) :], i.size or 0, i.mtime_ns)
        for i in infos
        if i.type == pafs.FileType.File
    ]


def _walk_s3(uri: str) -> Iterator[FileEntry]:
    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(path)
    except (OSError, pa.ArrowException) as e:
        raise _wrap(uri, "list", e) from e
    if info.type == pafs.FileType.File:
        yield FileEntry(normalize(uri), posixpath.basename(path), info.size or 0, info.mtime_ns)
        return
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"cannot list {uri}: no such bucket or prefix")
    base = path.rstrip("/") + "/"
    folders = [path.rstrip("/")]
    while folders:
        folder = folders.pop()
        try:  # pyarrow pages through the folder (1 000 keys a request)
            infos = fs.get_file_info(pafs.FileSelector(folder, recursive=False))
        except (OSError, pa.ArrowException) as e:
            raise _wrap(uri, "list", e) from e
        below = []
        for i in infos:
            if i.type == pafs.FileType.File:
                yield FileEntry("s3://" + i.path, i.path[len(base) :], i.size or 0, i.mtime_ns)
            elif i.type == pafs.FileType.Directory:
                below.append(i.path)
        del infos
        folders.extend(sorted(below, reverse=True))


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
    """Fail early, with a clear StorageError, when nothing can be written under folder ``uri``."""
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
    try:
        write_bytes(probe, b"")
        delete(probe)
    except StorageError as e:  # name the folder asked for, not the probe's temporary name
        raise type(e)(str(e).replace(f" {probe}:", f" {uri}:", 1)) from e


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
