"""URIs and filesystems: local paths, ``file://`` and ``s3://`` (:func:`normalize`, :func:`join`,
:func:`filesystem`), the entry of a listing (:class:`FileEntry`), and an OSError turned into the
:class:`~batchsep.errors.StorageError` that says why (:func:`_wrap`). Re-exported by :mod:`batchsep.io.storage`."""

from __future__ import annotations

import errno
import functools
import os
import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from batchsep.errors import StorageAccessError, StorageError, StorageFullError

TMP_PREFIX = ".batchsep-tmp-"


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
