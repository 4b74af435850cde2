"""What a report says, independent of its format: tables as rows of formatted cells.

:func:`build_content` turns the runs into a :class:`ReportContent`; ``html.py`` and ``markdown.py``
only lay it out. Numbers are formatted here once, so the two formats always agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from batchsep.evaluation.aggregate import (
    SUMMARY_METRICS,
    by_noise_class,
    by_snr_bin,
    speaker_spread,
    summarize,
)
from batchsep.reporting.files import files_table
from batchsep.reporting.quality import dnsmos_table, emotion_tag_table, reference_table
from batchsep.reporting.tables import GROUP, NA, Table, _finite_any, fmt

# (label, summary column, decimals, suffix)
SUMMARY_COLUMNS = (
    ("Files", "n_files", 0, ""),
    ("SDRi mean (dB)", "sdr_i_mean", 2, ""),
    ("SDRi median (dB)", "sdr_i_median", 2, ""),
    ("SI-SDRi mean (dB)", "si_sdr_i_mean", 2, ""),
    ("SI-SDRi median (dB)", "si_sdr_i_median", 2, ""),
    ("PESQ mean", "pesq_mean", 2, ""),
    ("PESQ median", "pesq_median", 2, ""),
    ("STOI mean", "stoi_mean", 3, ""),
    ("STOI median", "stoi_median", 3, ""),
    ("DNSMOS OVRL mean", "dnsmos_ovrl_mean", 2, ""),
    ("Processing speed per worker (× real time)", "x_real_time", 1, "×"),
    ("End to end, last run (× real time)", "e2e_x_real_time", 1, "×"),
)

SPEED_NOTE = (
    "Processing speed per worker: audio duration / the time enhance spent on the files (decode → "
    "model → write, summed over files and workers; start-up and scheduling excluded). End to end, "
    "last run: the audio the run's last `batchsep enhance` processed / its wall time, start-up "
    "included, as enhance prints it (a resumed run counts only what it did; – for runs that did not "
    "record it)."
)
METRICS_NOTE = (
    "SDRi / SI-SDRi: improvement over the unprocessed input, in dB (BSS Eval SDR with 512-tap "
    "filters; scale-invariant SDR). PESQ: wide-band MOS-LQO."
)
"""What the reference metrics of the summary are (said only when the summary shows them)."""
TAGGED_MARK = " †"
TAGGED_NOTE = "†: this run also tagged emotions, and that time is included in its speed."

REFERENCE_SUMMARY = frozenset(c for _, c, _, _ in SUMMARY_COLUMNS[1:9])
"""Summary columns that need clean references (left out when no system has any of them)."""
DNSMOS_SUMMARY = frozenset({"dnsmos_ovrl_mean"})
"""Summary columns from DNSMOS (left out when no system has DNSMOS scores)."""
BREAKDOWN_LABELS = {"sdr_i": "SDRi", "si_sdr_i": "SI-SDRi"}
MIXED_METRIC = "sdr_i_or_si_sdr_i"
"""Breakdown column of a report whose systems do not all have SDRi: SDRi, else SI-SDRi."""


@dataclass
class FigureView:
    """A figure: PNG file name in the report, caption."""

    name: str
    caption: str


@dataclass
class ExampleView:
    """One audio example: title, spectrogram PNG name, WAV bytes per label, its page anchor
    (``example-1``) and why it was chosen."""

    title: str
    image: str
    audio: list[tuple[str, bytes]]
    note: str = ""
    anchor: str = ""
    why: str = ""


@dataclass
class EmotionView:
    """Emotion results: headline numbers, confusion-matrix PNG name, per-class table."""

    tiles: list[tuple[str, str]]
    image: str
    table: Table
    system: str = ""


@dataclass
class ReportContent:
    """Everything a report shows, formatted."""

    systems: list[str]
    n_files: int
    summary: Table
    tiles: list[dict[str, str]]
    snr: Table | None
    noise: Table | None
    speakers: Table | None
    provenance: list[tuple[str, list[tuple[str, str]]]]
    n_scored: int = 0
    breakdown_metric: str = "sdr_i"
    breakdown_label: str = "SDRi"
    summary_note: str = ""
    dnsmos: Table | None = None
    """DNSMOS input → output per system (None when no system has DNSMOS scores)."""
    emotion_tags: Table | None = None
    """Distribution of the emotion tags per system (None when no system was tagged)."""
    reference_io: Table | None = None
    """PESQ, STOI, SI-SDR input → output per system (None without reference metrics)."""
    files: Table | None = None
    """Per-file results, worst first (:func:`~batchsep.reporting.files.files_table`)."""
    files_note: str = ""
    provenance_note: str = ""


def end_to_end_speed(job: Mapping[str, Any] | None) -> float:
    """Audio seconds / wall seconds of the last enhance run recorded in ``job`` (job.json); NaN if none."""
    last = ((job or {}).get("stages", {}).get("enhance") or {}).get("last_run") or {}
    wall, audio = last.get("wall_s"), last.get("audio_s")
    return float(audio) / float(wall) if wall and audio else float("nan")


def system_table(
    runs: Sequence[tuple[str, pd.DataFrame, Mapping[str, Any] | None]],
) -> pd.DataFrame:
    """Concatenate the runs' rows with a ``system`` column: the run name, or ``run / model``."""
    frames = []
    for name, df, _ in runs:
        part = df.copy()
        models = part["model"].dropna().astype(str).unique() if "model" in part else []
        if len(models) > 1:
            part[GROUP] = [f"{name} / {m}" for m in part["model"].astype(str)]
        else:
            part[GROUP] = name
        part["run"] = name
        frames.append(part)
    return pd.concat(frames, ignore_index=True, sort=False)


