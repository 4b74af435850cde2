"""Render a comparison report (Markdown + self-contained HTML + PNGs) as bytes. No paths.

The caller (the ``report`` stage) reads the runs' metric tables and job records and writes the
returned ``{file name: bytes}`` wherever it likes; this module only encodes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from batchsep._version import __version__
from batchsep.dsp.validate import check_positive, check_sample_rate, validate_audio
from batchsep.errors import ParameterError
from batchsep.evaluation.aggregate import by_noise_class, by_snr_bin, per_speaker
from batchsep.evaluation.emotion import EMOTIONS, confusion_matrix, emotion_summary
from batchsep.reporting import plots
from batchsep.reporting.content import (
    GROUP,
    EmotionView,
    ExampleView,
    FigureView,
    Table,
    build_content,
    fmt,
)
from batchsep.reporting.html import render_html
from batchsep.reporting.markdown import render_markdown

Run = tuple[str, pd.DataFrame, Mapping[str, Any] | None]


def encode_wav(x: np.ndarray, sr: int) -> bytes:
    """16-bit PCM WAV bytes of a mono signal in [-1, 1] (values beyond are clipped).

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,)]
    sr : int
    """
    buf = io.BytesIO()
    sf.write(
        buf, np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0), sr, format="WAV", subtype="PCM_16"
    )
    return buf.getvalue()


def _check_runs(runs: Sequence[Run]) -> list[Run]:
    if isinstance(runs, str | bytes) or not isinstance(runs, Sequence) or len(runs) == 0:
        raise ParameterError("runs must be a non-empty list of (name, metrics DataFrame, job dict)")
    seen: set[str] = set()
    out = []
    for i, run in enumerate(runs):
        if not isinstance(run, tuple | list) or len(run) != 3:
            raise ParameterError(f"runs[{i}] must be a (name, DataFrame, job dict) triple")
        name, df, job = run
        if not isinstance(name, str) or not name.strip():
            raise ParameterError(f"runs[{i}] name={name!r} must be a non-empty string")
        if name in seen:
            raise ParameterError(f"run name {name!r} appears twice; names must be unique")
        seen.add(name)
        if not isinstance(df, pd.DataFrame):
            raise ParameterError(f"runs[{i}] ({name}) metrics must be a pandas DataFrame")
        if job is not None and not isinstance(job, Mapping):
            raise ParameterError(f"runs[{i}] ({name}) job must be a dict or None")
        out.append((name, df, job))
    return out


@dataclass
class _Example:
    title: str
    sr: int
    signals: list[tuple[str, np.ndarray]]
    note: str
    why: str = ""
    rel_path: str = ""


def _prepare_example(i: int, ex: Any, max_seconds: float) -> _Example:
    """Validate one example; crop it; scale it (one gain for all signals) if it would clip."""
    if not isinstance(ex, Mapping):
        raise ParameterError(f"examples[{i}] must be a dict with noisy, enhanced, clean, sr")
    missing = [k for k in ("noisy", "enhanced", "sr") if k not in ex]
    if missing:
        raise ParameterError(f"examples[{i}] lacks keys {missing}")
    sr = check_sample_rate(ex["sr"], f"examples[{i}].sr")
    n_max = int(max_seconds * sr)
    named: list[tuple[str, str, Any]] = [
        (str(ex.get("noisy_label") or "noisy"), "noisy", ex["noisy"])
    ]
    enhanced = ex["enhanced"]
    if isinstance(enhanced, Mapping):
        if not enhanced:
            raise ParameterError(f"examples[{i}].enhanced is an empty mapping")
        named += [
            (enhanced_label(str(label)), f"enhanced[{label!r}]", x) for label, x in enhanced.items()
        ]
    else:
        named.append(("enhanced", "enhanced", enhanced))
    if ex.get("clean") is not None:
        named.append(("clean", "clean", ex["clean"]))
    signals, longest = [], 0
    for label, key, value in named:
        x = validate_audio(value, name=f"examples[{i}].{key}", max_ndim=1)
        longest = max(longest, x.shape[-1])
        signals.append((label, np.asarray(x, dtype=np.float64)[:n_max]))
    peak = max(float(np.max(np.abs(x))) for _, x in signals)
    gain = 0.99 / peak if peak > 0.99 else 1.0  # keeps the relative levels
    note = f"First {max_seconds:g} s of {longest / sr:.1f} s shown." if longest > n_max else ""
    if gain != 1.0:
        note = (note + " " if note else "") + f"Scaled by {gain:.2f} to avoid clipping."
    title = str(ex.get("title") or f"Example {i + 1}")
    why, rel = str(ex.get("why") or ""), str(ex.get("rel_path") or "")
    return _Example(title, sr, [(k, x * gain) for k, x in signals], note, why, rel)


def enhanced_label(label: str) -> str:
    """A system's player label: ``enhanced · <label>``, but a label that already says ``enhanced``
    (a run folder called so) is not repeated (``enhanced · enhanced``)."""
    if label == "enhanced" or label.startswith(("enhanced ", "enhanced·", "enhanced (")):
        return label
    return f"enhanced · {label}"


def example_anchor(i: int) -> str:
    """The page anchor of example ``i`` (0-based): ``example-1``."""
    return f"example-{i + 1}"


def _example_views(examples: list[_Example]) -> tuple[list[ExampleView], dict[str, bytes]]:
    views, pngs = [], {}
    for i, ex in enumerate(examples):
        name = f"spectrograms_{i}.png"
        pngs[name] = plots.plot_spectrograms(ex.signals, ex.sr)
        audio = [(k, encode_wav(x, ex.sr)) for k, x in ex.signals]
        views.append(ExampleView(ex.title, name, audio, ex.note, example_anchor(i), ex.why))
    return views, pngs


DNSMOS_PNG = "dnsmos.png"
DNSMOS_CAPTION = (
    "DNSMOS SIG, BAK, OVRL and P.808 per system: unprocessed input (light) and enhanced output "
    "(solid), mean over the files rated."
)

# (PNG name, caption, column it breaks down by, what that column is, label when left out, plot, stats)
_BREAKDOWN_FIGURES: tuple[tuple[str, str, str, str, str, Any, Any], ...] = (
    ("sdri_vs_snr.png", "{metric} per input-SNR bin (mean ± std; no bar where n < 2).",
     "input_snr", "input SNR", "{metric} by input SNR", plots.plot_metric_vs_snr, by_snr_bin),
    ("sdri_by_noise.png", "{metric} per noise class (mean ± std; no bar where n < 2).",
     "noise_class", "noise class", "{metric} by noise class", plots.plot_metric_by_noise,
     by_noise_class),
    ("per_speaker.png", "Per-speaker mean {metric}: one dot per speaker.", "speaker",
     "speaker", "per-speaker spread", plots.plot_per_speaker, per_speaker),
)  # fmt: skip


def _no_data_reason(
    table: pd.DataFrame, key: str, what: str, stats: Any, metric: str
) -> str | None:
    """Why a breakdown of ``metric`` by ``key`` has nothing to show (None when it has data)."""
    values = pd.to_numeric(table[metric], errors="coerce") if metric in table else None
    if values is None or not np.isfinite(values.to_numpy(float)).any():
        return "no SDR or SI-SDR improvement (sdr_i, si_sdr_i) for these files"
    if key not in table or table[key].isna().all():
        return f"no {what} known for these files"
    if stats(table, metric=metric, by=GROUP).empty:
        return f"no file has both an improvement value and a known {what}"
    return None


def _breakdown_figures(
    table: pd.DataFrame, systems: list[str], metric: str, label: str
) -> tuple[list[FigureView], dict[str, bytes], str]:
    """The breakdown figures that have data, their PNGs, and one line naming those left out."""
    figures, pngs, left_out = [], {}, []
    for name, caption, key, what, left_label, plot, stats in _BREAKDOWN_FIGURES:
        reason = _no_data_reason(table, key, what, stats, metric)
        if reason is not None:
            left_out.append(f"{left_label.format(metric=label)} ({reason})")
            continue
        pngs[name] = plot(table, metric=metric, group=GROUP, systems=systems)
        figures.append(FigureView(name, caption.format(metric=label)))
    note = f"Figures left out: {'; '.join(left_out)}." if left_out else ""
    return figures, pngs, note


def _emotion_view(
    emotion: Any, *, image: str = "confusion.png", system: str = ""
) -> tuple[EmotionView, np.ndarray, list[str]]:
    """Validate and score the emotion labels; the figure is drawn later."""
    if not isinstance(emotion, tuple | list) or len(emotion) not in (3, 4):
        raise ParameterError("emotion must be (y_true, y_pred, labels) or (..., speakers)")
    y_true, y_pred, labels = emotion[:3]
    speakers = emotion[3] if len(emotion) == 4 else None
    labels = list(labels) if labels is not None else list(EMOTIONS)
    summary = emotion_summary(y_true, y_pred, labels=labels, speakers=speakers)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    tiles = [
        ("Accuracy", fmt(100 * summary["accuracy"], 1, " %")),
        ("UAR", fmt(100 * summary["uar"], 1, " %")),
        ("Macro-F1", fmt(summary["macro_f1"], 3)),
        ("Items", fmt(summary["n"], 0)),
    ]
    if speakers is not None:
        lo = fmt(100 * summary["speaker_acc_min"], 0)
        hi = fmt(100 * summary["speaker_acc_max"], 0, " %")
        tiles.append(("Speaker accuracy range", f"{lo}–{hi}"))
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    rows = [
        [
            lab,
            str(int(support[k])),
            fmt(100 * cm[k, k] / support[k], 1, " %") if support[k] else "–",
            str(int(predicted[k])),
        ]
        for k, lab in enumerate(labels)
    ]
    table = Table(["Emotion", "Support", "Recall", "Predicted"], rows)
    return EmotionView(tiles, image, table, system), cm, labels


def _emotion_views(
    emotion: Any,
) -> tuple[list[tuple[EmotionView, np.ndarray, list[str]]], Table | None]:
    """One view per system (``emotion`` a mapping system → labels) or one unlabelled view; with
    several systems also a side-by-side table of their headline numbers."""
    if not isinstance(emotion, Mapping):
        return [_emotion_view(emotion)], None
    if not emotion:
        raise ParameterError("emotion must not be an empty mapping")
    views = []
    for i, (system, labels) in enumerate(emotion.items()):
        image = "confusion.png" if len(emotion) == 1 else f"confusion_{i}.png"
        views.append(_emotion_view(labels, image=image, system=str(system)))
    headers = ["System"] + [k for k, _ in views[0][0].tiles]
    rows = [[v.system] + [dict(v.tiles).get(h, "–") for h in headers[1:]] for v, _, _ in views]
    return views, Table(headers, rows)


def render_report(
    runs: Sequence[Run],
    examples: Sequence[Mapping[str, Any]] = (),
    emotion: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None,
    *,
    title: str = "batchsep evaluation report",
    generated_at: str | None = None,
    max_example_seconds: float = 10.0,
    provenance_note: str = "",
) -> dict[str, bytes]:
    """Render the comparison of several runs as files, returned as bytes.

    Parameters
    ----------
    runs : list of (name, metrics, job)
        ``name``: unique label; ``metrics``: per-file rows (columns such as ``model``, ``sdr_i``,
        ``si_sdr_i``, ``pesq``, ``stoi``, ``input_snr``, ``noise_class``, ``speaker``,
        ``duration_s``, ``seconds``; missing ones give "–" or leave a figure out); ``job``: the
        run's job record (spec, versions, git revision ...) or None. A run whose table has several
        ``model`` values is shown as one system per model (``"name / model"``).
    examples : list of dict
        ``noisy``, ``enhanced`` (np.ndarray [shape=(n_samples,)], or a dict of system label to
        array: one labelled panel and player per system), optional ``clean``, ``sr`` (int),
        optional ``title``, optional ``noisy_label`` (the input's player label, default "noisy"),
        optional ``why`` (why it was chosen, shown under the title) and optional
        ``rel_path`` (the file's rows in the per-file table link to the example). Shown as
        spectrograms and audio players.
    emotion : (y_true, y_pred, labels) or (y_true, y_pred, labels, speakers), optional
        Emotion labels (see :mod:`batchsep.evaluation.emotion`); ``labels`` None = RAVDESS 8.
        A dict of system name to such a tuple gives one labelled block (and confusion matrix,
        ``confusion_<i>.png`` when there are several) per system, plus a side-by-side table.
    title : str
        Page title.
    generated_at : str, optional
        Timestamp shown in the header (default: now, UTC).
    provenance_note : str
        A line under the provenance tables (how paths are shown).
    max_example_seconds : float
        Examples are cut to this many seconds.

    Returns
    -------
    dict of str to bytes
        ``"report.md"``, ``"index.html"`` (self-contained: inline CSS, images and audio as
        base64 data URIs, no external URL), ``"sdri_vs_snr.png"``, ``"sdri_by_noise.png"``,
        ``"per_speaker.png"``, ``"dnsmos.png"`` (each only when it has data: a figure without any valid ``sdr_i``
        with a known input SNR / noise class / speaker is left out, and both pages say in one
        line which and why), ``"confusion.png"`` (with ``emotion``), ``"spectrograms_<i>.png"``.

    Raises
    ------
    ParameterError
        On malformed runs, examples or emotion input.
    """
    checked = _check_runs(runs)
    check_positive("max_example_seconds", max_example_seconds)
    # validate everything before drawing anything
    prepared = [_prepare_example(i, ex, max_example_seconds) for i, ex in enumerate(examples)]
    emotion_views: list[tuple[EmotionView, np.ndarray, list[str]]] = []
    emotion_table = None
    if emotion is not None:
        emotion_views, emotion_table = _emotion_views(emotion)
    links = {
        ex.rel_path: (example_anchor(i), f"example {i + 1}")
        for i, ex in enumerate(prepared)
        if ex.rel_path
    }
    content, table = build_content(checked, links)
    content.provenance_note = provenance_note
    systems = content.systems
    colors = {s: plots.color_of(i) for i, s in enumerate(systems)}
    figures, pngs, figures_note = _breakdown_figures(
        table, systems, content.breakdown_metric, content.breakdown_label
    )
    left_out = [figures_note[len("Figures left out: ") : -1]] if figures_note else []
    if content.dnsmos is not None:
        pngs[DNSMOS_PNG] = plots.plot_dnsmos(table, group=GROUP, systems=systems)
        figures.append(FigureView(DNSMOS_PNG, DNSMOS_CAPTION))
    else:
        left_out.append("DNSMOS input → output (no DNSMOS scores: evaluate with dnsmos)")
    if not emotion_views:
        left_out.append(
            "emotion confusion matrix (no file has both a true and a predicted emotion)"
        )
    figures_note = f"Figures left out: {'; '.join(left_out)}." if left_out else ""
    example_views, example_pngs = _example_views(prepared)
    pngs.update(example_pngs)
    for view, cm, labels in emotion_views:
        title_cm = f"{view.system}: emotion confusion matrix" if view.system else ""
        pngs[view.image] = plots.plot_confusion(cm, labels, title=title_cm)
    when = generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    not_scored = content.n_files - content.n_scored
    meta = f"Generated {when} · {len(systems)} system(s) · {content.n_scored} scored files"
    if not_scored:
        meta += f" · {not_scored} of {content.n_files} files not scored (no metric value)"
    views = [v for v, _, _ in emotion_views]
    footer = f"batchsep {__version__} · self-contained report: works offline, nothing is fetched."
    html = render_html(
        title=title,
        meta=meta,
        footer=footer,
        content=content,
        colors=colors,
        figures=figures,
        pngs=pngs,
        examples=example_views,
        emotion=views,
        emotion_table=emotion_table,
        figures_note=figures_note,
    )
    md = render_markdown(
        title=title,
        meta=meta,
        footer=footer,
        content=content,
        figures=figures,
        examples=example_views,
        emotion=views,
        emotion_table=emotion_table,
        figures_note=figures_note,
    )
    return {"report.md": md.encode("utf-8"), "index.html": html.encode("utf-8"), **pngs}
