"""The report stage: gather metrics of any number of runs and write report.md, index.html and PNGs."""

from __future__ import annotations

import io
import os
import posixpath
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from batchsep.errors import ParameterError, StorageError
from batchsep.io import parquet, storage
from batchsep.pipeline.common import jobinfo
from batchsep.pipeline.evaluate.driver import METRICS_DIR
from batchsep.reporting.content import GROUP, system_table
from batchsep.reporting.files import rank_metric
from batchsep.reporting.render import render_report

OUR_FILES = re.compile(
    r"^(report\.md|index\.html|sdri_vs_snr\.png|sdri_by_noise\.png|per_speaker\.png"
    r"|dnsmos\.png|confusion(_\d+)?\.png|spectrograms_\d+\.png)$"
)
"""Names of the files a report writes: a later report into the same folder removes those of them it
does not write again (stale plots); any other file there is left alone."""


class ReportOutputError(StorageError):
    """The report's output folder cannot be written (the CLI exits 3, as for other outputs)."""


def load_run(run_uri: str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """A run's per-file metrics and its job.json.

    Raises
    ------
    StorageError
        When the folder does not exist or was never evaluated.
    """
    if not storage.exists(run_uri):
        raise StorageError(f"{run_uri}: no such run folder")
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


def _improvement_label(row: Any) -> str:
    """`` (SDRi +x dB)`` for a metrics row, `` (SI-SDRi +x dB)`` without SDRi, `` (DNSMOS OVRL x)``
    without either, else empty."""
    for key, name, unit in (("sdr_i", "SDRi", " dB"), ("si_sdr_i", "SI-SDRi", " dB"),
                            ("dnsmos_ovrl", "DNSMOS OVRL", "")):  # fmt: skip
        try:
            v = float(row.get(key))
        except (TypeError, ValueError):
            continue
        if np.isfinite(v):
            return f" ({name} {v:+.1f}{unit})" if unit else f" ({name} {v:.2f})"
    return ""


def _input_label(row: Any) -> str:
    """`` (DNSMOS OVRL x)`` of the unprocessed input of a metrics row (beside its outputs' labels when
    those show DNSMOS OVRL), else empty."""
    if pd.notna(pd.to_numeric(row.get("sdr_i"), errors="coerce")) or pd.notna(
        pd.to_numeric(row.get("si_sdr_i"), errors="coerce")
    ):
        return ""
    v = pd.to_numeric(row.get("dnsmos_ovrl_in"), errors="coerce")
    return f" (DNSMOS OVRL {float(v):.2f})" if pd.notna(v) else ""


def _system_rows(name: str, df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The run's rows per system label (the run name, or ``run / model`` for a multi-model run), as
    :func:`~batchsep.reporting.content.system_table` labels them."""
    table = system_table([(name, df, None)])
    return [(s, table[table[GROUP] == s]) for s in dict.fromkeys(table[GROUP].astype(str))]


def _position(p: int, n: int) -> str:
    """What the ``p``-th of ``n`` ranked files (worst first) is: worst, median, best ..."""
    if n == 1:
        return "only"
    if p == 0:
        return "worst"
    if p == n - 1:
        return "best"
    if p == (n - 1) // 2 or p == n // 2:
        return "median"
    return f"rank {p + 1} of {n} (worst first) by"


def pick_examples(
    runs: Sequence[tuple[str, pd.DataFrame]] | pd.DataFrame, n: int = 3, *, sr: int = 16000
) -> list[dict[str, Any]]:
    """Audio of up to ``n`` files spanning the range of the ranking metric (worst, median, best).

    The ranking metric is SDRi, else SI-SDRi, else DNSMOS OVRL of the output
    (:func:`~batchsep.reporting.files.rank_metric`: the per-file table's order); the files are chosen
    from the first system with enhanced audio, among its files that have a value (all, in name order,
    when none has). Each example holds the noisy input, every system's enhanced output of that file
    (labelled with the system and its value), the clean reference when there is one, ``rel_path`` and
    ``why`` it was chosen ("worst DNSMOS OVRL of the 6 files of run (1.43)").
    ``runs``: ``[(name, metrics), ...]`` (or one table).
    """
    if isinstance(runs, pd.DataFrame):
        runs = [("enhanced", runs)]
    systems = [s for name, df in runs for s in _system_rows(name, df)]
    systems = [(s, df[df["enhanced_uri"].notna()]) for s, df in systems if "enhanced_uri" in df]
    systems = [(s, df) for s, df in systems if not df.empty]
    if not systems:
        return []
    first, ok = systems[0]
    ranked = rank_metric(ok)
    if ranked is not None:
        key = ranked[0]
        values = pd.to_numeric(ok[key], errors="coerce")
        ok = ok[values.notna()].assign(_v=values[values.notna()]).sort_values(["_v", "rel_path"])
    else:
        ok = ok.sort_values("rel_path")
    idx = sorted({round(i) for i in np.linspace(0, len(ok) - 1, min(n, len(ok)))})
    out = []
    for p, (_, r) in zip(idx, ok.iloc[idx].iterrows(), strict=True):
        rel = r["rel_path"]
        if ranked is not None:
            _, label, unit = ranked
            value = float(r["_v"])
            shown = f"{value:+.1f}{unit}" if unit else f"{value:.2f}"
            where = "of the enhanced output " if key == "dnsmos_ovrl" else ""
            why = f"{_position(p, len(ok))} {label} {where}of the {len(ok)} files of {first} ({shown})"
        else:
            why = f"file {p + 1} of {len(ok)} of {first} in name order (no metric to rank by)"
        try:
            noisy = _audio(r["noisy_uri"], sr)
            clean = _audio(r["clean_uri"], sr) if isinstance(r.get("clean_uri"), str) else None
            enhanced: dict[str, np.ndarray] = {}
            for s, df in systems:
                hit = df[df["rel_path"] == rel]
                if not hit.empty:
                    row = hit.iloc[0]
                    enhanced[f"{s}{_improvement_label(row)}"] = _audio(row["enhanced_uri"], sr)
        except (StorageError, sf.LibsndfileError, RuntimeError, TypeError):
            continue
        signals = [noisy, *enhanced.values(), *([clean] if clean is not None else [])]
        m = min(len(v) for v in signals)
        out.append(
            {
                "noisy": noisy[:m],
                "enhanced": {k: v[:m] for k, v in enhanced.items()},
                "clean": clean[:m] if clean is not None else None,
                "sr": sr,
                "title": str(rel),
                "rel_path": str(rel),
                "why": why[0].upper() + why[1:],
                "noisy_label": f"noisy{_input_label(r)}",
            }
        )
    return out


def relative_paths(obj: Any, base: str) -> Any:
    """``obj`` (a job record) with every local absolute path (``/x/y``, ``file:///x/y``) that shares more
    than the root with the local folder ``base`` written relative to it (``../run``); other values
    (``s3://`` URIs, paths elsewhere, numbers ...) as they are."""
    if isinstance(obj, dict):
        return {k: relative_paths(v, base) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [relative_paths(v, base) for v in obj]
    if not isinstance(obj, str) or "\n" in obj or not obj.startswith(("/", "file://")):
        return obj
    path = storage.normalize(obj)
    if os.path.commonpath([path, base]) == os.path.dirname(os.sep):  # only the root in common
        return obj
    return os.path.relpath(path, base)


PATHS_NOTE = "Local paths are relative to the folder of this report (those in the same tree as it)."


def _emotion_by_system(
    runs: Sequence[tuple[str, pd.DataFrame, Any]],
) -> dict[str, tuple[list[str], list[str], None, list[str]]]:
    """True and predicted emotions (and speakers) per system that has any."""
    out = {}
    for name, df, _ in runs:
        if not {"emotion_true", "emotion_pred"} <= set(df):
            continue
        for s, part in _system_rows(name, df):
            emo = part[part["emotion_true"].notna() & part["emotion_pred"].notna()]
            if emo.empty:
                continue
            speakers = (
                emo["speaker"].fillna("?").astype(str).tolist()
                if "speaker" in emo
                else ["?"] * len(emo)
            )
            out[s] = (
                emo["emotion_true"].astype(str).tolist(),
                emo["emotion_pred"].astype(str).tolist(),
                None,
                speakers,
            )
    return out


def _check_run_uris(run_uris: Sequence[str]) -> list[str]:
    if isinstance(run_uris, str) or not run_uris:
        raise ParameterError("give at least one evaluated run")
    seen: dict[str, str] = {}
    for uri in run_uris:
        key = storage.normalize(uri)
        if key in seen:
            raise ParameterError(
                f"run {uri} is given twice ({seen[key]} is the same run): give each run once"
            )
        seen[key] = uri
    return list(run_uris)


def _remove_stale(out_uri: str, written: set[str]) -> list[str]:
    """Delete files of an earlier report in ``out_uri`` (our names only) that this one did not write."""
    removed = []
    for entry in storage.list_files(out_uri):
        rel = entry.rel_path
        if "/" not in rel and OUR_FILES.match(rel) and rel not in written:
            storage.delete(storage.join(out_uri, rel))
            removed.append(rel)
    return removed


def report(
    run_uris: Sequence[str],
    out_uri: str,
    *,
    names: Sequence[str] | None = None,
    n_examples: int = 3,
) -> list[str]:
    """Aggregate the evaluated runs into ``out_uri``; returns the URIs written.

    Every input is read and the report rendered before ``out_uri`` is touched, so a failed report
    leaves no folder behind. Files of an earlier report in ``out_uri`` that this one does not
    produce again are removed (only the report's own file names).

    Raises
    ------
    ParameterError
        No run, or the same run twice.
    StorageError
        A run folder is missing or was never evaluated.
    ReportOutputError
        ``out_uri`` cannot be written.
    """
    run_uris = _check_run_uris(run_uris)
    names = (
        list(names) if names else [posixpath.basename(storage.normalize(u)) or u for u in run_uris]
    )
    if len(set(names)) != len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    local = not storage.is_s3(out_uri)
    runs = []
    for name, uri in zip(names, run_uris, strict=True):
        df, job = load_run(uri)
        if local and job:
            job = relative_paths(job, storage.normalize(out_uri))
        runs.append((name, df, job))
    examples = pick_examples([(name, df) for name, df, _ in runs], n_examples)
    emotion = _emotion_by_system(runs)
    files = render_report(
        runs, examples, emotion or None, provenance_note=PATHS_NOTE if local else ""
    )
    created = storage.first_missing_folder(out_uri)  # removed again if the report cannot be written
    written = []
    try:
        storage.check_writable(out_uri)
        for name, data in files.items():
            uri = storage.join(out_uri, name)
            storage.write_bytes(uri, data)
            written.append(uri)
        _remove_stale(out_uri, set(files))
    except StorageError as e:
        storage.remove_if_empty(created)
        raise ReportOutputError(f"cannot write the report to {out_uri}: {e}") from e
    return written