def summary_columns(summary: pd.DataFrame, systems: list[str]) -> tuple[list[tuple], str]:
    """The summary columns to show, and a note naming the groups left out: the reference metrics
    when no system has any (a report of runs evaluated without references), DNSMOS when no
    system has it."""

    def has(cols: frozenset[str]) -> bool:
        values = summary.loc[systems, [c for c in cols if c in summary]].to_numpy(float)
        return bool(np.isfinite(values).any())

    drop: set[str] = set()
    notes = []
    if not has(REFERENCE_SUMMARY):
        drop |= REFERENCE_SUMMARY
        notes.append(
            "SDRi, SI-SDRi, PESQ and STOI are left out: no run was scored against clean references."
        )
    if not has(DNSMOS_SUMMARY):
        drop |= DNSMOS_SUMMARY
    return [c for c in SUMMARY_COLUMNS if c[1] not in drop], " ".join(notes)


def _summary_table(summary: pd.DataFrame, systems: list[str], tagged: set[str]) -> Table:
    columns, _ = summary_columns(summary, systems)
    headers = ["System"] + [c[0] for c in columns]
    rows, best, na = [], [], []
    for s in systems:
        row, flags, nas = [s], [False], [False]
        for _, col, dec, suf in columns:
            v = summary.loc[s, col]
            values = summary.loc[systems, col].astype(float)
            n_valid = int(np.isfinite(values.to_numpy(float)).sum())
            # best as shown: values equal to the shown decimals are ties (float noise is not a win)
            is_best = (
                col != "n_files" and n_valid > 1 and np.isfinite(v)
                and round(float(v), dec) == round(float(values.max()), dec)
            )  # fmt: skip
            text = fmt(v, dec, suf)
            if col == "x_real_time" and s in tagged:
                text += TAGGED_MARK
            row.append(text)
            flags.append(bool(is_best))
            nas.append(not np.isfinite(float(v)))
        rows.append(row)
        best.append(flags)
        na.append(nas)
    return Table(headers, rows, best, na)


