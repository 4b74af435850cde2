"""The evaluate stage: score an enhance run against clean references and with DNSMOS, shard by shard.

References come from a mixtures run (``batchsep prepare``'s ``mixtures.parquet``: each enhanced input is a
stored noisy mixture; breakdown fields speaker, noise class, SNR and split come along), from a folder of clean
files with the enhanced inputs' relative paths (``voicebank_demand/clean`` for ``voicebank_demand/noisy``),
or from a pairs root: ``clean/`` beside ``noisy/`` (VoiceBank-DEMAND's layout; :func:`pairs_clean_folder`),
at any sample rate. Emotion labels are parsed from RAVDESS file names when the run was tagged. Per file: BSS
Eval SDR/SIR/SAR, SI-SDR, PESQ, STOI for the output and the unprocessed input, improvements, and a reason
next to every NaN.

DNSMOS (P.835 SIG/BAK/OVRL and P.808, :mod:`batchsep.evaluation.dnsmos`) needs no reference: an enhance run
without references (none given, no prepare run above its inputs) is scored with DNSMOS only
(:func:`resolve_metrics` says when). The input's DNSMOS is computed once per input: rows of several models of
one input share it, and a later evaluate reuses it from the metrics rows while the input is unchanged (its
size and modification time as enhance listed them).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import soundfile as sf

from batchsep.corpus.ravdess import parse_ravdess_name
from batchsep.dsp.resample import to_rate_mono
from batchsep.errors import BatchsepError, ParameterError, StorageError
from batchsep.evaluation.dnsmos import (
    DNSMOS_METRIC,
    INSTALL_HINT,
    dnsmos_available,
    dnsmos_pair,
    dnsmos_provenance,
    require_dnsmos,
)
from batchsep.evaluation.emotion import emotion_summary
from batchsep.evaluation.metrics import SCORE_METRICS, metric_columns, score_file
from batchsep.io import parquet, schemas, storage
from batchsep.pipeline.common import jobinfo
from batchsep.pipeline.enhance.outfolder import RESULTS_DIR, committed_rows
from batchsep.pipeline.evaluate.refs import (
    InputScores,
    clean_candidates,
    earlier_input_scores,
    find_mixtures_run,
    input_key,
    mixture_references,
    pairs_clean_folder,
    row_input_scores,
)
from batchsep.pipeline.prepare import run as prepare_run
from batchsep.pipeline.runner import Runner, SerialRunner, shards

METRICS_DIR = "metrics"
EVAL_SR = 16000  # wide-band PESQ/STOI rate; 8 kHz references are scored at 8 kHz (narrow-band)


@dataclass(frozen=True)
class EvalItem:
    """One file to score: the enhance row's essentials plus its clean reference and breakdown fields."""

    rel_path: str
    noisy_uri: str
    enhanced_uri: str | None
    clean_uri: str | None
    fields: tuple[tuple[str, Any], ...]
    input_scores: InputScores | None = None
    """The input's DNSMOS scores when already known (``(("sig", x), ...)``): not computed again."""


def _read(uri: str) -> tuple[np.ndarray, int]:
    data, sr = sf.read(io.BytesIO(storage.read_bytes(uri)), dtype="float32", always_2d=True)
    return data.T, sr


