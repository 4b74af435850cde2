"""prepare with augmentation and train-only inputs: off by default, reproducible, held-out splits kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from batchsep.corpus.augment import KINDS, AugmentConfig
from batchsep.corpus.mixtures import MixtureConfig
from batchsep.errors import ParameterError
from batchsep.io import audio, schemas, storage
from batchsep.pipeline.prepare import driver as prep
from batchsep.pipeline.prepare import render as prepare_render
from batchsep.pipeline.runner import SerialRunner

CONFIG = MixtureConfig(n_train=12, n_valid=4, n_test=4, seed=7, snr_min=-5, snr_max=25)
AUG = AugmentConfig(
    kinds=KINDS, pitch_prob=0.3, reverb_prob=0.5, telephone_prob=0.3, two_noise_prob=0.5
)


def _write_corpus(
    root: Path, speakers: list[str], noise_classes: list[str], seed: int
) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    speech, noise = root / "speech", root / "noise"
    for spk in speakers:
        (speech / spk).mkdir(parents=True)
        for j in range(2):
            t = np.arange(int(16000 * (1.0 + 0.3 * j))) / 16000
            x = 0.1 * rng.standard_normal(t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
            sf.write(speech / spk / f"{spk}-{j}.wav", x.astype(np.float32), 16000)
    for c, name in enumerate(noise_classes):
        (noise / name).mkdir(parents=True)
        for r in range(3):
            n = 0.3 * rng.standard_normal(24000).astype(np.float32)
            sf.write(noise / name / f"{100 * c + r + 1000 * seed}-{c}-0-0.wav", n, 16000)
    return str(speech), str(noise)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[str, str]:
    return _write_corpus(
        tmp_path_factory.mktemp("c"), [f"spk{k}" for k in range(6)], ["hum", "street"], 0
    )


def _snapshot(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != "job.json" and not p.name.startswith(storage.TMP_PREFIX)
    }


def test_augmentation_off_changes_nothing(corpus: tuple[str, str], tmp_path):
    """An AugmentConfig without kinds (and no train-only inputs) writes exactly what prepare always did."""
    out = tmp_path / "run"
    snaps = {}
    variants: list[tuple[str, dict[str, Any]]] = [
        ("plain", {}),
        ("off", {"augment": AugmentConfig(), "train_speech_uris": ()}),
    ]
    for name, kw in variants:
        prep.prepare(*corpus, str(out), config=CONFIG, runner=SerialRunner(), shard_size=4, **kw)
        snaps[name] = _snapshot(out)
        table = pq.read_table(out / "mixtures.parquet")
        assert table.schema.names == schemas.MIXTURES.names
        assert (
            "augment" not in json.loads((out / "mixtures" / "_recipe.json").read_text())["settings"]
        )
        out.rename(tmp_path / name)
    assert snaps["plain"].keys() == snaps["off"].keys()
    assert [k for k in snaps["plain"] if snaps["plain"][k] != snaps["off"][k]] == []


@pytest.mark.ray
@pytest.mark.slow
def test_augmented_run_is_byte_identical_on_1_and_2_workers(
    corpus: tuple[str, str], tmp_path, ray_local
):
    from batchsep.distributed.runtime import RayRunner

    out = tmp_path / "run"
    snaps = {}
    for name, runner in (("serial", SerialRunner()), ("ray", RayRunner(max_in_flight=2))):
        prep.prepare(*corpus, str(out), config=CONFIG, runner=runner, shard_size=3, augment=AUG)
        snaps[name] = _snapshot(out)
        if name == "serial":
            rows = pq.read_table(out / "mixtures.parquet").to_pylist()
            assert all(r["status"] == "ok" for r in rows) and len(rows) == 20
            aug = [r for r in rows if r["split"] != "test"]
            assert all(r["aug_speed"] is not None for r in aug)
            assert all(r["aug_speed"] is None for r in rows if r["split"] == "test")
            assert any(r["aug_rt60"] for r in aug) and any(r["aug_telephone"] for r in aug)
            assert any(r["aug_noise2_uri"] for r in aug)
            for r in rows:  # stored audio: noisy == clean + noise; a recipe re-renders bit for bit
                got = {s: audio.decode(storage.read_bytes(r[c])).samples[0]
                       for s, c in (("noisy", "noisy_uri"), ("clean", "clean_uri"), ("noise", "noise_audio_uri"))}  # fmt: skip
                assert np.array_equal(got["noisy"], got["clean"] + got["noise"])
                regen = prepare_render.regenerate(r)
                assert all(np.array_equal(regen[s], got[s]) for s in got)
                if r["aug_level_dbfs"] is not None and r["output_gain"] is not None:
                    level = 10 * np.log10(np.mean(got["noisy"].astype(np.float64) ** 2))
                    # within 0.1 dB of the draw, unless the peak limit lowered it
                    if abs(level - r["aug_level_dbfs"]) > 0.1:
                        assert np.abs(got["noisy"]).max() >= 0.98
        out.rename(tmp_path / name)
    a, b = snaps["serial"], snaps["ray"]
    assert a.keys() == b.keys() and sum(k.endswith(".flac") for k in a) == 60
    assert [k for k in a if a[k] != b[k]] == []


def test_train_only_inputs_keep_the_held_out_splits(corpus: tuple[str, str], tmp_path):
    extra_speech, extra_noise = _write_corpus(tmp_path / "extra", ["x1", "x2", "x3"], ["babble"], 1)
    base = tmp_path / "base"
    prep.prepare(*corpus, str(base), config=CONFIG, runner=SerialRunner(), shard_size=4)
    run = tmp_path / "run"
    prep.prepare(
        *corpus, str(run), config=CONFIG, runner=SerialRunner(), shard_size=4,
        train_speech_uris=[extra_speech], train_noise_uris=[extra_noise], augment=AUG,
    )  # fmt: skip

    def splits(path: Path) -> dict[tuple[str, str], str]:
        return {(r["role"], r["group"] if r["role"] == "speech" else r["clip"]): r["split"]
                for r in pq.read_table(path / "sources.parquet").to_pylist() if r["split"]}  # fmt: skip

    before, after = splits(base), splits(run)
    assert {k: after[k] for k in before} == before  # same held-out speakers and recordings
    added = {k: v for k, v in after.items() if k not in before}
    assert {k[1] for k in added if k[0] == "speech"} == {"x1", "x2", "x3"}
    assert set(added.values()) == {"train"}
    rows = pq.read_table(run / "mixtures.parquet").to_pylist()
    held_out = {r["speaker"] for r in rows if r["split"] != "train"}
    assert held_out.isdisjoint({"x1", "x2", "x3"})
    assert {r["speaker"] for r in rows if r["split"] == "train"} & {"x1", "x2", "x3"}
    # test mixtures: exactly those of the run without extra inputs and augmentation
    base_rows = pq.read_table(base / "mixtures.parquet").to_pylist()
    keys = ("speech_uri", "noise_uri", "snr_db", "speech_offset", "noise_offset", "n_samples")
    assert [[r[k] for k in keys] for r in rows if r["split"] == "test"] == [
        [r[k] for k in keys] for r in base_rows if r["split"] == "test"
    ]
    # a train-only speaker that is held out in the main inputs is refused
    valid_spk = next(k[1] for k, v in before.items() if k[0] == "speech" and v != "train")
    clash, _ = _write_corpus(tmp_path / "clash", [valid_spk], ["babble"], 2)
    with pytest.raises(ParameterError, match="held out"):
        prep.prepare(*corpus, str(tmp_path / "bad"), config=CONFIG, runner=SerialRunner(),
                     train_speech_uris=[clash])  # fmt: skip


def test_cli_augment_options(corpus: tuple[str, str], tmp_path):
    from click.testing import CliRunner

    from batchsep.cli.main import EXIT_OK, EXIT_USAGE, main

    cli = CliRunner()
    extra, extra_noise = _write_corpus(tmp_path / "extra", ["x1"], ["babble"], 3)
    base = ["prepare", "--speech", corpus[0], "--noise", corpus[1], "--train", "6", "--valid",
            "2", "--test", "2", "--local"]  # fmt: skip
    r = cli.invoke(main, [*base, "--out", str(tmp_path / "a"), "--augment", "speed,reverb",
                          "--augment-set", "reverb_prob=1.0", "--augment-set", "speeds=[1.1]",
                          "--train-speech", extra, "--train-noise", extra_noise])  # fmt: skip
    assert r.exit_code == EXIT_OK, r.output
    rows = pq.read_table(tmp_path / "a" / "mixtures.parquet").to_pylist()
    train = [r for r in rows if r["split"] == "train"]
    assert {r["aug_speed"] for r in train} == {1.1} and all(r["aug_rt60"] for r in train)
    job = json.loads((tmp_path / "a" / "job.json").read_text())
    spec = job["stages"]["prepare"]["spec"]
    assert spec["train_speech_uris"] == [extra] and spec["train_noise_uris"] == [extra_noise]
    assert spec["settings"]["augment"]["kinds"] == ["speed", "reverb"]
    for args, msg in (
        (["--augment", "speed,wobble"], "unknown augmentation 'wobble'"),
        (["--augment-set", "reverb_prob=0.5"], "--augment-set needs --augment"),
        (["--augment", "reverb", "--augment-set", "reverb_prob=2"], "reverb_prob=2.0 must be in"),
        (["--augment", "reverb", "--augment-set", "rt60"], "expected KEY=VALUE"),
        (["--train-speech", str(tmp_path / "nope")], "no such file"),
    ):
        r = cli.invoke(main, [*base, "--out", str(tmp_path / "b"), *args])
        assert r.exit_code == EXIT_USAGE and msg in r.output, (args, r.output)
