"""Rendering mixtures: a recipe's signals from its sources, one shard of files, or one row's signals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from batchsep.corpus import render as rd
from batchsep.corpus.augment import AugmentDraw, render_augmented
from batchsep.corpus.mixtures import Recipe
from batchsep.dsp.resample import to_rate_mono
from batchsep.errors import AudioDecodeError, ParameterError, StorageError
from batchsep.io import audio, parquet, schemas, storage
from batchsep.pipeline.prepare.run import URI_COLUMN, audio_uri


@dataclass(frozen=True)
class RenderTask:
    """One shard of recipes to render; ``audio_uri`` None renders without writing audio."""

    part_uri: str
    audio_uri: str | None
    recipes: list[Recipe]
    max_peak: float
    draws: list[AugmentDraw | None] | None = None
    """Augmentation draws of the recipes (None: a run without augmentation)."""


def _read_source(uri: str, sample_rate: int) -> np.ndarray:
    decoded = audio.decode(storage.read_bytes(uri))
    return to_rate_mono(decoded.samples, decoded.sample_rate, sample_rate)


def render_recipe(
    recipe: Recipe,
    *,
    max_peak: float = 0.99,
    cache: dict[str, np.ndarray] | None = None,
    draw: AugmentDraw | None = None,
) -> rd.RenderedMixture:
    """Read the recipe's sources and render it, with its augmentation ``draw`` if any
    (raises StorageError/AudioDecodeError/ParameterError)."""
    cache = {} if cache is None else cache
    arrays = []
    uris = [recipe.speech_uri, recipe.noise_uri]
    if draw is not None and draw.noise2_uri is not None:
        uris.append(draw.noise2_uri)
    for uri in uris:
        if uri not in cache:
            if len(cache) >= 16:
                cache.pop(next(iter(cache)))
            cache[uri] = _read_source(uri, recipe.sample_rate)
        arrays.append(cache[uri])
    if draw is not None:
        second = arrays[2] if len(arrays) > 2 else None
        return render_augmented(arrays[0], arrays[1], second, recipe, draw, max_peak=max_peak)
    return rd.render(arrays[0], arrays[1], recipe, max_peak=max_peak)


def render_shard(task: RenderTask) -> list[dict[str, Any]]:
    """Render one shard (a Ray task): write missing audio files, then commit the shard's part."""
    rows: list[dict[str, Any]] = []
    cache: dict[str, np.ndarray] = {}
    draws = task.draws if task.draws is not None else [None] * len(task.recipes)
    for recipe, draw in zip(task.recipes, draws, strict=True):
        row = {**recipe.to_row(), "status": schemas.STATUS_OK}
        if draw is not None:
            row.update(draw.to_row())
        try:
            out = render_recipe(recipe, max_peak=task.max_peak, cache=cache, draw=draw)
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
                row[URI_COLUMN[stream]] = uri
        rows.append(row)
    schema = schemas.MIXTURES if task.draws is None else schemas.MIXTURES_AUGMENTED
    parquet.write_table(task.part_uri, schemas.table_from_rows(rows, schema))
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
    draw = AugmentDraw.from_row(row)
    return render_recipe(Recipe.from_row(row), max_peak=max_peak, draw=draw).streams()