def _pivot(stats: pd.DataFrame, key: str, systems: list[str], order: list[str]) -> Table:
    headers = [key, *systems]
    rows, na = [], []
    for k in order:
        row, nas = [k], [False]
        for s in systems:
            hit = stats[(stats[GROUP] == s) & (stats[key].astype(str) == k)]
            if hit.empty:
                row.append(NA)
                nas.append(True)
            else:
                r = hit.iloc[0]
                row.append(f"{fmt(r['mean'])} (n={int(r['n'])})")
                nas.append(False)
        rows.append(row)
        na.append(nas)
    return Table(headers, rows, [], na)


def _spread_table(spread: pd.DataFrame, systems: list[str]) -> Table:
    headers = [
        "System",
        "Speakers",
        "Mean of speaker means",
        "Std",
        "Worst speaker",
        "Best speaker",
    ]
    rows = []
    for s in systems:
        if s not in spread.index:
            continue
        r = spread.loc[s]
        rows.append(
            [
                s,
                fmt(r["n_speakers"], 0),
                fmt(r["mean"], 2, " dB"),
                fmt(r["std"], 2, " dB"),
                f"{r['worst_speaker']} ({fmt(r['min'], 2, ' dB')})",
                f"{r['best_speaker']} ({fmt(r['max'], 2, ' dB')})",
            ]
        )
    return Table(headers, rows)


def flatten(obj: Any, prefix: str = "", *, max_len: int = 240) -> list[tuple[str, str]]:
    """Nested mappings → ``[("a.b.c", "value"), ...]``; lists as compact JSON; long values cut."""
    if isinstance(obj, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in obj.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k), max_len=max_len)
        if not obj and prefix:
            out.append((prefix, "{}"))
        return out
    if isinstance(obj, list | tuple):
        text = json.dumps(obj, default=str, separators=(", ", ": "))
    else:
        text = str(obj)
    if len(text) > max_len:
        text = text[: max_len - 1] + "…"
    return [(prefix or "value", text)]


def breakdown_metric(table: pd.DataFrame, systems: list[str]) -> tuple[str, str]:
    """The column the breakdowns show, and its label: SDRi for the systems that have it, else
    SI-SDRi (a mixed report gets the column :data:`MIXED_METRIC`, added to ``table``)."""
    with_sdr = [s for s in systems if _finite_any(table[table[GROUP] == s], "sdr_i")]
    si_only = [
        s
        for s in systems
        if s not in with_sdr and _finite_any(table[table[GROUP] == s], "si_sdr_i")
    ]
    if not si_only:
        return "sdr_i", "SDRi"
    if not with_sdr:
        return "si_sdr_i", "SI-SDRi"
    use_si = table[GROUP].isin(si_only)
    table[MIXED_METRIC] = np.where(
        use_si,
        pd.to_numeric(table["si_sdr_i"], errors="coerce"),
        pd.to_numeric(table["sdr_i"], errors="coerce"),
    )
    return MIXED_METRIC, f"SDRi (SI-SDRi for {', '.join(si_only)}: no SDRi)"


def scored_rows(table: pd.DataFrame) -> pd.Series:
    """True for rows with at least one metric value (rows of files evaluate could not score have
    none: no clean reference, unreadable ...)."""
    from batchsep.evaluation.metrics import metric_columns

    columns = [
        c
        for c in dict.fromkeys([*metric_columns(), *SUMMARY_METRICS])
        if c in table and c != "input_snr" and not c.endswith("_error")
    ]
    if not columns:
        return pd.Series(False, index=table.index)
    values = table[columns].apply(pd.to_numeric, errors="coerce")
    return values.notna().any(axis=1)


