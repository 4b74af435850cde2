"""Where evaluate finds clean references (a prepare run, a pairs root, a folder of clean files) and the
input DNSMOS scores an earlier evaluation of the same inputs left in its metrics rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchsep.errors import StorageError
from batchsep.evaluation.dnsmos import DNSMOS_SCORES
from batchsep.io import parquet, storage
from batchsep.pipeline.common import jobinfo
from batchsep.pipeline.prepare import run as prepare_run

InputScores = tuple[tuple[str, float], ...]
"""An input's DNSMOS scores: ``(("sig", x), ("bak", x), ("ovrl", x), ("p808", x))``."""


def mixture_references(ref_uri: str) -> dict[str, dict[str, Any]]:
    """Reference fields by noisy URI: where the prepare run is now, and where it was written (an enhance
    run of the run's audio made before the run was copied or moved still finds its references)."""
    table = prepare_run.read_mixtures_table(ref_uri)
    moved = table.written_root not in (None, table.root)
    out: dict[str, dict[str, Any]] = {}
    for r in table.rows:
        if r.get("noisy_uri") and r.get("clean_uri"):
            keys = [storage.normalize(r["noisy_uri"])]
            if moved and keys[0].startswith(table.root + "/"):
                keys.append(f"{table.written_root}{keys[0][len(table.root) :]}")
            ref = {
                "clean_uri": r["clean_uri"], "speaker": r["speaker"], "noise_class": r["noise_class"],
                "split": r["split"], "mixture_snr": r["snr_db"], "mixture_id": r["mixture_id"],
            }  # fmt: skip
            out.update((key, ref) for key in keys)
    return out


MIXTURES_SEARCH_DEPTH = 4
"""Folders above an enhance run's input searched for the prepare run it came from (``mixtures/test/noisy``
lies three below its run)."""


def find_mixtures_run(run_uri: str) -> str | None:
    """The prepare run whose mixtures an enhance run enhanced: the nearest folder above its input (``job.json``)
    holding ``mixtures.parquet``, within ``MIXTURES_SEARCH_DEPTH`` levels; None when there is none."""
    spec = jobinfo.read_job_json(run_uri).get("stages", {}).get("enhance", {}).get("spec") or {}
    in_uri = spec.get("in_uri")
    if not in_uri:
        return None
    folder = storage.normalize(in_uri)
    if folder.lower().endswith(".parquet"):  # a scan manifest as input: the folder that scan listed
        scan = jobinfo.read_job_json(storage.parent(folder)).get("stages", {}).get("scan", {})
        listed = (scan.get("spec") or {}).get("in_uri")
        folder = storage.normalize(listed) if listed else storage.parent(folder)
    for _ in range(MIXTURES_SEARCH_DEPTH):
        if storage.exists(storage.join(folder, prepare_run.MIXTURES_NAME)):
            return folder
        parent = folder.rsplit("/", 1)[0]
        if parent in ("", folder) or parent in ("s3:", "s3:/"):
            return None
        folder = parent
    return None


PAIRS_CLEAN, PAIRS_NOISY = "clean", "noisy"


def pairs_clean_folder(references: str) -> str | None:
    """``references/clean`` when ``references`` is a pairs root (``clean/`` beside ``noisy/``), else None."""
    clean = storage.join(references, PAIRS_CLEAN)
    if storage.exists(clean) and storage.exists(storage.join(references, PAIRS_NOISY)):
        return clean
    return None


def clean_candidates(clean_root: str, rel_path: str, pairs: bool) -> list[str]:
    """Where the clean reference of an input ``rel_path`` may be. In a pairs root, the input was a file
    of ``noisy/`` (enhance given ``noisy/``) or ``noisy/<rel>`` (enhance given the pairs root itself)."""
    if not pairs:
        return [storage.join(clean_root, rel_path)]
    head, _, rest = rel_path.partition("/")
    if head == PAIRS_NOISY and rest:
        return [storage.join(clean_root, rest), storage.join(clean_root, rel_path)]
    if head == PAIRS_CLEAN and rest:  # a clean file enhanced with the rest: it has no reference
        return []
    return [storage.join(clean_root, rel_path)]


def row_input_scores(row: dict[str, Any]) -> InputScores | None:
    """The input's four DNSMOS scores of a metrics row, or None unless all are finite numbers."""
    try:
        values = [float(row[f"dnsmos_{k}_in"]) for k in DNSMOS_SCORES]
    except (KeyError, TypeError, ValueError):
        return None
    return tuple(zip(DNSMOS_SCORES, values, strict=True)) if np.isfinite(values).all() else None


def input_key(uri: Any, size: Any, mtime: Any) -> tuple[str, int, int] | None:
    if not isinstance(uri, str) or size is None or mtime is None:
        return None
    try:
        return storage.normalize(uri), int(size), int(mtime)
    except (TypeError, ValueError):
        return None


def earlier_input_scores(metrics_uri: str) -> dict[tuple[str, int, int], InputScores]:
    """Input DNSMOS scores of an earlier evaluation, by (input URI, size, modification time); empty when
    there is none or it cannot be read (then every input is scored)."""
    try:
        table = parquet.read_parts(metrics_uri) if storage.exists(metrics_uri) else None
    except (StorageError, OSError, ValueError):
        return {}
    if table is None or not {"input_size", "input_mtime_ns"} <= set(table.column_names):
        return {}
    out = {}
    for r in table.to_pylist():
        key = input_key(r.get("noisy_uri"), r.get("input_size"), r.get("input_mtime_ns"))
        scores = row_input_scores(r)
        if key is not None and scores is not None:
            out[key] = scores
    return out
