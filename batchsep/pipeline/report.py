"""The report stage: gather metrics of any number of runs and write report.md, index.html and PNGs."""

from __future__ import annotations

import io
import posixpath
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from batchsep.errors import StorageError
from batchsep.io import parquet, storage
from batchsep.pipeline import jobinfo
from batchsep.pipeline.evaluate import METRICS_DIR
from batchsep.reporting.render import render_report


def load_run(run_uri: str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """A run's per-file metrics and its job.json (raises StorageError when it was never evaluated)."""
    table = parquet.read_parts(storage.join(run_uri, METRICS_DIR))
    if table is None:
        raise StorageError(
            f"{run_uri} has no {METRICS_DIR}/part-*.parquet: run batchsep evaluate first"
        )
    job = jobinfo.read_job_json(run_uri)
    return table.to_pandas(), job


def _audio(uri: str, sr: int) -> np.ndarray:
    from batchsep.dsp.resample import to_rate_mono

    x, s = sf.read(io.BytesIO(storage.read_bytes(uri)), dtype="float32", always_2d=True)
    return to_rate_mono(x.T, s, sr)


def pick_examples(df: pd.DataFrame, n: int = 3, *, sr: int = 16000) -> list[dict[str, Any]]:
    """Audio of up to ``n`` files spanning the SDR-improvement range (worst, median, best)."""
    ok = df[df["enhanced_uri"].notna() & df["clean_uri"].notna()]
    if "sdr_i" in ok and ok["sdr_i"].notna().any():
        ok = ok.sort_values("sdr_i")
    if ok.empty:
        return []
    idx = sorted({round(i) for i in np.linspace(0, len(ok) - 1, min(n, len(ok)))})
    out = []
    for _, r in ok.iloc[idx].iterrows():
        try:
            ex = {k: _audio(r[f"{k}_uri"], sr) for k in ("noisy", "enhanced", "clean")}
        except (StorageError, sf.LibsndfileError, RuntimeError):
            continue
        m = min(len(v) for v in ex.values())
        sdri = r.get("sdr_i")
        label = f" (SDRi {sdri:+.1f} dB)" if sdri is not None and np.isfinite(sdri) else ""
        out.append(
            {**{k: v[:m] for k, v in ex.items()}, "sr": sr, "title": f"{r['rel_path']}{label}"}
        )
    return out


def report(
    run_uris: Sequence[str],
    out_uri: str,
    *,
    names: Sequence[str] | None = None,
    n_examples: int = 3,
) -> list[str]:
    """Aggregate the evaluated runs into ``out_uri``; returns the URIs written."""
    if not run_uris:
        raise StorageError("give at least one evaluated run")
    names = (
        list(names) if names else [posixpath.basename(storage.normalize(u)) or u for u in run_uris]
    )
    if len(set(names)) != len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    storage.check_writable(out_uri)
    runs = []
    for name, uri in zip(names, run_uris, strict=True):
        df, job = load_run(uri)
        runs.append((name, df, job))
    examples = pick_examples(runs[0][1], n_examples)
    frames = [df for _, df, _ in runs if {"emotion_true", "emotion_pred"} <= set(df)]
    emo = pd.concat(frames) if frames else pd.DataFrame()
    if not emo.empty:
        emo = emo[emo["emotion_true"].notna() & emo["emotion_pred"].notna()]
    emotion = None
    if not emo.empty:
        emotion = (
            emo["emotion_true"].tolist(),
            emo["emotion_pred"].tolist(),
            None,
            emo["speaker"].fillna("?").tolist(),
        )
    files = render_report(runs, examples, emotion)
    written = []
    for name, data in files.items():
        uri = storage.join(out_uri, name)
        storage.write_bytes(uri, data)
        written.append(uri)
    return written
