"""The prepare stage: speech corpus + noise corpus → reproducible mixtures with disjoint splits.

Run layout under ``out_uri``::

    inputs/speech.parquet, inputs/noise.parquet   scan manifests of the inputs (reused while unchanged)
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

The audio URIs in ``mixtures.parquet`` are absolute (where the run was written); :func:`read_mixtures`
rebases the ones under that folder onto the run's current location, so a copied or moved run (another
folder, machine, or S3 prefix) reads its own audio. Every reader of a prepare run's mixtures goes through it.

Why 24-bit FLAC: lossless for the 24-bit grid the mixtures are rounded to (so the stored clean and noise
have the drawn SNR and ``noisy == clean + noise`` exactly), about 60 % of the size of float WAV, readable
everywhere; ``output_gain`` (one factor for the three signals, recorded per row) prevents clipping.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchsep.corpus import mixtures as mx
from batchsep.corpus.mixtures import MixtureConfig, Recipe, SourceFile
from batchsep.dsp.resample import to_rate_mono
from batchsep.errors import AudioDecodeError, ConfigError, ParameterError, StorageError
from batchsep.io import audio, parquet, schemas, storage
from batchsep.pipeline import jobinfo
from batchsep.pipeline import scan as scan_stage
from batchsep.pipeline.runner import Runner, SerialRunner, shards

MIXTURES_NAME = "mixtures.parquet"
SOURCES_NAME = "sources.parquet"
AUDIO_DIR = "mixtures"
PARTS_DIR = "mixtures/_parts"
RECIPE_NAME = "mixtures/_recipe.json"
STREAMS = ("noisy", "clean", "noise")
AUDIO_FORMAT = "flac"
_URI_COLUMN = {"noisy": "noisy_uri", "clean": "clean_uri", "noise": "noise_audio_uri"}

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


@dataclass(frozen=True)
class RenderTask:
    """One shard of recipes to render; ``audio_uri`` None renders without writing audio."""

    part_uri: str
    audio_uri: str | None
    recipes: list[Recipe]
    max_peak: float


def _read_source(uri: str, sample_rate: int) -> np.ndarray:
    decoded = audio.decode(storage.read_bytes(uri))
    return to_rate_mono(decoded.samples, decoded.sample_rate, sample_rate)


def audio_uri(run_or_audio_uri: str, split: str, stream: str, mixture_id: str) -> str:
    return storage.join(run_or_audio_uri, split, stream, f"{mixture_id}.{AUDIO_FORMAT}")


def render_recipe(
    recipe: Recipe, *, max_peak: float = 0.99, cache: dict[str, np.ndarray] | None = None
) -> mx.RenderedMixture:
    """Read the recipe's sources and render it (raises StorageError/AudioDecodeError/ParameterError)."""
    cache = {} if cache is None else cache
    arrays = []
    for uri in (recipe.speech_uri, recipe.noise_uri):
        if uri not in cache:
            if len(cache) >= 16:
                cache.pop(next(iter(cache)))
            cache[uri] = _read_source(uri, recipe.sample_rate)
        arrays.append(cache[uri])
    return mx.render(arrays[0], arrays[1], recipe, max_peak=max_peak)


def render_shard(task: RenderTask) -> list[dict[str, Any]]:
    """Render one shard (a Ray task): write missing audio files, then commit the shard's part."""
    rows: list[dict[str, Any]] = []
    cache: dict[str, np.ndarray] = {}
    for recipe in task.recipes:
        row = {**recipe.to_row(), "status": schemas.STATUS_OK}
        try:
            out = render_recipe(recipe, max_peak=task.max_peak, cache=cache)
        except (StorageError, AudioDecodeError, ParameterError) as e:
            row.update(status=schemas.STATUS_ERROR, error=str(e))
            rows.append(row)
            continue
        row.update(noise_gain=out.noise_gain, output_gain=out.output_gain)
        if task.audio_uri is not None:
            for stream, samples in out.streams().items():
                uri = audio_uri(task.audio_uri, recipe.split, stream, recipe.mixture_id)
                if not storage.exists(uri):
                    storage.write_bytes(uri, audio.encode(samples, recipe.sample_rate, fmt="flac"))
                row[_URI_COLUMN[stream]] = uri
        rows.append(row)
    parquet.write_table(task.part_uri, schemas.table_from_rows(rows, schemas.MIXTURES))
    return rows


def load_mixture(row: Mapping[str, Any], *, max_peak: float = 0.99) -> dict[str, np.ndarray]:
    """The ``noisy``/``clean``/``noise`` signals [shape=(n_samples,)] float32 of a mixtures row.

    Decodes the stored clean and noise files and sums them (bit-exact with the stored noisy file, since
    all three lie on the 24-bit grid); a recipe-only row is rendered from its sources instead.
    """
    if row.get("clean_uri") and row.get("noise_audio_uri"):
        clean = audio.decode(storage.read_bytes(row["clean_uri"])).samples[0]
        noise = audio.decode(storage.read_bytes(row["noise_audio_uri"])).samples[0]
        return {"noisy": clean + noise, "clean": clean, "noise": noise}
    return regenerate(row, max_peak=max_peak)


def regenerate(row: Mapping[str, Any], *, max_peak: float = 0.99) -> dict[str, np.ndarray]:
    """Render a mixture from its recipe row on the fly: bit-exact with the files ``prepare`` stores.

    ``max_peak`` must be the value the run used (``MixtureConfig.max_peak``, in ``job.json``).
    """
    return render_recipe(Recipe.from_row(row), max_peak=max_peak).streams()


