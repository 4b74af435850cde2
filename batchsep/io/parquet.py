"""Reading and writing Parquet tables on any storage URI, atomically: every ``pyarrow.parquet`` call of the
package is here (issue 23)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from batchsep.errors import StorageError
from batchsep.io import storage

PART_TEMPLATE = "part-{:05d}.parquet"
"""Parts read at once by :func:`read_parts` from object storage (each read is a round trip)."""


def to_bytes(table: pa.Table, *, compression: str = "zstd") -> bytes:
    """The Parquet file of ``table``, in memory."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    return buf.getvalue()


def write_table(uri: str, table: pa.Table, *, compression: str = "zstd") -> None:
    """Write ``table`` to ``uri`` in one atomic step (temp + rename locally, one PUT on S3)."""
    storage.write_bytes(uri, to_bytes(table, compression=compression))


def write_to(out: IO[bytes], table: pa.Table, **options: Any) -> None:
    """Write ``table`` as Parquet to the open binary file ``out``; ``options``: those of
    :func:`pyarrow.parquet.write_table` (compression, row groups, dictionaries, statistics, ...)."""
    pq.write_table(table, out, **options)


def read_schema(uri: str) -> pa.Schema:
    """The Arrow schema (with its metadata) of one Parquet file, from its footer.

    Raises OSError or :class:`pyarrow.ArrowException` as pyarrow does: the caller names what it read.
    """
    fs, path = storage.filesystem(uri)
    return pq.read_schema(path, filesystem=fs)


@contextlib.contextmanager
def open_file(uri: str) -> Iterator[tuple[pq.ParquetFile, int]]:
    """One Parquet file open for reading (its footer, row groups or batches) and its size in bytes.

    Raises OSError or :class:`pyarrow.ArrowException` as pyarrow does: the caller names what it read.
    """
    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as f:
        yield pq.ParquetFile(f), f.size()


def num_rows(uri: str) -> int:
    """Rows of one Parquet file (from its footer)."""
    try:
        with open_file(uri) as (pf, _size):
            return int(pf.metadata.num_rows)
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read Parquet {uri}: {e}") from e


def read_columns(uri: str, columns: Sequence[str]) -> pa.Table:
    """``columns`` of one Parquet file, those it has (a file older than a column lacks it)."""
    try:
        with open_file(uri) as (pf, _size):
            have = set(pf.schema_arrow.names)
            return pf.read(columns=[c for c in columns if c in have])
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read Parquet {uri}: {e}") from e


def merge_files(sources: Sequence[str], target: str, *, batch_rows: int = 65_536) -> None:
    """Write the rows of the Parquet files ``sources`` (in order) to ``target`` atomically, streaming:
    ``batch_rows`` rows in memory at a time, whatever the files' sizes. Columns a file lacks (a file
    older than them) are null in its rows."""
    schemas = []
    for uri in sources:
        try:
            schemas.append(read_schema(uri))
        except (OSError, pa.ArrowException) as e:
            raise StorageError(f"cannot read Parquet {uri}: {e}") from e
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    with (
        storage.atomic_writer(target) as f,
        pq.ParquetWriter(f, schema, compression="zstd") as writer,
    ):
        for uri in sources:
            try:
                with open_file(uri) as (pf, _size):
                    for batch in pf.iter_batches(batch_size=batch_rows):
                        writer.write_table(_conform(pa.Table.from_batches([batch]), schema))
            except (OSError, pa.ArrowException) as e:
                raise StorageError(f"cannot read Parquet {uri}: {e}") from e


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing ones null)."""
    names = set(table.column_names)
    arrays = [
        table.column(f.name).cast(f.type) if f.name in names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


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
