"""``job.json`` at a run's root: what ran, with which versions and configuration (provenance)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from batchsep.io import storage

PACKAGES = ("batchsep", "torch", "ray", "numpy", "pyarrow", "soundfile", "librosa")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> str | None:
    """The git revision of the batchsep source tree, when it is a checkout (None otherwise)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def config_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_job_json(run_uri: str) -> dict[str, Any]:
    """The run's ``job.json`` (an empty document when there is none yet)."""
    uri = storage.join(run_uri, "job.json")
    if not storage.exists(uri):
        return {"stages": {}}
    return json.loads(storage.read_text(uri))


def write_job_json(
    run_uri: str, stage: str, spec: dict[str, Any], *, skipped: list[str] | None = None
) -> dict[str, Any]:
    """Record ``stage`` run with ``spec`` in ``run_uri/job.json`` (other stages' entries are kept);
    ``skipped``: the input files skipped as not audio (by name), listed as ``skipped_not_audio``."""
    doc = read_job_json(run_uri)
    earlier = doc.setdefault("stages", {}).get(stage) or {}
    doc["stages"][stage] = {
        "spec": spec,
        "config_hash": config_hash(spec),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if skipped is not None:
        doc["stages"][stage]["skipped_not_audio"] = list(skipped)
    if "last_run" in earlier and earlier.get("config_hash") == config_hash(spec):
        doc["stages"][stage]["last_run"] = earlier[
            "last_run"
        ]  # until a run of this spec records anew
    doc["versions"] = versions()
    doc["git_revision"] = git_revision()
    storage.write_text(storage.join(run_uri, "job.json"), json.dumps(doc, indent=2, default=str))
    return doc


def record_run(run_uri: str, stage: str, figures: dict[str, Any]) -> None:
    """Record what the last run of ``stage`` measured (``figures``, e.g. wall time) as its ``last_run`` in
    ``run_uri/job.json``; the stage's spec, which later runs are checked against, stays as it is."""
    doc = read_job_json(run_uri)
    entry = doc.setdefault("stages", {}).setdefault(stage, {})
    entry["last_run"] = {
        **figures,
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    storage.write_text(storage.join(run_uri, "job.json"), json.dumps(doc, indent=2, default=str))
