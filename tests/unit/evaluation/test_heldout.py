"""Held-out checks (issue 19): a model's recorded training speakers and noise recordings against a test split."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchsep.errors import StorageError
from batchsep.evaluation import heldout


def _row(
    split: str, speaker: str, noise: str, noise2: str | None = None, status: str = "ok"
) -> dict:
    return {"mixture_id": f"{split}-{speaker}-{noise}", "split": split, "status": status,
            "speaker": speaker, "noise_rel_path": noise, "aug_noise2_rel_path": noise2}  # fmt: skip


ROWS = [
    _row("train", "a", "n1.wav", "n9.wav"),
    _row("train", "b", "n2.wav"),
    _row("valid", "v", "n3.wav"),
    _row("test", "a", "n5.wav"),  # a train speaker with a new noise
    _row("test", "t", "n9.wav"),  # a new speaker with a train second noise
    _row("test", "v", "n6.wav"),  # a validation speaker
    _row("test", "b", "n2.wav", status="error"),  # not scored: not counted
]


def _model(tmp_path: Path, data: dict) -> str:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"model": "lstm", "data": data}))
    return str(folder)


def test_training_sources_known_answer():
    got = heldout.training_sources(ROWS)
    assert got == {"speakers": ["a", "b"], "valid_speakers": ["v"],
                   "noise_recordings": ["n1.wav", "n2.wav", "n9.wav"]}  # fmt: skip
    only_b = heldout.training_sources(ROWS, train_ids={ROWS[1]["mixture_id"]})
    assert only_b["speakers"] == ["b"] and only_b["noise_recordings"] == ["n2.wav"]


def test_overlap_known_answer(tmp_path):
    model = _model(tmp_path, heldout.training_sources(ROWS))
    table = tmp_path / "mixtures.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), table)
    for source in (str(table), ROWS):
        r = heldout.overlap(model, source)
        assert r["model"] == model and r["recorded"] and not r["held_out"]
        assert r["speakers"] == ["a"] and r["noise_recordings"] == ["n9.wav"]
        assert r["valid_speakers"] == ["v"] and r["test_speakers"] == ["a", "t", "v"]
        assert r["n_test_noise_recordings"] == 3
    line = heldout.describe(r, "lo")
    assert "NOT held out" in line and "1 of its 3 speakers (a)" in line and "n9.wav" in line
    held = [_row("test", "z", "n7.wav")]
    r = heldout.overlap(model, held)
    assert r["held_out"] and r["speakers"] == r["noise_recordings"] == r["valid_speakers"] == []
    assert "held out (none of its 1 speakers" in heldout.describe(r, "lo")


def test_overlap_without_recorded_data_says_so(tmp_path):
    """A model from before issue 19 (or a zoo name): not recorded, never reported as held out."""
    for model in (_model(tmp_path, {"n_train_mixtures": 3}), "rnnoise"):
        r = heldout.overlap(model, ROWS)
        assert not r["recorded"] and not r["held_out"] and r["speakers"] == []
        assert "not checked" in heldout.describe(r, "lo")
    with pytest.raises(StorageError):
        heldout.overlap(model, str(tmp_path / "missing.parquet"))


def test_the_shipped_default_records_its_training_data():
    """The shipped enhancer was trained with prepare seed 1: seed 0's test speakers (121, 672) and the
    speech_commands recordings are in its training data; seed 1's test speakers (1284, 260) are not."""
    seed0 = [_row("test", "121", "speech_commands/running_tap.flac")]
    r = heldout.overlap("default", seed0)
    assert r["recorded"] and r["speakers"] == ["121"]
    assert r["noise_recordings"] == ["speech_commands/running_tap.flac"]
    assert heldout.overlap("default", [_row("test", "1284", "nowhere.flac")])["held_out"]
