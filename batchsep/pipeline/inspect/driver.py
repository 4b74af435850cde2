"""``batchsep inspect``: look inside a trained model folder (PNGs + ``index.md`` written to any URI).

- SNMF: speech and noise atoms at the start of the multiplicative updates (random, regenerated from the
  seed) and learned; the objective per iteration.
- DR-NMF: atoms before training (the random start of its SNMF), at initialisation (the SNMF) and after
  training (first and last layer); learned per-layer α_k and λ_k against their initial values; learning
  curves.
- (B)LSTM, emotion CNN: learning curves.
- Emotion VAE: σ against μ of each latent dimension coloured by emotion (seed 003), on the corpus it was
  trained on (all utterances and held-out actors), when that corpus is reachable; learning curves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from batchsep.errors import BatchsepError, StorageError
from batchsep.io import checkpoint, storage
from batchsep.models.base import BatchsepModel, deserialize
from batchsep.models.nmf import normalize_columns
from batchsep.pipeline.inspect import plots
from batchsep.training.curves import learning_curves, render_learning_curves


@dataclass
class InspectSummary:
    """What ``inspect`` wrote: the figure files (names under ``out_uri``) and ``index.md``."""

    model: str
    out_uri: str
    index_uri: str
    files: list[str] = field(default_factory=list)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def random_start(
    n_freq: int, rank_speech: int, rank_noise: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The column-normalised random dictionaries SNMF's updates start from (as in ``snmf_fit``)."""
    out = []
    for rank, s in ((rank_speech, seed), (rank_noise, seed + 1)):
        g = torch.Generator().manual_seed(s)
        out.append(_numpy(normalize_columns(torch.rand(n_freq, rank, generator=g))))
    return out[0], out[1]


def _try_model(uri: str | None) -> BatchsepModel | None:
    if not uri or not storage.exists(storage.join(uri, checkpoint.CONFIG_NAME)):
        return None
    try:
        return deserialize(checkpoint.read_checkpoint(uri))
    except (BatchsepError, RuntimeError):
        return None


def _snmf_sections(model: Any, metrics: dict[str, Any], sr: int) -> list[tuple[str, bytes, str]]:
    c = model.config
    stages = {
        "random start": random_start(c.n_freq, c.rank_speech, c.rank_noise, c.seed),
        "learned (SNMF)": (_numpy(model.W_speech), _numpy(model.W_noise)),
    }
    out = [
        ("atoms.png", plots.plot_dictionaries(stages, sample_rate=sr, order_from="learned (SNMF)",
                                              title="SNMF dictionaries"),
         "Speech and noise atoms (columns, dB re peak): random start of the multiplicative updates "
         "and learned dictionaries, sorted by peak frequency of the learned atom."),
        ("atom_examples.png", plots.plot_atom_examples(stages, sample_rate=sr, order_from="learned (SNMF)"),
         "A few atoms as spectra, before and after learning."),
    ]  # fmt: skip
    if metrics.get("objective"):
        png = plots.plot_objectives(metrics["objective"], title="SNMF objective per iteration")
        out.append(("objective.png", png, "Objective per multiplicative-update iteration."))
    return out


