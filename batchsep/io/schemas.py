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


ENHANCE_RESULTS = _schema(
    "enhance_results",
    [
        pa.field("input_uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),
        pa.field("output_uri", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("warning", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("out_sample_rate", pa.int32()),
        pa.field("model_name", pa.string()),
        pa.field("model_sha256", pa.string()),
        pa.field("emotion_label", pa.string()),
        pa.field("emotion_probs", pa.map_(pa.string(), pa.float32())),
        pa.field(
            "emotion_segments",
            pa.list_(
                pa.struct(
                    [
                        ("start_s", pa.float64()),
                        ("end_s", pa.float64()),
                        ("label", pa.string()),
                        ("probs", pa.map_(pa.string(), pa.float32())),
                    ]
                )
            ),
        ),
        pa.field("t_decode_s", pa.float64()),
        pa.field("t_model_s", pa.float64()),
        pa.field("t_write_s", pa.float64()),
        pa.field("t_total_s", pa.float64()),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("worker", pa.string()),
    ],
)
"""One row per input file of an enhance (or tag) run; ``results/part-NNNNN.parquet`` commit records."""


def table_from_rows(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns from a list of dict rows."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)
