"""Unit tests of the enhance stage's planning."""

from __future__ import annotations

import pytest

from batchsep.pipeline.enhance import MAX_AUTO_SHARD, auto_shard_size


@pytest.mark.parametrize(
    ("n_files", "expected"),
    [(0, 1), (1, 1), (17, 1), (32, 2), (100, 6), (511, 31), (512, 32), (2000, MAX_AUTO_SHARD)],
)
def test_auto_shard_size_gives_at_least_16_shards_of_at_most_32_files(n_files, expected):
    size = auto_shard_size(n_files)
    assert size == expected
    n_shards = -(-n_files // size)
    assert size == MAX_AUTO_SHARD or n_files <= 16 or n_shards >= 16
