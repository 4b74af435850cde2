"""What is there: :func:`exists`, :func:`is_file`, and listing a folder or prefix (:func:`list_files`,
sorted; :func:`iter_files`, streamed). Local folders are walked without following directory symlinks.
Re-exported by :mod:`batchsep.io.storage`."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs

from batchsep.errors import StorageError
from batchsep.io.uris import TMP_PREFIX, FileEntry, _local_path, _wrap, filesystem, is_s3, normalize


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
