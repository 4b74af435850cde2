"""The features stage: per-utterance features into sharded Parquet, one Ray task per shard.

``kind="stft"`` reads a prepare run (``mixtures.parquet``) and stores the STFT magnitudes of noisy, clean
and (optionally) noise, and optionally the phase-sensitive target ``psf(S, X)·|X|``; ``kind="logmel"``
reads a scan run (``manifest.parquet``, e.g. an emotion corpus) and stores 80-band log-mel spectrograms
(:func:`batchsep.dsp.mel.log_mel`). Features are ``list<fixed_size_list<float32, n_bins>>`` columns
(frames × bins).

Layout: ``<features>/<split>/part-NNNNN.parquet`` (split ``all`` for log-mel), each shard at most about
``shard_mb`` MB of uncompressed features. A shard's schema metadata holds the transform parameters
(``batchsep.transform``), their hash (``batchsep.transform_hash``) and the shard's key (the hash of the
transform and of its row ids): a re-run skips every shard already present with the same key, so an
interrupted or crashed run resumes where it stopped and writes no duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from batchsep.errors import ConfigError, ParameterError, StorageError
from batchsep.io import parquet, storage
from batchsep.pipeline.common import jobinfo
from batchsep.pipeline.features.options import FeatureConfig, StftFeatures, transform_hash
from batchsep.pipeline.features.options import LogMelFeatures as LogMelFeatures  # public API
from batchsep.pipeline.features.worker import FeatureTask, featurize_shard, schema_meta
from batchsep.pipeline.prepare import run as prepare_run
from batchsep.pipeline.runner import Runner, SerialRunner

FEATURES_DIR = "features"

ProgressFn = Callable[[int, float], None]


@dataclass
class FeatureSummary:
    """What a features run produced (counts over all shards of the plan, written now or before)."""

    out_uri: str
    transform_hash: str
    rows_ok: int = 0
    rows_failed: int = 0
    shards: int = 0
    shards_skipped: int = 0
    shards_replaced: int = 0
    """Part files of an earlier run in ``out_uri`` that this run did not reuse (other settings or plan)."""
    previous_transform: str | None = None
    """The transform hash of the earlier features run in ``out_uri``, if any."""
    bytes: int = 0
    hours: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bytes_per_hour(self) -> float:
        return self.bytes / self.hours if self.hours else 0.0


def _input_rows(run_uri: str, config: FeatureConfig) -> tuple[list[dict[str, Any]], float]:
    if isinstance(config, StftFeatures):
        uri = storage.join(run_uri, prepare_run.MIXTURES_NAME)
        if not storage.exists(uri):
            raise StorageError(f"cannot read {uri}: not a prepare run (run `batchsep prepare`)")
        rows = [r for r in prepare_run.read_mixtures(run_uri) if r["status"] == "ok"]
        bad = {r["sample_rate"] for r in rows} - {config.sample_rate}
        if bad:
            raise ConfigError(
                f"mixtures at {sorted(bad)} Hz but sample_rate={config.sample_rate} in the features"
            )
        recipe_uri = storage.join(run_uri, prepare_run.RECIPE_NAME)
        doc = json.loads(storage.read_text(recipe_uri)) if storage.exists(recipe_uri) else {}
        return rows, float(doc.get("settings", {}).get("max_peak", 0.99))
    uri = storage.join(run_uri, "manifest.parquet")
    if not storage.exists(uri):
        raise StorageError(f"cannot read {uri}: not a scan run (run `batchsep scan`)")
    rows = [
        r | {"split": "all"} for r in parquet.read_table(uri).to_pylist() if r["status"] == "ok"
    ]
    return rows, 0.99


def plan_shards(
    rows: list[dict[str, Any]], config: FeatureConfig, *, shard_mb: float
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Group consecutive rows of each split into shards of at most ``shard_mb`` MB of features
    (estimated from the number of frames; a single larger row gets a shard of its own)."""
    if not shard_mb > 0:
        raise ParameterError(f"shard_mb={shard_mb} must be > 0")
    limit = shard_mb * 1e6
    per_frame = 4 * config.n_bins * len(config.columns())
    out: list[tuple[str, list[dict[str, Any]]]] = []
    size = 0.0
    for row in rows:
        n = row.get("n_samples") or round(float(row["duration_s"]) * config.sample_rate)
        est = config.n_frames(int(n)) * per_frame
        if not out or out[-1][0] != row["split"] or (size + est > limit and out[-1][1]):
            out.append((row["split"], []))
            size = 0.0
        out[-1][1].append(row)
        size += est
    return out


def _is_done(uri: str, key: str, existing: set[str]) -> bool:
    try:  # an unreadable part is recomputed
        return uri in existing and schema_meta(uri).get(b"batchsep.shard_key") == key.encode()
    except StorageError:
        return False


