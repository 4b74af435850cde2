"""The train stage without Ray: overrides, data subsets, training, checkpoints, resume, SNMF, inspect, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from batchsep.cli.main import EXIT_OK, EXIT_USAGE, main
from batchsep.errors import ConfigError, ParameterError, RegistryError, StorageError
from batchsep.io import checkpoint, storage
from batchsep.models.base import BatchsepModel, deserialize
from batchsep.models.drnmf import DrnmfEnhancer
from batchsep.models.losses import msa
from batchsep.models.lstm_mask import LstmMaskModel
from batchsep.models.snmf import SnmfEnhancer
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.features import driver as feat
from batchsep.pipeline.features.worker import feature_schema, shard_bytes
from batchsep.pipeline.inspect.driver import inspect_model
from batchsep.pipeline.train import driver as tr
from batchsep.pipeline.train.batches import SubsetFeatureDataset, train_subset
from batchsep.pipeline.train.data import DataOptions, resolve_features, training_level_db
from batchsep.pipeline.train.outputs import read_state
from batchsep.training.data.features import FeatureDataset

N_FFT = 32
F = N_FFT // 2 + 1


def _frames(items: list) -> pa.Array:
    """``list<fixed_size_list<float32, F>>`` from [T, F] arrays (None → null)."""
    offsets = np.cumsum([0] + [0 if a is None else len(a) for a in items]).astype(np.int32)
    flat = np.concatenate([np.zeros(0)] + [a.ravel() for a in items if a is not None])
    flat = flat.astype(np.float32)
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat), F)
    return pa.ListArray.from_arrays(
        pa.array(offsets), values, mask=pa.array([a is None for a in items])
    )


def write_features(
    root: Path, *, n_train: int = 48, n_valid: int = 8, seed: int = 0, psa: bool = False
) -> str:
    """Tiny STFT feature shards (F = 17) of synthetic NMF mixtures: a prepare run's ``features/``.

    Speech = a low-frequency harmonic dictionary times sparse activations, noise = a broadband
    high-frequency one; noisy = clean + noise. One error row per split checks that it is skipped.
    ``psa``: also the stored phase-sensitive target (sources in phase: ``min(|S|, |X|) = |S|``).
    """
    rng = np.random.default_rng(seed)
    f = np.arange(F)[:, None]
    Ws = np.exp(-0.5 * ((f - rng.uniform(1, 7, 6)) / 0.8) ** 2)
    Wn = np.exp(-0.5 * ((f - rng.uniform(8, 16, 4)) / 3.0) ** 2) + 0.05
    config = feat.StftFeatures(n_fft=N_FFT, hop_length=8, psa_target=psa)
    for split, n, per_shard in (("train", n_train, 12), ("valid", n_valid, 8)):
        rows = []
        for i in range(n):
            T = int(rng.integers(20, 41))
            Hs = rng.gamma(0.5, 1.0, (6, T)) * (rng.random((6, T)) < 0.4)
            Hn = rng.gamma(2.0, 0.3, (4, T))
            clean, noise = (Ws @ Hs).T.astype(np.float32), (Wn @ Hn).T.astype(np.float32)
            rows.append({"mixture_id": f"{split}-{i:04d}", "n_frames": T, "status": "ok",
                         "n_samples": (T - 1) * 8,
                         "noisy_mag": clean + noise, "clean_mag": clean, "noise_mag": noise,
                         "psa_target": clean})  # fmt: skip
        rows.append({"mixture_id": f"{split}-bad", "status": "error", "error": "unreadable"})
        for k in range(0, len(rows), per_shard):
            part = rows[k : k + per_shard]
            ok = sum(r["status"] == "ok" for r in part)
            schema = feature_schema(
                config, {"batchsep.num_ok": str(ok), "batchsep.num_rows": str(len(part))}
            )
            cols = {}
            for fld in schema:
                vals = [r.get(fld.name) for r in part]
                if fld.name.endswith("_mag") or fld.name == "psa_target":
                    cols[fld.name] = _frames(vals)
                    continue
                if fld.name == "split":
                    vals = [split] * len(part)
                elif fld.name == "index":
                    vals = list(range(k, k + len(part)))
                cols[fld.name] = pa.array(vals, fld.type)
            data = shard_bytes(pa.Table.from_pydict(cols, schema=schema))
            storage.write_bytes(
                str(root / "features" / split / f"part-{k // per_shard:05d}.parquet"), data
            )
    return str(root)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_features(tmp_path_factory.mktemp("run"))


SMALL_LSTM = {"n_layers": 1, "hidden": 16, "train.lr": 1e-2, "train.patience": None}
DATA = DataOptions(batch_size=8, crop_frames=30, snmf_frames=600)


def _valid_loss(model: BatchsepModel, features: str) -> float:
    ds = FeatureDataset(features, split="valid", batch_size=8, shuffle=False)
    model.eval()
    with torch.no_grad():
        return float(np.mean([float(model.training_loss(b)[0]) for b in ds]))


def test_parse_and_split_overrides():
    got = tr.parse_overrides(["n_layers=2", "train.lr=1e-3", "loss=psa", "train.patience=null"])
    assert got == {"n_layers": 2, "train.lr": 1e-3, "loss": "psa", "train.patience": None}
    model, train = tr.split_overrides(got)
    assert model == {"n_layers": 2, "loss": "psa"} and train == {"lr": 1e-3, "patience": None}
    with pytest.raises(ParameterError, match="KEY=VALUE"):
        tr.parse_overrides(["n_layers"])
    with pytest.raises(ConfigError, match="hiden"):
        tr.model_config("lstm", {"hiden": 3}, n_freq=F)
    assert tr.model_config("lstm", {"hidden": 3}, n_freq=F).n_freq == F  # type: ignore[attr-defined]


def test_resolve_features_accepts_run_or_folder(run, tmp_path):
    assert resolve_features(run) == str(Path(run) / "features")
    assert resolve_features(str(Path(run) / "features")) == str(Path(run) / "features")
    with pytest.raises(StorageError, match="no train/ split"):
        resolve_features(str(tmp_path))


def test_train_subset_is_fixed_nested_and_rank_balanced(run):
    features = resolve_features(run)
    small, half = train_subset(features, 0.1, 0), train_subset(features, 0.5, 0)
    assert small is not None and half is not None
    assert (len(small), len(half)) == (5, 24) and small <= half
    assert train_subset(features, 0.1, 0) == small and train_subset(features, 1.0, 0) is None
    whole = SubsetFeatureDataset(features, split="train", keep=half, batch_size=4, with_ids=True)
    assert sorted(i for b in whole for i in b["ids"]) == sorted(half)
    seen, counts = [], []
    for rank in range(2):
        ds = SubsetFeatureDataset(features, split="train", keep=half, batch_size=4, with_ids=True,
                                  rank=rank, world_size=2, crop_frames=None)  # fmt: skip
        ids = [i for b in ds for i in b["ids"]]
        counts.append(ds.num_batches())
        assert sum(1 for _ in ds) == counts[-1]
        seen.append(set(ids))
    assert counts[0] == counts[1] >= 2  # ranks stay in lockstep (the larger share is capped)
    assert not seen[0] & seen[1] and seen[0] | seen[1] <= set(half)


def test_tiny_training_improves_and_writes_outputs(run, tmp_path):
    out = str(tmp_path / "lstm")
    s = tr.train(run, out, model="lstm", overrides={**SMALL_LSTM, "train.max_epochs": 5},
                 data=DATA, verbose=False)  # fmt: skip
    losses = [r["valid_loss"] for r in s.metrics["history"]]
    assert s.epochs == 5 and s.best_valid_loss == min(losses)
    assert s.best_valid_loss < 0.7 * losses[0], losses
    for name in ("config.json", "weights.safetensors", "metrics.json", "curves.json", "state.pt"):
        assert (Path(out) / name).is_file(), name
    assert (Path(out) / "curves.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((Path(out) / "config.json").read_text())
    assert meta["stft"]["n_fft"] == N_FFT and meta["stft"]["hop_length"] == 8
    level = training_level_db(resolve_features(run), meta["stft"])
    assert (
        level is not None and meta["input_level_db"] == level == s.metrics["data"]["input_level_db"]
    )
    m = json.loads((Path(out) / "metrics.json").read_text())
    assert m["param_count"] == s.param_count > 0 and m["data"]["n_train_mixtures"] == 48
    # features without a prepare run's mixtures.parquet beside them: no training sources recorded
    assert not {"speakers", "valid_speakers", "noise_recordings"} & m["data"].keys()
    # the checkpoint holds the best weights: its validation loss is the recorded best
    reloaded = deserialize(checkpoint.read_checkpoint(out))
    assert _valid_loss(reloaded, resolve_features(run)) == pytest.approx(
        s.best_valid_loss, rel=1e-5
    )
    enhancer, name, _ = load_enhancer(out)
    assert name == "lstm" and enhancer.stft_config.n_fft == N_FFT
    assert enhancer.input_level_db == level  # "model": the level it was trained at
    assert load_enhancer(out, input_level_db=-40.0)[0].input_level_db == -40.0
    assert load_enhancer(out, input_level_db=None)[0].input_level_db is None
    mag = torch.rand(2, F, 25, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(reloaded(mag), enhancer.model(mag))


def test_resume_from_state_continues_exactly(run, tmp_path):
    over = {**SMALL_LSTM, "train.max_epochs": 2}
    tr.train(run, str(tmp_path / "a"), model="lstm", overrides=over, data=DATA, verbose=False)
    state = read_state(str(tmp_path / "a"))
    assert state is not None and state["epoch"] == 2
    again = tr.train(
        run, str(tmp_path / "a"), model="lstm", overrides=over, data=DATA, verbose=False
    )
    assert again.epochs == 2  # same settings: nothing more to do
    over4 = {**SMALL_LSTM, "train.max_epochs": 4}
    resumed = tr.train(
        run, str(tmp_path / "a"), model="lstm", overrides=over4, data=DATA, verbose=False
    )
    straight = tr.train(
        run, str(tmp_path / "b"), model="lstm", overrides=over4, data=DATA, verbose=False
    )
    got = [r["valid_loss"] for r in resumed.metrics["history"]]
    want = [r["valid_loss"] for r in straight.metrics["history"]]
    assert len(got) == 4 and got == pytest.approx(want, rel=1e-6)
    with pytest.raises(ConfigError, match=r"another model config \(hidden: 16 -> 8\)"):
        tr.train(run, str(tmp_path / "a"), model="lstm", overrides={**over4, "hidden": 8},
                 data=DATA, verbose=False,
                 fit_executor=lambda job: pytest.fail("refused only in a worker"))  # fmt: skip


def test_snmf_then_drnmf_from_it(run, tmp_path, capsys):
    snmf_uri = str(tmp_path / "snmf")
    over = {"rank_speech": 6, "rank_noise": 4, "n_iter_fit": 40, "n_iter_infer": 50}
    s = tr.train(run, snmf_uri, model="snmf", overrides=over, data=DATA, verbose=True)
    err = (
        capsys.readouterr().err
    )  # progress during the fit: every 4th of 40 iterations, per dictionary
    for side in ("speech", "noise"):
        lines = [ln for ln in err.splitlines() if ln.startswith(f"[train snmf] {side} dictionary:")]
        assert len(lines) == 10 and "iteration 40/40, objective" in lines[-1], err
    obj = s.metrics["objective"]
    for key in ("speech", "noise"):
        assert len(obj[key]) == 41 and all(
            b <= a * (1 + 1e-6) for a, b in zip(obj[key], obj[key][1:])
        )
    snmf = deserialize(checkpoint.read_checkpoint(snmf_uri))
    assert isinstance(snmf, SnmfEnhancer) and bool(snmf.fitted)
    assert s.best_valid_loss is not None
    assert s.metrics["snmf_frames"] == 600 and np.isfinite(s.best_valid_loss)
    out = str(tmp_path / "drnmf")
    d = tr.train(run, out, model="drnmf", init_from=snmf_uri, data=DATA, verbose=False,
                 overrides={"n_layers": 3, "train.max_epochs": 4, "train.lr": 5e-3})  # fmt: skip
    init = deserialize(checkpoint.read_checkpoint(str(Path(out) / "init")))
    assert isinstance(init, DrnmfEnhancer) and init.config.n_layers == 3
    assert torch.allclose(
        init.dictionaries()[0],
        snmf.W.clamp_min(1e-8) / snmf.W.clamp_min(1e-8).norm(dim=0),
        atol=1e-6,
    )
    assert d.best_valid_loss is not None
    assert d.best_valid_loss < _valid_loss(init, resolve_features(run))
    assert d.param_count == 3 * F * 10 + 6 and d.metrics["data"]["init_from"] == snmf_uri
    # every checkpoint records the level of the mixtures it was trained on
    metas = [
        json.loads((Path(u) / "config.json").read_text()) for u in (snmf_uri, out, out + "/init")
    ]
    level = training_level_db(resolve_features(run), metas[0]["stft"])
    assert level is not None and [m["input_level_db"] for m in metas] == [level] * 3
    with pytest.raises(ParameterError, match="not an SNMF"):
        tr.train(run, str(tmp_path / "x"), model="drnmf", init_from=out, data=DATA, verbose=False)


def test_drnmf_trains_its_snmf_first_and_inspect(run, tmp_path):
    out = str(tmp_path / "drnmf")
    over = {"rank_speech": 6, "rank_noise": 4, "n_layers": 2, "snmf.n_iter_fit": 20,
            "train.max_epochs": 2}  # fmt: skip
    tr.train(run, out, model="drnmf", overrides=over, data=DATA, verbose=False)
    assert (Path(out) / "snmf" / "config.json").is_file()

    def never(job: object) -> dict[str, Any]:
        pytest.fail("a worker started")

    # the SNMF under out/snmf is reused only with the same settings; a typo is refused, not ignored
    for bad, match in (({"snmf.n_iter_fit": 30}, r"snmf\.n_iter_fit: 20 -> 30"),
                       ({"snmf.n_iter_fitt": 30}, "n_iter_fitt")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            tr.train(run, out, model="drnmf", overrides={**over, **bad}, data=DATA,
                     verbose=False, fit_executor=never)  # fmt: skip
    with pytest.raises(ConfigError, match="set the SNMF of --init-from"):
        tr.train(run, str(tmp_path / "x"), model="drnmf", init_from=out + "/snmf",
                 overrides={"snmf.n_iter_fit": 5}, data=DATA, verbose=False,
                 fit_executor=never)  # fmt: skip
    files = {}
    for model_uri in (out, str(Path(out) / "snmf")):
        dest = tmp_path / ("insp_" + Path(model_uri).name)
        s = inspect_model(model_uri, str(dest))
        files[s.model] = set(s.files)
        index = (dest / "index.md").read_text()
        for name in s.files:
            assert (dest / name).read_bytes()[:4] == b"\x89PNG" and f"]({name})" in index
        assert "- training level: " in index and " dBFS RMS" in index
    assert files == {
        "drnmf": {"atoms.png", "atom_examples.png", "layers.png", "curves.png"},
        "snmf": {"atoms.png", "atom_examples.png", "objective.png"},
    }
    assert "| 2 |" in (tmp_path / "insp_drnmf" / "index.md").read_text()  # per-layer α/λ table


def test_psa_training_reads_the_stored_target(run, tmp_path):
    over = {**SMALL_LSTM, "loss": "psa", "train.max_epochs": 4}
    with pytest.raises(ConfigError, match="psa_target=true"):  # features without the target
        tr.train(run, str(tmp_path / "m"), model="lstm", overrides=over, data=DATA, verbose=False)
    psa_run = write_features(tmp_path / "psa", psa=True)
    out = str(tmp_path / "lstm-psa")
    s = tr.train(psa_run, out, model="lstm", overrides=over, data=DATA, verbose=False)
    losses = [r["valid_loss"] for r in s.metrics["history"]]
    assert s.best_valid_loss < 0.8 * losses[0], losses
    model = deserialize(checkpoint.read_checkpoint(out))
    assert isinstance(model, LstmMaskModel) and model.config.loss == "psa"
    # the stored target here is |S| (in-phase sources), so the PSA loss the trainer recorded is the
    # MSA of the same model on the same batches
    ds = FeatureDataset(resolve_features(psa_run), split="valid", batch_size=8, shuffle=False)
    with torch.no_grad():
        model.eval()
        got = np.mean([float(msa(model(b["noisy_mag"], b["lengths"]), b["noisy_mag"],
                                 b["clean_mag"], b["lengths"])) for b in ds])  # fmt: skip
    assert got == pytest.approx(s.best_valid_loss, rel=1e-5)


def test_errors(run, tmp_path):
    with pytest.raises(RegistryError, match="unknown model 'cnn'"):
        tr.train(run, str(tmp_path / "m"), model="cnn", data=DATA, verbose=False)
    with pytest.raises(StorageError):
        tr.train(str(tmp_path / "nothing"), str(tmp_path / "m"), model="lstm", verbose=False)
    with pytest.raises(ConfigError, match="lr"):
        tr.train(run, str(tmp_path / "m"), model="lstm", overrides={"train.lr": -1}, verbose=False)
    with pytest.raises(ParameterError, match="train_fraction"):
        DataOptions(train_fraction=0)


def test_cli_train_and_inspect(run, tmp_path):
    cli = CliRunner()
    out = str(tmp_path / "cli_lstm")
    args = ["train", "--model", "lstm", "--features", run, "--out", out, "--local",
            "--config", "n_layers=1", "--config", "hidden=8", "--max-epochs", "1",
            "--batch-size", "8", "--crop-frames", "0"]  # fmt: skip
    r = cli.invoke(main, args)
    assert r.exit_code == EXIT_OK, r.output
    assert "trained lstm" in r.output and "wall" in r.output
    r = cli.invoke(main, ["inspect", out, "--out", str(tmp_path / "insp")])
    assert r.exit_code == EXIT_OK and (tmp_path / "insp" / "curves.png").is_file()
    sha = json.loads((Path(out) / "config.json").read_text())["sha256"]
    assert (
        f"weights sha256: `{sha}`" in (tmp_path / "insp" / "index.md").read_text()
    )  # all 64 digits
    r = cli.invoke(main, [*args[:-2], "--config", "hiden=3"])
    assert r.exit_code == EXIT_USAGE and "hiden" in r.output
    fresh = tmp_path / "never_made"
    r = cli.invoke(main, [*args, "--out", str(fresh), "--config", "train.lr=-1"])
    assert r.exit_code == EXIT_USAGE and "lr" in r.output
    assert not fresh.exists()  # a rejected command leaves no empty model folder behind
    r = cli.invoke(main, ["train", "--features", str(tmp_path / "none"), "--local"])
    assert r.exit_code == EXIT_USAGE and "no train/ split" in r.output


def test_log_line_is_written_once_under_ray_trains_print_patch(capsys, caplog, monkeypatch):
    """Ray Train replaces ``print`` in its workers with one that both prints and logs: a progress line
    printed there appeared twice in job logs. ``log_line`` writes to the stream, so it appears once."""
    import builtins
    import logging
    import sys

    from ray.train.v2._internal.logging import patch_print

    monkeypatch.setattr(builtins, "print", patch_print.redirected_print)
    with caplog.at_level(logging.INFO):
        print("via print", file=sys.stderr)  # the patched print: printed and logged
        tr.log_line(True, "[train x] epoch 0")
        tr.log_line(False, "not shown")
    assert capsys.readouterr().err == "via print\n[train x] epoch 0\n"
    assert [r.getMessage() for r in caplog.records] == ["via print"]


def test_training_level_db_is_the_median_mixture_level(tmp_path):
    """Known answer: white-noise mixtures at -20, -30 and -32 dBFS RMS → -30 (Parseval on their stored STFT
    magnitudes, rounded to 1 dB); error rows and rows without a length are skipped."""
    from batchsep.dsp.stft import StftConfig, stft

    config = feat.StftFeatures()  # the reference STFT: 512 / 128, sqrt-Hann
    rng = np.random.default_rng(3)
    rows = []
    for i, level in enumerate([-20.0, -30.0, -32.0]):
        x = rng.standard_normal(24000)
        x = (x / np.sqrt(np.mean(x**2)) * 10 ** (level / 20)).astype(np.float32)
        mag = np.abs(stft(x, n_fft=512, hop_length=128)).T.astype(np.float32)
        rows.append({"mixture_id": f"m{i}", "status": "ok", "n_samples": len(x), "noisy_mag": mag})
    rows.append({"mixture_id": "bad", "status": "error", "noisy_mag": None})
    rows.append({"mixture_id": "nolen", "status": "ok", "noisy_mag": rows[0]["noisy_mag"]})
    schema = feature_schema(config)
    cols = {}
    for fld in schema:
        vals = [r.get(fld.name) for r in rows]
        if fld.name.endswith("_mag"):
            n_bins = 257
            flat = np.concatenate([np.zeros(0)] + [v.ravel() for v in vals if v is not None])
            offsets = np.cumsum([0] + [0 if v is None else len(v) for v in vals]).astype(np.int32)
            cols[fld.name] = pa.ListArray.from_arrays(
                pa.array(offsets),
                pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(np.float32)), n_bins),
                mask=pa.array([v is None for v in vals]),
            )
            continue
        if fld.name == "split":
            vals = ["train"] * len(rows)
        elif fld.name == "index":
            vals = list(range(len(rows)))
        cols[fld.name] = pa.array(vals, fld.type)
    storage.write_bytes(
        str(tmp_path / "train" / "part-00000.parquet"),
        shard_bytes(pa.Table.from_pydict(cols, schema=schema)),
    )
    stft_cfg = StftConfig().to_dict()
    assert training_level_db(str(tmp_path), stft_cfg) == -30.0
    # the Parseval estimate itself, before rounding: within 0.1 dB of the true level
    from batchsep.dsp.stft import level_db_from_magnitudes

    for r, level in zip(rows, [-20.0, -30.0, -32.0]):
        est = level_db_from_magnitudes(r["noisy_mag"], r["n_samples"], StftConfig())
        assert abs(est - level) < 0.1


def _mixtures_table(root: Path, *, drop: str | None = None) -> None:
    """A ``mixtures.parquet`` for :func:`write_features`'s ids: train speakers s0..s3, noises n/0..n/4 plus
    second noises x/0, x/1 on every third mixture; valid speakers v0, v1; rows ``*-bad`` (error) and a test
    split. ``drop``: leave that mixture id out (the table does not describe the features)."""
    rows = []
    for split, n in (("train", 48), ("valid", 8), ("test", 4)):
        for i in range(n):
            rows.append({"mixture_id": f"{split}-{i:04d}", "split": split, "status": "ok",
                         "speaker": {"train": f"s{i % 4}", "valid": f"v{i % 2}"}.get(split, "t0"),
                         "noise_rel_path": f"{split[:2]}/{i % 5}.wav",
                         "aug_noise2_rel_path": f"x/{i % 2}.wav" if split == "train" and i % 3 == 0
                         else None})  # fmt: skip
        rows.append({"mixture_id": f"{split}-bad", "split": split, "status": "error",
                     "speaker": "never", "noise_rel_path": "never.wav", "aug_noise2_rel_path": None})  # fmt: skip
    rows = [r for r in rows if r["mixture_id"] != drop]
    table = pa.Table.from_pylist(rows)
    storage.write_bytes(str(root / "mixtures.parquet"), shard_bytes(table))


def test_training_records_its_speakers_and_noise_recordings(tmp_path):
    """Issue 19: metrics.json's data section lists the train split's speakers and noise recordings (second
    noises included) and the valid split's speakers, from the prepare run the features lie in."""
    from batchsep.pipeline.train.data import recorded_sources

    root = Path(write_features(tmp_path / "run"))
    _mixtures_table(root)
    out = str(tmp_path / "lstm")
    s = tr.train(str(root), out, model="lstm", overrides={**SMALL_LSTM, "train.max_epochs": 1},
                 data=DATA, verbose=False)  # fmt: skip
    data = json.loads((Path(out) / "metrics.json").read_text())["data"]
    assert data == s.metrics["data"]
    assert data["speakers"] == ["s0", "s1", "s2", "s3"] and data["valid_speakers"] == ["v0", "v1"]
    assert data["noise_recordings"] == [*(f"tr/{i}.wav" for i in range(5)), "x/0.wav", "x/1.wav"]
    features = resolve_features(str(root))
    # a train fraction records only its subset's mixtures: ids 0, 4, 8, ... are the s0 ones
    keep = frozenset(f"train-{i:04d}" for i in range(0, 48, 4))
    assert recorded_sources(features, keep)["speakers"] == ["s0"]
    _mixtures_table(root, drop="train-0007")  # a feature row the table lacks: not its table
    assert recorded_sources(features) == {}