def score_item(item: EvalItem, metrics: tuple[str, ...]) -> dict[str, Any]:
    """Score one file; unreadable audio gives NaN metrics with ``error`` (never raises).

    The reference metrics (``sdr``, ``si_sdr``, ``pesq``, ``stoi``) need the clean reference; ``dnsmos``
    rates the enhanced output and the unprocessed input on their own (each at its own rate, resampled
    to 16 kHz), so a file without a reference still gets its DNSMOS columns.
    """
    row: dict[str, Any] = {
        "rel_path": item.rel_path,
        "noisy_uri": item.noisy_uri,
        "enhanced_uri": item.enhanced_uri,
        "clean_uri": item.clean_uri,
        **dict(item.fields),
    }
    if item.enhanced_uri is None:
        row["error"] = "no enhanced audio (tag run: emotions only)"
        return row
    with_reference = [m for m in metrics if m != DNSMOS_METRIC]
    if DNSMOS_METRIC not in metrics and item.clean_uri is None:
        row["error"] = "no clean reference"
        return row
    try:
        noisy, sr_n = _read(item.noisy_uri)
        enhanced, sr_e = _read(item.enhanced_uri)
        clean, sr_c = _read(item.clean_uri) if item.clean_uri else (None, 0)
    except (StorageError, sf.LibsndfileError, RuntimeError) as exc:
        row["error"] = f"cannot read audio: {exc}"
        return row
    if DNSMOS_METRIC in metrics:
        known = dict(item.input_scores) if item.input_scores is not None else None
        row.update(dnsmos_pair(noisy, enhanced, sr_n, sr_e, noisy_scores=known))
        if not with_reference:
            return row
    if clean is None:
        row["error"] = "no clean reference"
        return row
    if clean.shape[0] > 1 and enhanced.shape[0] == 1:  # a mic array's clean images:
        ref = dict(item.fields).get("ref_channel")  # the channel a beamformed output is of
        ch = min(int(ref or 0), clean.shape[0] - 1)
        clean, noisy = clean[ch : ch + 1], noisy[min(ch, noisy.shape[0] - 1)][None]
    sr = 8000 if sr_c <= 8000 else EVAL_SR
    c, n, e = (to_rate_mono(x, s, sr) for x, s in ((clean, sr_c), (noisy, sr_n), (enhanced, sr_e)))
    length = min(len(c), len(n), len(e))
    if max(len(c), len(n), len(e)) - length > sr // 100:  # more than 10 ms apart: not a pair
        row["error"] = (
            f"lengths differ: clean {len(c)}, noisy {len(n)}, enhanced {len(e)} at {sr} Hz"
        )
        return row
    row.update(score_file(c[:length], n[:length], e[:length], sr, metrics=with_reference))
    row["eval_sr"] = sr
    return row


def score_shard(args: tuple[list[EvalItem], tuple[str, ...]]) -> list[dict[str, Any]]:
    """Score a shard's items; an input met again (another model's output of it) reuses its DNSMOS."""
    items, metrics = args
    known: dict[str, InputScores] = {}
    rows = []
    for it in items:
        if it.input_scores is None and it.noisy_uri in known:
            it = replace(it, input_scores=known[it.noisy_uri])
        row = score_item(it, metrics)
        scores = row_input_scores(row)
        if scores is not None:
            known.setdefault(it.noisy_uri, scores)
        rows.append(row)
    return rows


def _emotion_truth(rel_path: str) -> dict[str, Any]:
    try:
        info = parse_ravdess_name(os.path.basename(rel_path))
    except (ParameterError, ValueError):
        return {}
    return {"emotion_true": info.emotion, "speaker": f"actor{info.actor:02d}"}


def build_items(run_uri: str, references: str | None) -> list[EvalItem]:
    """Pair every committed enhance row of ``run_uri`` with its reference (or None).

    ``references``: a mixtures run, a pairs root (:func:`pairs_clean_folder`) or a folder of clean
    files with the inputs' relative paths.
    """
    rows = committed_rows(run_uri)
    if not rows:
        raise StorageError(
            f"{run_uri} has no {RESULTS_DIR}/part-*.parquet: run batchsep enhance first"
        )
    mixtures: dict[str, dict[str, Any]] = {}
    clean_root = None
    pairs = False
    if references is not None:
        is_mixtures = references.endswith(".parquet") or storage.exists(
            storage.join(references, prepare_run.MIXTURES_NAME))  # fmt: skip
        if is_mixtures:
            mixtures = mixture_references(references)
        elif storage.exists(references):
            clean_root = pairs_clean_folder(references)
            pairs = clean_root is not None
            clean_root = clean_root or references
        else:
            raise StorageError(f"references {references}: no such folder or mixtures run")
    items = []
    for r in sorted(rows, key=lambda r: r["rel_path"]):
        if r["status"] != schemas.STATUS_OK:
            continue
        fields: dict[str, Any] = {
            "model": r.get("model_name"),
            "duration_s": r.get("duration_s"),
            "seconds": r.get("t_total_s"),
            "emotion_pred": r.get("emotion_label"),
            "input_size": r.get("input_size"),
            "input_mtime_ns": r.get("input_mtime_ns"),
            "ref_channel": r.get("ref_channel"),
        }
        fields.update(_emotion_truth(r["rel_path"]))
        clean = None
        if mixtures:
            ref = mixtures.get(storage.normalize(r["input_uri"]))
            if ref:
                clean = ref["clean_uri"]
                fields.update({k: v for k, v in ref.items() if k != "clean_uri"})
        elif clean_root is not None:
            found = (
                c for c in clean_candidates(clean_root, r["rel_path"], pairs) if storage.exists(c)
            )
            clean = next(found, None)
        items.append(
            EvalItem(
                r["rel_path"],
                r["input_uri"],
                r.get("output_uri"),
                clean,
                tuple(sorted(fields.items())),
            )
        )
    return items


