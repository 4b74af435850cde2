"""Model checkpoints on any URI: ``config.json`` + ``weights.safetensors`` (+ ``metrics.json``).

Works on the self-describing payload of :func:`batchsep.models.base.serialize`
(``{"model_name", "config", "state", "versions"}``) — this module never builds models itself.
The checksum (sha256 of the weights file) identifies a model in results tables.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from batchsep.errors import StorageError
from batchsep.io import storage

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
METRICS_NAME = "metrics.json"
INPUT_LEVEL_KEY = "input_level_db"
"""``config.json`` key of a mask model: the RMS level (dBFS) of its training mixtures (``batchsep train``)."""
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def resolve(uri: str) -> str:
    """Map shipped model names (``default``, ``default-emotion``, any folder of batchsep/pretrained)
    to their packaged folder; other values are URIs and returned unchanged."""
    name = {"default": "enhancer", "default-emotion": "emotion"}.get(uri, uri)
    if "/" not in name and "://" not in name and (PRETRAINED_DIR / name / CONFIG_NAME).exists():
        return str(PRETRAINED_DIR / name)
    return uri


def write_checkpoint(
    uri: str, payload: dict[str, Any], *, metrics: dict[str, Any] | None = None
) -> str:
    """Write a checkpoint folder at ``uri``; weights first, config last (the config is the commit).

    ``payload`` is :func:`batchsep.models.base.serialize`'s dict; an optional ``"features"`` entry (the
    feature configuration an emotion model was trained on) is stored in ``config.json`` too.
    """
    weights = st_save(payload["state"])
    checksum = hashlib.sha256(weights).hexdigest()
    storage.write_bytes(storage.join(uri, WEIGHTS_NAME), weights)
    if metrics is not None:
        storage.write_text(
            storage.join(uri, METRICS_NAME), json.dumps(metrics, indent=2, default=float)
        )
    meta = {k: payload[k] for k in ("model_name", "config", "versions")}
    if payload.get("features") is not None:  # an emotion model's EmotionFeatureConfig dict
        meta["features"] = payload["features"]
    meta["sha256"] = checksum
    storage.write_text(storage.join(uri, CONFIG_NAME), json.dumps(meta, indent=2))
    return checksum


def read_checkpoint(uri: str) -> dict[str, Any]:
    """Read a checkpoint folder; returns the payload plus ``sha256`` and ``uri``.

    Raises StorageError when the folder is not a checkpoint or the weights do not match the checksum.
    """
    uri = resolve(uri)
    try:
        meta = json.loads(storage.read_text(storage.join(uri, CONFIG_NAME)))
    except StorageError as e:
        raise StorageError(
            f"{uri} is not a batchsep model folder ({CONFIG_NAME} unreadable): {e}"
        ) from e
    weights = storage.read_bytes(storage.join(uri, WEIGHTS_NAME))
    checksum = hashlib.sha256(weights).hexdigest()
    if meta.get("sha256") not in (None, checksum):
        raise StorageError(
            f"{uri}: weights checksum {checksum[:12]} != recorded {meta['sha256'][:12]}"
        )
    return {**meta, "state": st_load(weights), "sha256": checksum, "uri": uri}


def read_metrics(uri: str) -> dict[str, Any] | None:
    u = storage.join(resolve(uri), METRICS_NAME)
    return json.loads(storage.read_text(u)) if storage.exists(u) else None
