"""io.checkpoint: a checkpoint is read once per process while its files are unchanged."""

from __future__ import annotations

import os

import pytest
import torch

from batchsep.errors import StorageError
from batchsep.io import checkpoint, storage


def _payload(value: float) -> dict:
    state = {"w": torch.full((3,), value)}
    return {"model_name": "toy", "config": {"n": 1}, "state": state, "versions": {}}


@pytest.fixture
def reads(monkeypatch):
    """The URIs storage.read_bytes was asked for."""
    seen: list[str] = []
    real = storage.read_bytes

    def counting(uri: str) -> bytes:
        seen.append(uri)
        return real(uri)

    monkeypatch.setattr(storage, "read_bytes", counting)
    checkpoint._READ.clear()
    yield seen
    checkpoint._READ.clear()


def test_second_read_of_unchanged_files_reads_nothing(tmp_path, reads):
    uri = str(tmp_path / "m")
    checkpoint.write_checkpoint(uri, _payload(1.0))
    first = checkpoint.read_checkpoint(uri)
    n = len(reads)
    assert n >= 1  # config.json (through read_text) and the weights
    second = checkpoint.read_checkpoint(uri)
    assert len(reads) == n
    assert second["sha256"] == first["sha256"] and torch.equal(
        second["state"]["w"], first["state"]["w"]
    )
    second["config"]["n"] = 99  # a caller's change stays in its copy
    second["state"]["w"] = torch.zeros(3)
    third = checkpoint.read_checkpoint(uri)
    assert third["config"]["n"] == 1 and torch.equal(third["state"]["w"], torch.ones(3))


def test_rewritten_checkpoint_is_read_again(tmp_path, reads):
    uri = str(tmp_path / "m")
    checkpoint.write_checkpoint(uri, _payload(1.0))
    checkpoint.read_checkpoint(uri)
    checkpoint.write_checkpoint(uri, _payload(2.0))
    assert torch.equal(checkpoint.read_checkpoint(uri)["state"]["w"], torch.full((3,), 2.0))


def test_weights_changed_behind_its_back_are_read_and_checked(tmp_path, reads):
    uri = str(tmp_path / "m")
    checkpoint.write_checkpoint(uri, _payload(1.0))
    checkpoint.read_checkpoint(uri)
    weights = tmp_path / "m" / checkpoint.WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(StorageError, match="checksum"):
        checkpoint.read_checkpoint(uri)


def test_missing_checkpoint_still_fails(tmp_path, reads):
    with pytest.raises(StorageError, match="not a batchsep model folder"):
        checkpoint.read_checkpoint(str(tmp_path / "nothing"))


def test_copy_checkpoint_casts_weights_and_keeps_every_config_entry(tmp_path):
    """How the shipped enhancer is made (its MODEL_CARD.md): float16 weights, the config's STFT and input
    level kept; a copy of the copy in float32 holds the same values, and the model loads either."""
    import torch

    from batchsep.io.checkpoint import copy_checkpoint, read_checkpoint
    from batchsep.models.base import deserialize

    src = read_checkpoint("default")
    half = str(tmp_path / "half")
    checksum = copy_checkpoint("default", half, dtype="float16")
    got = read_checkpoint(half)
    assert got["sha256"] == checksum
    keep = lambda p: {k: v for k, v in p.items() if k not in ("state", "sha256", "uri")}  # noqa: E731
    assert keep(got) == keep(src) and "stft" in keep(got) and "input_level_db" in keep(got)
    assert all(v.dtype == torch.float16 for v in got["state"].values() if v.is_floating_point())
    back = read_checkpoint(
        copy_checkpoint(half, str(tmp_path / "f32"), dtype="float32") and str(tmp_path / "f32")
    )
    for k, v in back["state"].items():
        assert v.dtype == torch.float32 and torch.equal(v, got["state"][k].float())
    assert deserialize(got) is not None
    with pytest.raises(ValueError, match="not a floating-point torch dtype"):
        copy_checkpoint("default", str(tmp_path / "x"), dtype="int8")
