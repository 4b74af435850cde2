"""Model checkpoints on any URI: ``config.json`` + ``weights.safetensors`` (+ ``metrics.json``).

Works on the self-describing payload of :func:`batchsep.models.base.serialize`
(``{"model_name", "config", "state", "versions"}``) — this module never builds models itself.
The checksum (sha256 of the weights file) identifies a model in results tables.

:func:`read_checkpoint` reads a checkpoint once per process: it keeps the last few payloads, each with its
files' size and modification time, and reads the files again only when these changed (or after
:func:`write_checkpoint` to the same folder). One enhance of one file read each model twice before (the
driver's check, then the worker's load, issue 23).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
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
CACHED_CHECKPOINTS = 4
"""How many payloads :func:`read_checkpoint` keeps per process (the enhancer, the emotion model, ...)."""
_READ: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
"""read_checkpoint's memo: resolved URI -> (files' (size, mtime) stamp, payload), oldest first."""


def resolve(uri: str) -> str:
    """Map shipped model names (``default``, ``default-emotion``, any folder of batchsep/pretrained)
    to their packaged folder; other values are URIs and returned unchanged."""
    name = {"default": "enhancer", "default-emotion": "emotion"}.get(uri, uri)
    if "/" not in name and "://" not in name and (PRETRAINED_DIR / name / CONFIG_NAME).exists():
        return str(PRETRAINED_DIR / name)
    return uri


def write_checkpoint(
    uri: str,
    payload: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint folder at ``uri``; weights first, config last (the config is the commit).

    ``payload`` is :func:`batchsep.models.base.serialize`'s dict; an optional ``"features"`` entry (the
    feature configuration an emotion model was trained on) is stored in ``config.json`` too, and so is
    every entry of ``extra`` (``stft``, ``input_level_db``, ...).
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
    meta.update(extra or {})
    meta["sha256"] = checksum
    storage.write_text(storage.join(uri, CONFIG_NAME), json.dumps(meta, indent=2))
    _READ.pop(resolve(uri), None)
    return checksum


def copy_checkpoint(src: str, dst: str, *, dtype: str | None = None) -> str:
    """Copy the checkpoint at ``src`` to ``dst`` (config, weights, metrics), its floating-point weights cast
    to ``dtype`` (``"float16"``, ``"bfloat16"``, ``"float32"``; None: as they are); returns the new sha256.

    Every ``config.json`` entry is kept (``stft``, ``input_level_db``, ...); only ``sha256`` is new. How
    the shipped enhancer is made from a training run (its MODEL_CARD.md): half the bytes, and the model
    computes in float32 whatever the stored type.
    """
    payload = read_checkpoint(src)
    if dtype is not None:
        to = getattr(torch, dtype, None)
        if not isinstance(to, torch.dtype) or not to.is_floating_point:
            raise ValueError(f"dtype {dtype!r} is not a floating-point torch dtype")
        payload["state"] = {
            k: v.to(to) if v.is_floating_point() else v for k, v in payload["state"].items()
        }
    extra = {k: v for k, v in payload.items() if k not in ("state", "sha256", "uri")}
    return write_checkpoint(dst, payload, metrics=read_metrics(src), extra=extra)


def _stamp(uri: str) -> tuple[Any, ...] | None:
    """Size and modification time of ``uri``'s config and weights (no read); None: do not cache.

    Local files only: on S3 the check would be two HEAD requests, each retried through an outage.
    """
    if storage.is_s3(uri):
        return None
    try:
        fs, base = storage.filesystem(uri)
        infos = fs.get_file_info([f"{base.rstrip('/')}/{n}" for n in (CONFIG_NAME, WEIGHTS_NAME)])
    except Exception:  # whatever the reason, the read below reports it (or succeeds uncached)
        return None
    if any(i.size is None or i.mtime_ns is None for i in infos):
        return None
    return tuple((i.size, i.mtime_ns) for i in infos)


def read_checkpoint(uri: str) -> dict[str, Any]:
    """Read a checkpoint folder; returns the payload plus ``sha256`` and ``uri``.

    Raises StorageError when the folder is not a checkpoint or the weights do not match the checksum.
    A second read of unchanged files in the same process returns the payload kept from the first (its
    ``state`` tensors shared: load them, do not modify them in place).
    """
    uri = resolve(uri)
    stamp = _stamp(uri)
    kept = _READ.get(uri)
    if stamp is not None and kept is not None and kept[0] == stamp:
        return _copy(kept[1])
    payload = _read(uri)
    if stamp is not None:
        _READ.pop(uri, None)
        _READ[uri] = (stamp, payload)
        while len(_READ) > CACHED_CHECKPOINTS:
            del _READ[next(iter(_READ))]
    return _copy(payload)


def _copy(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` a caller may change (the tensors are shared, the dict of them is not)."""
    meta = copy.deepcopy({k: v for k, v in payload.items() if k != "state"})
    return {**meta, "state": dict(payload["state"])}


def _read(uri: str) -> dict[str, Any]:
    """:func:`read_checkpoint` of the resolved ``uri``, from its files."""
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