class MixturesTable(NamedTuple):
    """The rows of a prepare run's ``mixtures.parquet`` with their audio URIs under ``root``."""

    rows: list[dict[str, Any]]
    root: str
    """The run's folder now (normalized)."""
    written_root: str | None
    """The folder the run was written to, per its audio URIs; None without audio (recipe-only)."""


def written_root(rows: list[dict[str, Any]]) -> str | None:
    """The folder a run's audio was written to: the most common prefix before the run layout's
    ``/mixtures/<split>/<stream>/<mixture_id>.flac`` among the rows' audio URIs (None if none has it)."""
    roots: Counter[str] = Counter()
    for r in rows:
        for stream, column in _URI_COLUMN.items():
            uri = r.get(column)
            tail = f"/{AUDIO_DIR}/{r.get('split')}/{stream}/{r.get('mixture_id')}.{AUDIO_FORMAT}"
            if uri and uri.endswith(tail):
                roots[uri[: -len(tail)]] += 1
    return roots.most_common(1)[0][0] if roots else None


def read_mixtures_table(run_uri: str) -> MixturesTable:
    """Like :func:`read_mixtures`, with the run's current and recorded folders."""
    uri = run_uri if run_uri.endswith(".parquet") else storage.join(run_uri, MIXTURES_NAME)
    rows = parquet.read_table(uri).to_pylist()
    root, old = storage.normalize(storage.parent(uri)), written_root(rows)
    if old is None or old == root:
        return MixturesTable(rows, root, old)
    under = [
        (r, c) for r in rows for c in _URI_COLUMN.values() if (r.get(c) or "").startswith(old + "/")
    ]
    rebased = [storage.join(root, r[c][len(old) + 1 :]) for r, c in under]
    if not storage.exists(rebased[0]):  # a lone copy of mixtures.parquet: the audio is where it was
        return MixturesTable(rows, root, old)
    for (r, c), new in zip(under, rebased, strict=True):
        r[c] = new
    return MixturesTable(rows, root, old)


def read_mixtures(run_uri: str) -> list[dict[str, Any]]:
    """The rows of a prepare run's ``mixtures.parquet``, its audio URIs under the run's current location.

    Parameters
    ----------
    run_uri : str
        The prepare run's folder (local, file://, s3://), or its ``mixtures.parquet``.

    Returns
    -------
    list of dict
        One row per mixture. The audio URIs (``noisy_uri``, ``clean_uri``, ``noise_audio_uri``) that lie
        under the folder the run was written to are rebased onto ``run_uri`` when the audio is there, so
        a copied or moved run reads its own files; other URIs (the speech and noise sources) stay as they
        are.

    Raises
    ------
    StorageError
        ``mixtures.parquet`` cannot be read.
    """
    return read_mixtures_table(run_uri).rows


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
        if on_progress:
            on_progress(len(shard_rows), sum(float(r.get("duration_s") or 0.0) for r in shard_rows))
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
        :func:`regenerate`.
    runner : Runner, optional
        Executes scan and render shards (default: in this process).
    shard_size : int
        Mixtures per render task (and per committed part).
    on_start : callable(phase, total), optional
        Called when a phase (scan of an input, render) starts.
    on_progress : callable(mixtures_done, seconds_of_audio_done), optional

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
    for uri in (speech_uri, noise_uri):
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
    recipes = mx.draw_recipes(speech, noise, speaker_split, clip_split, config)
    settings = {"max_peak": config.max_peak, "format": AUDIO_FORMAT, "recipe_only": recipe_only}
    doc = {"recipes_hash": mx.recipes_hash(recipes, settings), "settings": settings}
    _check_recipe(out_uri, {**doc, "config": config.to_dict(), "n_recipes": len(recipes)})
    _render_all(
        out_uri, recipes, recipe_only, config, runner, shard_size, summary, on_start, on_progress
    )
    jobinfo.write_job_json(
        out_uri,
        "prepare",
        {"speech_uri": speech_uri, "noise_uri": noise_uri, "out_uri": out_uri,
         "recipe_only": recipe_only, "config": config.to_dict(), **doc},
    )  # fmt: skip
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
        tasks.append(RenderTask(part, audio_root, chunk, config.max_peak))
    summary.shards = len(shards(recipes, shard_size)) if recipes else 0
    if on_start:
        on_start("render", len(recipes))
    if on_progress and summary.shards_skipped:  # already committed: count them as done
        todo = {r.mixture_id for t in tasks for r in t.recipes}
        done_recipes = [r for r in recipes if r.mixture_id not in todo]
        on_progress(len(done_recipes), sum(r.duration_s for r in done_recipes))
    for _, rows in runner.map_unordered(render_shard, tasks):
        if on_progress:
            on_progress(len(rows), sum(float(r["duration_s"]) for r in rows))
    table = parquet.read_parts(parts_uri) if recipes else None
    if table is None:
        table = schemas.table_from_rows([], schemas.MIXTURES)
    order = {s: i for i, s in enumerate(mx.SPLITS)}
    rows = sorted(table.to_pylist(), key=lambda r: (order[r["split"]], r["index"]))
    _write_if_changed(summary.mixtures_uri, schemas.table_from_rows(rows, schemas.MIXTURES))
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


def _write_if_changed(uri: str, table: pa.Table) -> None:
    """Write a Parquet file unless ``uri`` already holds exactly these bytes (a re-run is a no-op)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    if storage.is_file(uri) and storage.read_bytes(uri) == data:
        return
    storage.write_bytes(uri, data)
