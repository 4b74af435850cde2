"""Every Parquet schema of batchsep, defined once.

Each schema carries ``batchsep.schema`` (name) and ``batchsep.schema_version`` in its metadata, so a reader
can tell what a file is. Stages build tables with :func:`table_from_rows`, which enforces column order and
types (a missing optional column becomes null).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1"


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields, metadata={"batchsep.schema": name, "batchsep.schema_version": SCHEMA_VERSION}
    )


STATUS_OK = "ok"
STATUS_ERROR = "error"

MANIFEST = _schema(
    "manifest",
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("sr", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("frames", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("format", pa.string()),
        pa.field("subtype", pa.string()),
        pa.field("peak", pa.float32()),
        pa.field("rms_dbfs", pa.float32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ],
)
"""One row per audio file found by a scan (``status`` is ``ok`` or ``error`` with a readable ``error``)."""


def table_from_rows(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns from a list of dict rows."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)
