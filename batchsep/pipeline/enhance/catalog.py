"""``batchsep models``: every model name ``--model`` and ``--emotion-model`` accept, with what it is and
the quality and speed measured for it (``batchsep/pretrained/zoo.json``, written from bench runs)."""

from __future__ import annotations

from typing import Any

from batchsep.errors import BatchsepError
from batchsep.io import checkpoint
from batchsep.pipeline.enhance import zoo

SHIPPED = {
    "default": {
        "role": "enhancer",
        "folder": "enhancer",
        "licence": "code Apache-2.0; weights CC BY-NC 3.0 (trained with UrbanSound8K noise): "
        "non-commercial",
        "source": "shipped in batchsep (batchsep/pretrained/enhancer; jobs/train_default_enhancer.yaml)",
    },
    "default-emotion": {
        "role": "emotion",
        "folder": "emotion",
        "licence": "code Apache-2.0; weights CC BY-NC-SA 4.0 (trained on RAVDESS): non-commercial",
        "source": "shipped in batchsep (batchsep/pretrained/emotion)",
    },
}
FIGURES = ("voicebank_sdri_db", "x_real_time_per_core")


def _shipped(name: str) -> dict[str, Any]:
    info = SHIPPED[name]
    payload = checkpoint.read_checkpoint(name)
    stft = payload.get("stft") or {}
    return {
        "name": name,
        "role": info["role"],
        "model": payload["model_name"],
        "sample_rate": int(stft.get("sample_rate", 16000)),
        "parameters": int(sum(int(t.numel()) for t in payload["state"].values())),
        "licence": info["licence"],
        "source": info["source"],
        "status": "ok",
        "sha256": payload["sha256"],
    }


def _zoo(name: str) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "role": "enhancer"}
    parts = name.split(zoo.FUSION_SEP)
    specs = [zoo.ZOO[p] for p in parts]
    row["model"] = "fusion: mean of the systems' time-aligned outputs" if len(parts) > 1 else name
    row["sample_rate"] = max(s.sample_rate for s in specs)
    counts = [s.parameters for s in specs]
    row["parameters"] = None if None in counts else sum(c for c in counts if c is not None)
    row["licence"] = "; ".join(s.licence for s in specs)
    row["source"] = "; ".join(s.source for s in specs)
    try:
        row["sha256"] = zoo.zoo_meta(name)["sha256"]
        row["status"] = "ok"
    except BatchsepError as e:
        row["sha256"], row["status"] = None, str(e)
    return row


def list_models() -> list[dict[str, Any]]:
    """One dict per model name: name, role, model, sample_rate, parameters, licence, source, status
    (``ok``, or why it cannot be used here: the zoo extra not installed, a checksum refused), sha256, and
    the measured figures of ``zoo.json`` (None where not measured, or measured on other weights)."""
    cards = zoo.model_cards().get("models", {})
    fused = [n for n in cards if zoo.FUSION_SEP in n]
    rows = [_shipped(n) for n in SHIPPED] + [_zoo(n) for n in [*zoo.ZOO, *fused]]
    for row in rows:
        figures = cards.get(row["name"], {})
        if figures.get("sha256") not in (None, row["sha256"]):  # measured on other weights: stale
            figures = {}
        row.update({k: figures.get(k) for k in FIGURES})
    return rows
