"""Shared by the tests that read a stage's committed Parquet parts back."""

from __future__ import annotations

import pyarrow as pa

from batchsep.io import parquet


def read_parts(folder_uri: str, *, columns: list[str] | None = None) -> pa.Table:
    """:func:`batchsep.io.parquet.read_parts` of a folder the test expects parts in (fails when there is none)."""
    table = parquet.read_parts(folder_uri, columns=columns)
    assert table is not None, f"no committed Parquet part under {folder_uri}"
    return table