def test_init_from_a_model_of_the_same_architecture(run, tmp_path):
    a = str(tmp_path / "a")
    tr.train(run, a, model="lstm", overrides={**SMALL_LSTM, "train.max_epochs": 3}, data=DATA,
             verbose=False)  # fmt: skip
    start = deserialize(checkpoint.read_checkpoint(a))
    # another loss (compressed), a learning rate too small to move the weights: they are a's
    over = {**SMALL_LSTM, "loss_power": 0.5, "train.lr": 1e-12, "train.max_epochs": 1}
    b = str(tmp_path / "b")
    s = tr.train(run, b, model="lstm", overrides=over, data=DATA, init_from=a, verbose=False)
    assert s.metrics["data"]["init_from"] == storage.normalize(a)
    got = deserialize(checkpoint.read_checkpoint(b))
    assert isinstance(got, LstmMaskModel) and got.config.loss_power == 0.5
    for (name, w), (_, w0) in zip(
        got.state_dict().items(), start.state_dict().items(), strict=True
    ):
        assert torch.allclose(w, w0, atol=1e-6), name
    with pytest.raises(ConfigError, match=r"another architecture \(hidden: 16 -> 8\)"):
        tr.train(run, str(tmp_path / "c"), model="lstm", overrides={**over, "hidden": 8},
                 data=DATA, init_from=a, verbose=False)  # fmt: skip
    with pytest.raises(ConfigError, match="holds a 'lstm' model, not 'blstm'"):
        tr.train(run, str(tmp_path / "c"), model="blstm", overrides=over, data=DATA,
                 init_from=a, verbose=False)  # fmt: skip
    with pytest.raises(StorageError):
        tr.train(run, str(tmp_path / "c"), model="lstm", overrides=over, data=DATA,
                 init_from=str(tmp_path / "none"), verbose=False)  # fmt: skip


def test_a_state_written_before_a_new_config_field_still_resumes(run, tmp_path):
    from batchsep.pipeline.train.outputs import check_resumable

    out = str(tmp_path / "a")
    tr.train(run, out, model="lstm", overrides={**SMALL_LSTM, "train.max_epochs": 1}, data=DATA,
             verbose=False)  # fmt: skip
    state = read_state(out)
    assert state is not None
    now = dict(state["job"]["model_config"])
    del state["job"]["model_config"]["loss_power"]  # as written before the field existed
    check_resumable(out, now, state)  # the default: same config
    with pytest.raises(ConfigError, match=r"loss_power: 1.0 -> 0.3"):
        check_resumable(out, {**now, "loss_power": 0.3}, state)