def features(
    run_uri: str,
    *,
    config: FeatureConfig | None = None,
    out_uri: str | None = None,
    shard_mb: float = 128.0,
    compression: str = "zstd",
    runner: Runner | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> FeatureSummary:
    """Compute features of a run into ``<out_uri>/<split>/part-NNNNN.parquet``.

    Parameters
    ----------
    run_uri : str
        A prepare run (``StftFeatures``) or a scan run (``LogMelFeatures``).
    config : StftFeatures or LogMelFeatures, optional
        Default: ``StftFeatures()`` (noisy, clean and noise magnitudes, F = 257).
    out_uri : str, optional
        Default: ``run_uri/features``.
    shard_mb : float
        Target shard size in MB of uncompressed features.
    compression : {"zstd", "lz4", "snappy", "none"}
        Parquet compression (does not change the values, hence not the transform hash).
    runner : Runner, optional
    on_start : callable(phase, total), optional
    on_progress : callable(rows_done, seconds_of_audio_done), optional

    Raises
    ------
    StorageError
        ``run_uri`` is not a run of the right kind, or the output cannot be written.
    """
    config = config or StftFeatures()
    runner = runner or SerialRunner()
    out_uri = out_uri or storage.join(run_uri, FEATURES_DIR)
    rows, max_peak = _input_rows(run_uri, config)
    storage.check_writable(out_uri)
    key_base = transform_hash(config)
    plan = plan_shards(rows, config, shard_mb=shard_mb)
    existing = (
        {e.uri for e in storage.list_files(out_uri, suffixes=[".parquet"])}
        if storage.exists(out_uri)
        else set()
    )
    counters: dict[str, int] = {}
    tasks, planned = [], []
    summary = FeatureSummary(out_uri, key_base, shards=len(plan))
    for split, shard_rows in plan:
        k = counters[split] = counters.get(split, -1) + 1
        uri = parquet.part_uri(storage.join(out_uri, split), k)
        ids = [str(r.get("mixture_id") or r.get("rel_path")) for r in shard_rows]
        key = hashlib.sha256(json.dumps([key_base, ids]).encode()).hexdigest()[:16]
        planned.append(uri)
        if _is_done(uri, key, existing):
            summary.shards_skipped += 1
            continue
        tasks.append(FeatureTask(uri, split, shard_rows, config, key, compression, max_peak))
    if on_start:
        on_start("features", len(rows))
    if on_progress and summary.shards_skipped:
        todo = {id(r) for t in tasks for r in t.rows}
        done = [r for r in rows if id(r) not in todo]
        on_progress(len(done), sum(float(r.get("duration_s") or 0.0) for r in done))
    job_root = run_uri if out_uri == storage.join(run_uri, FEATURES_DIR) else out_uri
    earlier = (
        jobinfo.read_job_json(job_root).get("stages", {}).get("features", {}).get("spec") or {}
    )
    summary.previous_transform = earlier.get("transform_hash")
    summary.shards_replaced = len(existing) - summary.shards_skipped
    for _, result in runner.map_unordered(featurize_shard, tasks):
        if on_progress:
            on_progress(result.rows, result.seconds)
    _remove_stale(existing, set(planned))
    _summarise(summary, planned)
    jobinfo.write_job_json(
        job_root,
        "features",
        {"run_uri": run_uri, "out_uri": out_uri, "config": config.to_dict(),
         "transform_hash": key_base, "shard_mb": shard_mb, "compression": compression},
    )  # fmt: skip
    return summary


def _remove_stale(existing: set[str], planned: set[str]) -> None:
    """Delete part files of an earlier plan that this plan does not have (e.g. another shard_mb)."""
    for uri in sorted(existing - planned):
        name = uri.replace("\\", "/").rsplit("/", 1)[-1]
        if name.startswith("part-") and name.endswith(".parquet"):
            storage.delete(uri)


def _summarise(summary: FeatureSummary, planned: list[str]) -> None:
    """Counts, bytes, hours and errors over every shard of the plan (from footers; error rows read)."""
    for uri in planned:
        try:
            with parquet.open_file(uri) as (pf, size):
                meta = pf.schema_arrow.metadata or {}
                n_rows, n_ok = pf.metadata.num_rows, int(meta[b"batchsep.num_ok"])
                summary.bytes += size
                summary.hours += float(meta[b"batchsep.seconds_ok"]) / 3600.0
                summary.rows_ok += n_ok
                summary.rows_failed += n_rows - n_ok
                if n_ok < n_rows:
                    id_col = "mixture_id" if "mixture_id" in pf.schema_arrow.names else "rel_path"
                    t = pf.read(columns=[id_col, "status", "error"]).to_pylist()
                    summary.errors += [
                        (r[id_col], str(r["error"])) for r in t if r["status"] != "ok"
                    ]
        except (OSError, pa.ArrowException, KeyError) as e:
            raise StorageError(f"cannot read feature shard {uri}: {e}") from e
