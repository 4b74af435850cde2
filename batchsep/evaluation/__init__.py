"""Evaluation: BSS Eval SDR/SIR/SAR, SI-SDR, PESQ, STOI, DNSMOS, emotion metrics, aggregation. No I/O.

The names below are imported on first use (PEP 562): importing one submodule, ``batchsep.evaluation.emotion``
say (the emotion tagger's), does not load PESQ, STOI and BSS Eval (scipy.signal, ~2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchsep.evaluation.aggregate import (
        SNR_EDGES,
        SUMMARY_METRICS,
        by_noise_class,
        by_snr_bin,
        per_speaker,
        snr_bin_labels,
        snr_bins,
        speaker_spread,
        summarize,
    )
    from batchsep.evaluation.bss import DB_LIMIT, BssResult, bss_eval, bss_eval_many, sdr_only
    from batchsep.evaluation.dnsmos import dnsmos_available, dnsmos_score
    from batchsep.evaluation.emotion import (
        EMOTIONS,
        accuracy,
        confusion_matrix,
        emotion_summary,
        encode_labels,
        macro_f1,
        per_class_recall,
        per_speaker_accuracy,
        uar,
    )
    from batchsep.evaluation.metrics import (
        METRIC_FAMILIES,
        SCORE_METRICS,
        input_snr,
        pesq_score,
        score_file,
        score_keys,
        si_sdr,
        stoi_score,
    )

_WHERE = {
    "SNR_EDGES": "batchsep.evaluation.aggregate",
    "SUMMARY_METRICS": "batchsep.evaluation.aggregate",
    "by_noise_class": "batchsep.evaluation.aggregate",
    "by_snr_bin": "batchsep.evaluation.aggregate",
    "per_speaker": "batchsep.evaluation.aggregate",
    "snr_bin_labels": "batchsep.evaluation.aggregate",
    "snr_bins": "batchsep.evaluation.aggregate",
    "speaker_spread": "batchsep.evaluation.aggregate",
    "summarize": "batchsep.evaluation.aggregate",
    "DB_LIMIT": "batchsep.evaluation.bss",
    "BssResult": "batchsep.evaluation.bss",
    "bss_eval": "batchsep.evaluation.bss",
    "bss_eval_many": "batchsep.evaluation.bss",
    "sdr_only": "batchsep.evaluation.bss",
    "dnsmos_available": "batchsep.evaluation.dnsmos",
    "dnsmos_score": "batchsep.evaluation.dnsmos",
    "EMOTIONS": "batchsep.evaluation.emotion",
    "accuracy": "batchsep.evaluation.emotion",
    "confusion_matrix": "batchsep.evaluation.emotion",
    "emotion_summary": "batchsep.evaluation.emotion",
    "encode_labels": "batchsep.evaluation.emotion",
    "macro_f1": "batchsep.evaluation.emotion",
    "per_class_recall": "batchsep.evaluation.emotion",
    "per_speaker_accuracy": "batchsep.evaluation.emotion",
    "uar": "batchsep.evaluation.emotion",
    "METRIC_FAMILIES": "batchsep.evaluation.metrics",
    "SCORE_METRICS": "batchsep.evaluation.metrics",
    "input_snr": "batchsep.evaluation.metrics",
    "pesq_score": "batchsep.evaluation.metrics",
    "score_file": "batchsep.evaluation.metrics",
    "score_keys": "batchsep.evaluation.metrics",
    "si_sdr": "batchsep.evaluation.metrics",
    "stoi_score": "batchsep.evaluation.metrics",
}
"""Each public name and the submodule that defines it."""


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DB_LIMIT",
    "EMOTIONS",
    "METRIC_FAMILIES",
    "SCORE_METRICS",
    "SNR_EDGES",
    "SUMMARY_METRICS",
    "BssResult",
    "accuracy",
    "bss_eval",
    "bss_eval_many",
    "by_noise_class",
    "by_snr_bin",
    "confusion_matrix",
    "dnsmos_available",
    "dnsmos_score",
    "emotion_summary",
    "encode_labels",
    "input_snr",
    "macro_f1",
    "per_class_recall",
    "per_speaker",
    "per_speaker_accuracy",
    "pesq_score",
    "score_file",
    "score_keys",
    "sdr_only",
    "si_sdr",
    "snr_bin_labels",
    "snr_bins",
    "speaker_spread",
    "stoi_score",
    "summarize",
    "uar",
]