def check_references(
    items: Sequence[EvalItem], run_uri: str, references: str | None, metrics: Sequence[str]
) -> None:
    """Raise ParameterError when metrics are asked for enhanced files but none has a reference.

    Without ``references`` no file can ever get one (evaluate does not guess them); with a
    references folder or mixtures run that matches none of the files, it was the wrong one.
    Either way nothing would be scored, so it is the caller's mistake, said before any work.
    Runs without enhanced audio (tag runs) and runs whose files carry true and predicted
    emotions (RAVDESS names) are still worth evaluating without references.
    """
    enhanced = [it for it in items if it.enhanced_uri is not None]
    with_reference = [m for m in metrics if m != DNSMOS_METRIC]
    if not with_reference or not enhanced or any(it.clean_uri is not None for it in enhanced):
        return
    if any({"emotion_true", "emotion_pred"} <= {k for k, v in it.fields if v} for it in items):
        return
    fix = (
        "pass --references CLEAN_URI: a folder of clean files with the same relative paths as the "
        f"inputs (e.g. {enhanced[0].rel_path}), a pairs root (clean/ beside noisy/), or a prepare "
        "run (mixtures.parquet)"
    )
    if references is None:
        raise ParameterError(f"no clean references found for {run_uri}: {fix}")
    raise ParameterError(
        f"references {references}: no clean reference for any of the {len(enhanced)} enhanced "
        f"files of {run_uri}; {fix}"
    )


MEAN_KEYS = (
    "sdr_i", "si_sdr_i", "pesq_i", "stoi_i", "sdr", "si_sdr", "dnsmos_ovrl", "dnsmos_ovrl_i",
)  # fmt: skip
"""Metrics whose mean over the files that have them :class:`EvaluateSummary` keeps."""


@dataclass
class EvaluateSummary:
    """``files`` rows written, ``scored`` of them with metrics; ``files_failed`` enhanced files that
    could not be scored, with ``errors`` ``[(rel_path, reason), ...]``."""

    metrics_uri: str
    metrics: tuple[str, ...] = ()
    """The metric families scored (see :func:`resolve_metrics`)."""
    notes: list[str] = field(default_factory=list)
    """Lines for the user: why the metrics differ from the default (DNSMOS only, DNSMOS left out)."""
    files: int = 0
    scored: int = 0
    files_failed: int = 0
    means: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    references: str | None = None
    emotion: dict[str, float | int] | None = None
    """Accuracy, UAR, macro F1 of the files with a true emotion (RAVDESS names) and a tagged one."""


def resolve_metrics(
    items: Sequence[EvalItem],
    run_uri: str,
    references: str | None,
    metrics: Sequence[str] | None,
) -> tuple[tuple[str, ...], list[str]]:
    """The metric families to score, and notes saying why they differ from what was asked.

    - ``metrics`` None (the default): ``sdr, si_sdr, pesq, stoi`` plus ``dnsmos`` when it is installed
      (the ``zoo`` extra; a note says when it is left out).
    - No clean reference for any enhanced file and none given (no ``references``, no prepare run
      above the inputs): only ``dnsmos`` is scored, when it is in ``metrics`` or ``metrics`` is the
      default; a note says so. An explicit list without ``dnsmos`` still needs references
      (:func:`check_references` refuses it).

    Raises
    ------
    ParameterError
        When ``dnsmos`` is asked for, or needed (default metrics, no references), and not installed.
    """
    enhanced = any(it.enhanced_uri is not None for it in items)
    no_reference = (
        enhanced
        and references is None
        and not any(it.clean_uri is not None for it in items if it.enhanced_uri is not None)
    )
    notes: list[str] = []
    chosen: tuple[str, ...]
    if metrics is None:
        chosen = (
            (*SCORE_METRICS, DNSMOS_METRIC) if dnsmos_available() or no_reference else SCORE_METRICS
        )
        if enhanced and DNSMOS_METRIC not in chosen:
            notes.append(f"dnsmos left out: it is not installed ({INSTALL_HINT})")
    else:
        chosen = tuple(dict.fromkeys(metrics))
    if no_reference and DNSMOS_METRIC in chosen:
        try:
            require_dnsmos(f"{run_uri} has no clean references, so evaluate scores DNSMOS only; it")
        except ParameterError as exc:
            raise ParameterError(
                f"{exc}; or pass --references CLEAN_URI to score {', '.join(SCORE_METRICS)}"
            ) from None
        if chosen != (DNSMOS_METRIC,):
            notes.append(
                f"no clean references found for {run_uri}: scoring DNSMOS only (reference-free); "
                "pass --references CLEAN_URI for SDR, SI-SDR, PESQ and STOI"
            )
        return (DNSMOS_METRIC,), notes
    if enhanced and DNSMOS_METRIC in chosen:
        require_dnsmos("--metrics dnsmos")
    return chosen, notes


