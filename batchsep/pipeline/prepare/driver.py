"""The prepare stage: speech corpus + noise corpus → reproducible mixtures with disjoint splits.

Run layout under ``out_uri``::

    inputs/speech.parquet, inputs/noise.parquet   scan manifests of the inputs (reused while unchanged)
    inputs/train-{speech,noise}-K.parquet         the same for train-only inputs (``train_*_uris``)
    sources.parquet                               every input file: speaker/class, recording, split, status
    mixtures.parquet                              one row per mixture (recipe, gains, audio URIs, status)
    mixtures/<split>/{noisy,clean,noise}/<mixture_id>.flac   24-bit FLAC (absent with recipe_only)
    mixtures/_recipe.json                         hash of the recipes (a re-run must match it)
    mixtures/_parts/part-NNNNN.parquet            commit record of each rendered shard
    job.json

The driver scans the inputs (or reads given manifests), splits speakers and noise recordings, and draws
every recipe (:mod:`batchsep.corpus.mixtures`); tasks only render. A shard is done when its part is
committed; audio files are written atomically and an existing one is not rewritten, so a re-run after a
crash or an interruption renders only what is missing and produces the same bytes.

The audio URIs in ``mixtures.parquet`` are absolute (where the run was written);
:func:`~batchsep.pipeline.prepare.run.read_mixtures` rebases the ones under that folder onto the run's
current location, so a copied or moved run (another folder, machine, or S3 prefix) reads its own audio.
Every reader of a prepare run's mixtures goes through it.

Why 24-bit FLAC: lossless for the 24-bit grid the mixtures are rounded to (so the stored clean and noise
have the drawn SNR and ``noisy == clean + noise`` exactly), about 60 % of the size of float WAV, readable
everywhere; ``output_gain`` (one factor for the three signals, recorded per row) prevents clipping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from batchsep.corpus import augment as aug_mod
from batchsep.corpus import mixtures as mx
from batchsep.corpus.augment import AugmentConfig, AugmentDraw
from batchsep.corpus.mixtures import MixtureConfig, Recipe, SourceFile
from batchsep.errors import ConfigError, ParameterError, StorageError
from batchsep.io import parquet, schemas, storage
from batchsep.pipeline.common import jobinfo, progress
from batchsep.pipeline.prepare.render import RenderTask, render_shard
from batchsep.pipeline.prepare.run import (
    AUDIO_DIR,
    AUDIO_FORMAT,
    MIXTURES_NAME,
    PARTS_DIR,
    RECIPE_NAME,
    SOURCES_NAME,
)
from batchsep.pipeline.runner import Runner, SerialRunner, shards
from batchsep.pipeline.scan import driver as scan_stage

StartFn = Callable[[str, int], None]
ProgressFn = Callable[[int, float], None]


@dataclass
class PrepareSummary:
    """What a prepare run produced."""

    run_uri: str
    mixtures_uri: str
    mixtures_ok: dict[str, int] = field(default_factory=dict)
    mixtures_failed: int = 0
    hours: float = 0.0
    audio_bytes: int = 0
    shards: int = 0
    shards_skipped: int = 0
    inputs: dict[str, int] = field(default_factory=dict)
    input_errors: list[tuple[str, str]] = field(default_factory=list)
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def mixtures(self) -> int:
        return sum(self.mixtures_ok.values())

    @property
    def failed(self) -> int:
        """Failures that make the command exit non-zero (unreadable inputs, failed mixtures)."""
        return len(self.input_errors) + self.mixtures_failed


def _manifest_rows(
    uri: str,
    cache_uri: str,
    runner: Runner,
    shard_size: int,
    on_start: StartFn | None,
    on_progress: ProgressFn | None,
) -> list[dict[str, Any]]:
    """Scan manifest rows of an input: a given manifest, the cached scan, or a fresh scan."""
    if uri.endswith(".parquet") and storage.is_file(uri):
        return parquet.read_table(uri).to_pylist()
    entries, _ = scan_stage.list_audio(uri)
    if storage.exists(cache_uri):
        cached = parquet.read_table(cache_uri).to_pylist()
        if {(r["uri"], r["bytes"]) for r in cached} == {(e.uri, e.size) for e in entries}:
            return cached
    if on_start:
        on_start(f"scan {uri}", len(entries))
    rows: list[dict[str, Any]] = []
    for _, shard_rows in runner.map_unordered(scan_stage.scan_shard, shards(entries, shard_size)):
        rows.extend(shard_rows)
        seconds = sum(float(r.get("duration_s") or 0.0) for r in shard_rows)
        progress.report(on_progress, len(shard_rows), seconds, progress.failed_rows(shard_rows))
    rows.sort(key=lambda r: str(r["rel_path"]))
    parquet.write_table(cache_uri, schemas.table_from_rows(rows, schemas.MANIFEST))
    return rows


def _sources(
    rows: list[dict[str, Any]], role: str, config: MixtureConfig
) -> tuple[list[SourceFile], list[dict[str, Any]]]:
    """Usable sources and one SOURCES row per input file (errors and skips with their reason)."""
    usable: list[SourceFile] = []
    table: list[dict[str, Any]] = []
    group_rule = config.speaker_from if role == "speech" else config.noise_class_from
    for r in rows:
        out = {"role": role, "uri": r["uri"], "rel_path": r["rel_path"]}
        out.update(duration_s=r.get("duration_s"), status=r["status"], error=r.get("error"))
        table.append(out)
        if r["status"] != schemas.STATUS_OK:
            continue
        group = mx.group_of(r["rel_path"], group_rule)
        clip = mx.group_of(r["rel_path"], config.noise_clip_from) if role == "noise" else ""
        reason = None
        if r["peak"] == 0 or r["rms_dbfs"] < config.silence_dbfs:
            reason = f"silent: RMS {r['rms_dbfs']:.1f} dBFS < silence_dbfs={config.silence_dbfs}"
        elif role == "speech" and r["duration_s"] < config.min_seconds:
            reason = f"too short: {r['duration_s']:.3f} s < min_seconds={config.min_seconds}"
        elif group is None or clip is None:
            rule = group_rule if group is None else config.noise_clip_from
            reason = f"rule {rule!r} does not match the file name"
        if reason:
            out.update(status=schemas.STATUS_SKIPPED, error=reason)
            continue
        n = mx.resampled_length(int(r["frames"]), int(r["sr"]), config.sample_rate)
        usable.append(SourceFile(r["uri"], r["rel_path"], n, str(group), str(clip)))
        out.update(group=group, clip=clip or None)
    return usable, table


def _check_recipe(out_uri: str, doc: dict[str, Any]) -> None:
    uri = storage.join(out_uri, RECIPE_NAME)
    if storage.exists(uri):
        old = json.loads(storage.read_text(uri))
        if old.get("recipes_hash") != doc["recipes_hash"]:
            changed = [
                f"{k}: {before!r} -> {now!r}"
                for part in ("config", "settings")
                for k in sorted(set(old.get(part) or {}) | set(doc.get(part) or {}))
                if (before := (old.get(part) or {}).get(k)) != (now := (doc.get(part) or {}).get(k))
            ]
            what = f"other settings ({'; '.join(changed)})" if changed else "other input files"
            raise ConfigError(
                f"{out_uri} already holds mixtures made from {what}: re-run with the same inputs and "
                "settings to resume, or use another output folder"
            )
        return
    storage.write_text(uri, json.dumps(doc, indent=2, sort_keys=True))


def prepare(
    speech_uri: str,
    noise_uri: str,
    out_uri: str,
    *,
    config: MixtureConfig | None = None,
    recipe_only: bool = False,
    runner: Runner | None = None,
    shard_size: int = 16,
    on_start: StartFn | None = None,
    on_progress: ProgressFn | None = None,
    train_speech_uris: tuple[str, ...] | list[str] = (),
    train_noise_uris: tuple[str, ...] | list[str] = (),
    augment: AugmentConfig | None = None,
) -> PrepareSummary:
    """Build ``out_uri/mixtures.parquet`` (and the mixture audio) from a speech and a noise corpus.

    Parameters
    ----------
    speech_uri, noise_uri : str
        Folder/prefix to scan, or a scan manifest (``.parquet``); unreadable files are reported and
        excluded, silent or too short ones skipped with a reason (``sources.parquet``).
    out_uri : str
        Run folder (local, file://, s3://).
    config : MixtureConfig, optional
        Counts, SNR range, seed, split rules (default: 3000/300/300 mixtures at -5..5 dB).
    recipe_only : bool
        Store the recipes (rendered once to check them and record the gains) but no audio; see
        :func:`~batchsep.pipeline.prepare.render.regenerate`.
    runner : Runner, optional
        Executes scan and render shards (default: in this process).
    shard_size : int
        Mixtures per render task (and per committed part).
    on_start : callable(phase, total), optional
        Called when a phase (scan of an input, render) starts.
    on_progress : callable(mixtures_done, seconds_of_audio_done), optional
    train_speech_uris, train_noise_uris : sequence of str
        More inputs (folders or manifests) used **in the train split only**: the splits of
        ``speech_uri`` and ``noise_uri`` are drawn exactly as without them (same held-out speakers and
        noise recordings), then every speaker and recording of these is added to train. A speaker or
        recording name of theirs that is held out (valid/test) in the main inputs is an error.
    augment : AugmentConfig, optional
        Augmentations drawn per mixture (:mod:`batchsep.corpus.augment`; default: none).

    Raises
    ------
    StorageError
        An input cannot be listed, or ``out_uri`` cannot be written (checked before any work).
    ParameterError
        Too few speakers or noise recordings for the splits, or an unknown held-out class.
    ConfigError
        ``out_uri`` holds mixtures made from other inputs or settings.
    """
    config = config or MixtureConfig()
    runner = runner or SerialRunner()
    augment = augment if augment is not None and augment.enabled else None
    extra = [("speech", u) for u in train_speech_uris] + [("noise", u) for u in train_noise_uris]
    for uri in (speech_uri, noise_uri, *(u for _, u in extra)):
        if not storage.exists(uri):
            raise StorageError(f"cannot read input {uri}: no such file, folder or prefix")
    storage.check_writable(out_uri)
    summary = PrepareSummary(out_uri, storage.join(out_uri, MIXTURES_NAME))
    speech: list[SourceFile] = []
    noise: list[SourceFile] = []
    source_rows: list[dict[str, Any]] = []
    for role, uri in (("speech", speech_uri), ("noise", noise_uri)):
        cache = storage.join(out_uri, "inputs", f"{role}.parquet")
        usable, table = _sources(
            _manifest_rows(uri, cache, runner, 32, on_start, on_progress), role, config
        )
        (speech if role == "speech" else noise).extend(usable)
        summary.inputs[role] = len(usable)
        source_rows.extend(table)
    speaker_split, clip_split = mx.assign_splits(speech, noise, config)
    speech_inputs: dict[str, int] = {}
    for k, (role, uri) in enumerate(extra):
        cache = storage.join(out_uri, "inputs", f"train-{role}-{k}.parquet")
        usable, table = _sources(
            _manifest_rows(uri, cache, runner, 32, on_start, on_progress), role, config
        )
        _add_train_only(usable, speaker_split if role == "speech" else clip_split, role, uri)
        speech_inputs.update({f.uri: k + 1 for f in usable if role == "speech"})
        (speech if role == "speech" else noise).extend(usable)
        summary.inputs[role] += len(usable)
        source_rows.extend(table)
    for r in source_rows:
        if r["status"] == schemas.STATUS_OK:
            splits = speaker_split if r["role"] == "speech" else clip_split
            r["split"] = splits.get(r["group"] if r["role"] == "speech" else r["clip"])
        elif r["status"] == schemas.STATUS_SKIPPED:
            summary.skipped_inputs.append((r["rel_path"], r["error"]))
        else:
            summary.input_errors.append((r["rel_path"], r["error"]))
    _write_if_changed(
        storage.join(out_uri, SOURCES_NAME), schemas.table_from_rows(source_rows, schemas.SOURCES)
    )
    draws: list[AugmentDraw | None] | None = None
    if augment is None:
        recipes = mx.draw_recipes(speech, noise, speaker_split, clip_split, config)
    else:
        recipes, draws = aug_mod.draw_augmented(
            speech, noise, speaker_split, clip_split, config, augment, speech_inputs
        )
    settings: dict[str, Any] = {
        "max_peak": config.max_peak, "format": AUDIO_FORMAT, "recipe_only": recipe_only,
    }  # fmt: skip
    hash_extra = dict(settings)
    if augment is not None and draws is not None:
        settings["augment"] = augment.to_dict()
        hash_extra.update(augment=settings["augment"], draws=aug_mod.draws_hash(draws))
    if extra:
        settings["train_only_inputs"] = [f"{role}:{uri}" for role, uri in extra]
    doc = {"recipes_hash": mx.recipes_hash(recipes, hash_extra), "settings": settings}
    _check_recipe(out_uri, {**doc, "config": config.to_dict(), "n_recipes": len(recipes)})
    _render_all(
        out_uri, recipes, recipe_only, config, runner, shard_size, summary, on_start, on_progress,
        draws,
    )  # fmt: skip
    params = {"speech_uri": speech_uri, "noise_uri": noise_uri, "out_uri": out_uri,
              "recipe_only": recipe_only, "config": config.to_dict(), **doc}  # fmt: skip
    if extra:
        params.update(
            train_speech_uris=list(train_speech_uris), train_noise_uris=list(train_noise_uris)
        )
    jobinfo.write_job_json(out_uri, "prepare", params)
    return summary


def _render_all(
    out_uri: str,
    recipes: list[Recipe],
    recipe_only: bool,
    config: MixtureConfig,
    runner: Runner,
    shard_size: int,
    summary: PrepareSummary,
    on_start: StartFn | None,
    on_progress: ProgressFn | None,
    draws: list[AugmentDraw | None] | None = None,
) -> None:
    audio_root = None if recipe_only else storage.join(out_uri, AUDIO_DIR)
    parts_uri = storage.join(out_uri, PARTS_DIR)
    done = (
        {e.rel_path for e in storage.list_files(parts_uri)} if storage.exists(parts_uri) else set()
    )
    tasks = []
    for k, chunk in enumerate(shards(recipes, shard_size)):
        part = parquet.part_uri(parts_uri, k)
        if parquet.PART_TEMPLATE.format(k) in done:
            summary.shards_skipped += 1
            continue
        chunk_draws = None if draws is None else draws[k * shard_size : k * shard_size + len(chunk)]
        tasks.append(RenderTask(part, audio_root, chunk, config.max_peak, chunk_draws))
    summary.shards = len(shards(recipes, shard_size)) if recipes else 0
    n_todo = sum(len(t.recipes) for t in tasks)
    if on_start and (n_todo or not summary.shards_skipped):  # as enhance: this run's work only
        skipped = len(recipes) - n_todo
        on_start(f"render ({skipped} done before)" if skipped else "render", n_todo)
    for _, rows in runner.map_unordered(render_shard, tasks):
        seconds = sum(float(r["duration_s"]) for r in rows)
        progress.report(on_progress, len(rows), seconds, progress.failed_rows(rows))
    schema = schemas.MIXTURES if draws is None else schemas.MIXTURES_AUGMENTED
    table = parquet.read_parts(parts_uri) if recipes else None
    if table is None:
        table = schemas.table_from_rows([], schema)
    order = {s: i for i, s in enumerate(mx.SPLITS)}
    rows = sorted(table.to_pylist(), key=lambda r: (order[r["split"]], r["index"]))
    _write_if_changed(summary.mixtures_uri, schemas.table_from_rows(rows, schema))
    for r in rows:
        if r["status"] == schemas.STATUS_OK:
            summary.mixtures_ok[r["split"]] = summary.mixtures_ok.get(r["split"], 0) + 1
            summary.hours += float(r["duration_s"]) / 3600.0
        else:
            summary.mixtures_failed += 1
            summary.errors.append((r["mixture_id"], str(r["error"])))
    if audio_root is not None and storage.exists(audio_root):
        summary.audio_bytes = sum(
            e.size for e in storage.list_files(audio_root) if not e.rel_path.startswith("_")
        )


def _add_train_only(usable: list[SourceFile], split: dict[str, str], role: str, uri: str) -> None:
    """Put every speaker (speech) or recording (noise) of a train-only input in train."""
    for f in usable:
        key = f.group if role == "speech" else f.clip
        if split.get(key, "train") != "train":
            what = "speaker" if role == "speech" else "noise recording"
            raise ParameterError(
                f"train-only input {uri}: {what} {key!r} is held out ({split[key]}) in the main "
                "inputs; rename it or drop it from the train-only input"
            )
        split[key] = "train"


def _write_if_changed(uri: str, table: pa.Table) -> None:
    """Write a Parquet file unless ``uri`` already holds exactly these bytes (a re-run is a no-op)."""
    data = parquet.to_bytes(table, compression="zstd")
    if storage.is_file(uri) and storage.read_bytes(uri) == data:
        return
    storage.write_bytes(uri, data)