def _drnmf_sections(
    model: Any, model_uri: str, metrics: dict[str, Any], sr: int
) -> tuple[list[tuple[str, bytes, str]], list[str]]:
    from batchsep.models.drnmf import lipschitz_constant

    c, rs = model.config, model.config.rank_speech
    W = _numpy(model.dictionaries())
    init = _try_model(storage.join(model_uri, "init"))
    snmf_uri = (metrics.get("data") or {}).get("init_from") or storage.join(model_uri, "snmf")
    snmf = _try_model(snmf_uri)
    seed = snmf.config.seed if snmf is not None else 0  # type: ignore[attr-defined]
    stages: dict[str, tuple[np.ndarray, np.ndarray]] = {
        f"before training (random start, seed {seed})": random_start(
            c.n_freq, rs, c.rank_noise, seed
        )
    }
    alpha = {"after training": _numpy(model.log_alpha.exp()).tolist()}
    lam = {"after training": _numpy(model.log_lam.exp()).tolist()}
    lip = None
    if init is not None:
        W0 = _numpy(init.dictionaries())  # type: ignore[operator]
        stages["SNMF init"] = (W0[0][:, :rs], W0[0][:, rs:])
        alpha = {"init": _numpy(init.log_alpha.exp()).tolist(), **alpha}  # type: ignore[operator]
        lam = {"init": _numpy(init.log_lam.exp()).tolist(), **lam}  # type: ignore[operator]
        lip = lipschitz_constant(torch.from_numpy(W0[0]))
    stages["after: layer 1"] = (W[0][:, :rs], W[0][:, rs:])
    if c.n_layers > 1:
        stages[f"after: layer {c.n_layers}"] = (W[-1][:, :rs], W[-1][:, rs:])
    order = "SNMF init" if "SNMF init" in stages else "after: layer 1"
    out = [
        ("atoms.png", plots.plot_dictionaries(stages, sample_rate=sr, order_from=order,
                                              title="DR-NMF dictionaries"),
         "Speech (left) and noise (right) atoms, dB re each atom's peak: before training (random "
         "start of the SNMF updates), from the SNMF initialisation, and after DR-NMF training (first "
         "and last layer); columns sorted by peak frequency of the SNMF atoms."),
        ("atom_examples.png", plots.plot_atom_examples(stages, sample_rate=sr, order_from=order),
         "A few atoms as spectra at each stage."),
        ("layers.png", plots.plot_layer_parameters(alpha, lam, lipschitz=lip,
                                                   title="DR-NMF per-layer parameters"),
         "Per-layer inverse step size α_k and sparsity threshold λ_k: initial (from SNMF) and learned."),
    ]  # fmt: skip
    rows = ["| layer | α init | α learned | λ init | λ learned |", "|---|---|---|---|---|"]
    for k in range(c.n_layers):
        a0 = f"{alpha['init'][k]:.4g}" if "init" in alpha else "–"
        l0 = f"{lam['init'][k]:.4g}" if "init" in lam else "–"
        rows.append(
            f"| {k + 1} | {a0} | {alpha['after training'][k]:.4g} | {l0} | "
            f"{lam['after training'][k]:.4g} |"
        )
    return out, rows


def inspect_model(model_uri: str, out_uri: str) -> InspectSummary:
    """Write figures describing the model at ``model_uri`` (or ``default``) and an ``index.md``.

    Raises
    ------
    StorageError
        ``model_uri`` is not a model folder, or ``out_uri`` is not writable.
    """
    payload = checkpoint.read_checkpoint(model_uri)
    storage.check_writable(out_uri)
    model = deserialize(payload)
    uri = payload["uri"]
    metrics = checkpoint.read_metrics(uri) or {}
    sr = int((payload.get("stft") or {}).get("sample_rate", 16000))
    name = payload["model_name"]
    sections: list[tuple[str, bytes, str]] = []
    table: list[str] = []
    if name == "snmf":
        sections = _snmf_sections(model, metrics, sr)
    elif name == "drnmf":
        sections, table = _drnmf_sections(model, uri, metrics, sr)
    elif name == "emotion-vae":
        from batchsep.pipeline.inspect.latent import latent_sections

        sections = latent_sections(model, features=payload.get("features"), metrics=metrics)  # type: ignore[arg-type]
    if metrics.get("history"):
        png = render_learning_curves({name: learning_curves(metrics["history"])},
                                     title=f"{name} learning curves")  # fmt: skip
        sections.append(
            ("curves.png", png, "Training (dashed) and validation (solid) loss per epoch.")
        )
    if not sections:
        raise StorageError(f"{model_uri}: nothing to inspect for model {name!r} (no metrics.json)")
    for fname, png, _ in sections:
        storage.write_bytes(storage.join(out_uri, fname), png)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines = [
        f"# Model `{name}`",
        "",
        f"- folder: `{uri}`",
        f"- weights sha256: `{payload['sha256']}`",
        f"- trainable parameters: {n_params}",
        f"- config: `{json.dumps(payload['config'], sort_keys=True)}`",
    ]
    if payload.get(checkpoint.INPUT_LEVEL_KEY) is not None:
        lines.append(
            f"- training level: {payload[checkpoint.INPUT_LEVEL_KEY]:g} dBFS RMS (median of its training "
            "mixtures; `batchsep enhance` brings each input window to it)"
        )
    if metrics:
        valid = metrics.get("best_valid_loss")
        lines += [
            f"- best epoch: {metrics.get('best_epoch')}, validation loss: "
            f"{'n/a' if valid is None else f'{valid:.5f}'}, stop: {metrics.get('stop_reason')}",
            f"- training wall time: {metrics.get('wall_s', float('nan')):.1f} s",
        ]
    if table:
        lines += ["", "## Per-layer parameters", "", *table]
    for fname, _, caption in sections:
        lines += ["", f"## {fname[:-4].replace('_', ' ')}", "", caption, "", f"![{fname}]({fname})"]
    index_uri = storage.join(out_uri, "index.md")
    storage.write_text(index_uri, "\n".join(lines) + "\n")
    return InspectSummary(name, out_uri, index_uri, [s[0] for s in sections])