def _with_earlier(item: EvalItem, earlier: dict[tuple[str, int, int], InputScores]) -> EvalItem:
    fields = dict(item.fields)
    key = input_key(item.noisy_uri, fields.get("input_size"), fields.get("input_mtime_ns"))
    scores = earlier.get(key) if key is not None else None
    return replace(item, input_scores=scores) if scores is not None else item


def evaluate(
    run_uri: str,
    *,
    references: str | None = None,
    metrics: Sequence[str] | None = None,
    runner: Runner | None = None,
    shard_size: int = 16,
) -> EvaluateSummary:
    """Score the enhance run ``run_uri`` into ``run_uri/metrics/part-*.parquet`` (replacing old parts).

    ``references``: a prepare run (``mixtures.parquet``) or a folder of clean files with the inputs' relative
    paths; by default the prepare run the enhanced inputs came from, when there is one
    (:func:`find_mixtures_run`; ``EvaluateSummary.references`` says which was used).
    ``metrics``: families from :data:`~batchsep.evaluation.metrics.METRIC_FAMILIES`; None = the
    reference metrics plus DNSMOS when installed, and DNSMOS only for a run without references
    (:func:`resolve_metrics`; ``EvaluateSummary.metrics`` and ``notes`` say what was scored).
    """
    runner = runner or SerialRunner()
    if references is None:
        references = find_mixtures_run(run_uri)
    items = build_items(run_uri, references)
    metrics, notes = resolve_metrics(items, run_uri, references, metrics)
    check_references(items, run_uri, references, metrics)
    metrics_uri = storage.join(run_uri, METRICS_DIR)
    if DNSMOS_METRIC in metrics:
        earlier = earlier_input_scores(metrics_uri)
        items = [_with_earlier(it, earlier) for it in items]
    for e in storage.list_files(metrics_uri) if storage.exists(metrics_uri) else []:
        storage.delete(e.uri)
    all_rows: list[dict[str, Any]] = []
    tasks = [(group, metrics) for group in shards(items, shard_size)]
    for i, rows in runner.map_unordered(score_shard, tasks):
        table = schemas.metrics_table(rows, metric_columns())
        parquet.write_table(parquet.part_uri(metrics_uri, i), table)
        all_rows.extend(rows)
    spec: dict[str, Any] = {
        "run_uri": storage.normalize(run_uri),
        "references": storage.normalize(references) if references else None,
        "metrics": list(metrics),
        **({"dnsmos": dnsmos_provenance()} if DNSMOS_METRIC in metrics else {}),
    }
    jobinfo.write_job_json(run_uri, "evaluate", spec)
    summary = EvaluateSummary(
        metrics_uri, metrics=metrics, notes=notes, files=len(all_rows), references=references,
        scored=sum(not r.get("error") for r in all_rows),
    )  # fmt: skip
    if metrics:  # a file with enhanced audio that got no score failed; a tag-run row did not
        summary.errors = sorted(
            (r["rel_path"], str(r["error"]))
            for r in all_rows
            if r.get("error") and r.get("enhanced_uri") is not None
        )
        summary.files_failed = len(summary.errors)
    for key in MEAN_KEYS:
        vals = [float(r[key]) for r in all_rows if r.get(key) is not None and np.isfinite(r[key])]
        if vals:
            summary.means[key] = float(np.mean(vals))
    tagged = [r for r in all_rows if r.get("emotion_true") and r.get("emotion_pred")]
    if tagged:
        summary.emotion = emotion_summary(
            [r["emotion_true"] for r in tagged], [r["emotion_pred"] for r in tagged]
        )
    if not all_rows:
        raise BatchsepError(f"{run_uri}: no successfully enhanced file to evaluate")
    return summary
