"""Reading and writing Parquet tables on any storage URI, atomically."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from batchsep.errors import StorageError
from batchsep.io import storage

PART_TEMPLATE = "part-{:05d}.parquet"
"""Parts read at once by :func:`read_parts` from object storage (each read is a round trip)."""


def write_table(uri: str, table: pa.Table, *, compression: str = "zstd") -> None:
    """Write ``table`` to ``uri`` in one atomic step (temp + rename locally, one PUT on S3)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    storage.write_bytes(uri, buf.getvalue())


def read_table(uri: str, *, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file from ``uri``."""
    fs, path = storage.filesystem(uri)
    try:
        return pq.read_table(path, filesystem=fs, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read Parquet {uri}: {e}") from e


def part_uri(folder_uri: str, index: int, run_id: str | None = None) -> str:
    """URI of part ``index`` under ``folder_uri``: ``part-00042.parquet``, or with a ``run_id``
    ``part-<run_id>-00042.parquet`` (parts of two runs never share a name)."""
    name = PART_TEMPLATE.format(index)
    if run_id:
        name = f"part-{run_id}-{name.removeprefix('part-')}"
    return storage.join(folder_uri, name)


PART_PREFIXES = ("part-", "results-")
"""Committed files of a parts folder: one per shard (``part-*``), and parts compacted (``results-*``)."""


def read_part_tables(
    folder_uri: str, *, columns: list[str] | None = None
) -> list[tuple[str, pa.Table]]:
    """Every committed ``part-*.parquet`` and ``results-*.parquet`` (compacted parts) directly under
    ``folder_uri`` with its URI, in name order (none when the folder does not exist)."""
    if not storage.exists(folder_uri):
        return []
    parts = [
        e.uri
        for e in storage.list_files(folder_uri, suffixes=[".parquet"])
        if e.rel_path.startswith(PART_PREFIXES) and "/" not in e.rel_path
    ]
    if storage.is_s3(folder_uri) and len(parts) > 1:  # thousands of parts: one round trip each
        with ThreadPoolExecutor(min(storage.S3_REQUEST_THREADS, len(parts))) as pool:
            tables = list(pool.map(lambda u: read_table(u, columns=columns), parts))
    else:
        tables = [read_table(u, columns=columns) for u in parts]
    return list(zip(parts, tables, strict=True))


def read_parts(folder_uri: str, *, columns: list[str] | None = None) -> pa.Table | None:
    """Concatenate every committed part (see :func:`read_part_tables`) under ``folder_uri`` (None when there is none)."""
    tables = [t for _uri, t in read_part_tables(folder_uri, columns=columns)]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default")