def build_content(
    runs: Sequence[tuple[str, pd.DataFrame, Mapping[str, Any] | None]],
    links: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[ReportContent, pd.DataFrame]:
    """Aggregate the runs into formatted tables; also return the combined per-file table.

    ``links``: rel_path → (page anchor, label) of the files that have a listening example.
    """
    table = system_table(runs)
    systems = list(dict.fromkeys(table[GROUP].astype(str)))
    summary = summarize(table, by=GROUP, metrics=(*SUMMARY_METRICS, "dnsmos_ovrl", "dnsmos_ovrl_i"))
    jobs = {name: job for name, _, job in runs}
    run_of = table.groupby(GROUP)["run"].first()
    summary["e2e_x_real_time"] = [end_to_end_speed(jobs.get(run_of[s])) for s in summary.index]
    tagged = {
        s
        for s in systems
        if "emotion_pred" in table and table.loc[table[GROUP] == s, "emotion_pred"].notna().any()
    }
    tiles = []
    shown, left_out_note = summary_columns(summary, systems)
    metrics_note = METRICS_NOTE if any(c[1] in REFERENCE_SUMMARY for c in shown) else ""
    for s in systems:
        r = summary.loc[s]
        speed = f"{fmt(r['x_real_time'], 1, '×')} real time per worker"
        if not np.isfinite(r["sdr_i_mean"]) and np.isfinite(r["dnsmos_ovrl_mean"]):
            change = (
                f"{r['dnsmos_ovrl_i_mean']:+.2f}" if np.isfinite(r["dnsmos_ovrl_i_mean"]) else NA
            )
            tiles.append(
                {
                    "name": s,
                    "big": fmt(r["dnsmos_ovrl_mean"], 2),
                    "unit": "DNSMOS OVRL",
                    "sub": f"{fmt(r['n_files'], 0)} files · {change} over the input · {speed}",
                }
            )
            continue
        tiles.append(
            {
                "name": s,
                "big": fmt(r["sdr_i_mean"], 2),
                "unit": "dB SDRi",
                "sub": f"{fmt(r['n_files'], 0)} files · PESQ {fmt(r['pesq_mean'])} · "
                f"STOI {fmt(r['stoi_mean'], 3)} · {speed}",
            }
        )
    metric, label = breakdown_metric(table, systems)
    snr = noise = speakers = None
    if {"input_snr", metric} <= set(table.columns):
        stats = by_snr_bin(table, metric=metric, by=GROUP)
        if not stats.empty:
            order = [b for b in stats["snr_bin"].cat.categories if b in set(stats["snr_bin"])]
            snr = _pivot(stats.astype({"snr_bin": str}), "snr_bin", systems, order)
            snr.headers[0] = "Input SNR"
    if {"noise_class", metric} <= set(table.columns):
        stats = by_noise_class(table, metric=metric, by=GROUP)
        if not stats.empty:
            order = sorted(stats["noise_class"].astype(str).unique())
            noise = _pivot(stats, "noise_class", systems, order)
            noise.headers[0] = "Noise class"
    if {"speaker", metric} <= set(table.columns):
        spread = speaker_spread(table, metric=metric, by=GROUP)
        if not spread.empty:
            speakers = _spread_table(spread, systems)
    provenance = [(name, flatten(dict(job)) if job else []) for name, _, job in runs]
    files, files_note = files_table(table, systems, links)
    content = ReportContent(
        systems=systems,
        n_files=len(table),
        summary=_summary_table(summary, systems, tagged),
        tiles=tiles,
        snr=snr,
        noise=noise,
        speakers=speakers,
        provenance=provenance,
        n_scored=int(scored_rows(table).sum()),
        breakdown_metric=metric,
        breakdown_label=label,
        summary_note=" ".join(
            n
            for n in (
                metrics_note,
                left_out_note,
                SPEED_NOTE,
                TAGGED_NOTE if tagged else "",
            )
            if n
        ),
        dnsmos=dnsmos_table(table, systems),
        emotion_tags=emotion_tag_table(table, systems),
        reference_io=reference_table(table, systems),
        files=files,
        files_note=files_note,
    )
    return content, table
