"""Every Parquet schema of batchsep, defined once.

Each schema carries ``batchsep.schema`` (name) and ``batchsep.schema_version`` in its metadata, so a reader
can tell what a file is. Stages build tables with :func:`table_from_rows`, which enforces column order and
types (a missing optional column becomes null).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1"


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields, metadata={"batchsep.schema": name, "batchsep.schema_version": SCHEMA_VERSION}
    )


STATUS_OK = "ok"
STATUS_ERROR = "error"

MANIFEST = _schema(
    "manifest",
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("sr", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("frames", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("format", pa.string()),
        pa.field("subtype", pa.string()),
        pa.field("peak", pa.float32()),
        pa.field("rms_dbfs", pa.float32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ],
)
"""One row per audio file found by a scan (``status`` is ``ok`` or ``error`` with a readable ``error``)."""


ENHANCE_RESULTS = _schema(
    "enhance_results",
    [
        pa.field("input_uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),
        pa.field("output_uri", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("warning", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("out_sample_rate", pa.int32()),
        pa.field("model_name", pa.string()),
        pa.field("model_sha256", pa.string()),
        pa.field("emotion_model_sha256", pa.string()),
        pa.field("emotion_label", pa.string()),
        pa.field("emotion_probs", pa.map_(pa.string(), pa.float32())),
        pa.field(
            "emotion_segments",
            pa.list_(
                pa.struct(
                    [
                        ("start_s", pa.float64()),
                        ("end_s", pa.float64()),
                        ("label", pa.string()),
                        ("probs", pa.map_(pa.string(), pa.float32())),
                    ]
                )
            ),
        ),
        pa.field("t_decode_s", pa.float64()),
        pa.field("t_model_s", pa.float64()),
        pa.field("t_write_s", pa.float64()),
        pa.field("t_total_s", pa.float64()),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("worker", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("committed_at", pa.timestamp("ms", tz="UTC")),
        pa.field("input_size", pa.int64()),
        pa.field("input_mtime_ns", pa.int64()),
        pa.field("ref_channel", pa.int32()),
    ],
)
"""One row per input file of an enhance (or tag) run; ``results/part-<run_id>-NNNNN.parquet`` (and, from
runs before run ids, ``part-NNNNN.parquet``) are the commit record. ``run_id`` and ``committed_at`` say
which run committed the row and when (the newest row of a file wins); ``input_size`` and
``input_mtime_ns`` identify the input the row was made from (a re-run redoes a file whose input
changed). All four are null in rows written before they existed. ``ref_channel``
(0-based): the input channel a beamformed output is the speech of (``--multichannel beamform``; null
otherwise): ``evaluate`` scores it against that channel of a multichannel reference."""


def table_from_rows(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema``'s columns from a list of dict rows."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


STATUS_SKIPPED = "skipped"

SOURCES = _schema(
    "sources",
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64()),
        pa.field("group", pa.string()),
        pa.field("clip", pa.string()),
        pa.field("split", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ],
)
"""Inputs of ``prepare``: one row per speech/noise file with its speaker or noise class (``group``), its
noise recording (``clip``), its split, and ``status`` ``ok``, ``skipped`` (silent, too short, no
speaker) or ``error`` (unreadable), with the reason in ``error``."""

MIXTURES = _schema(
    "mixtures",
    [
        pa.field("mixture_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("speech_uri", pa.string(), nullable=False),
        pa.field("speech_rel_path", pa.string(), nullable=False),
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("noise_uri", pa.string(), nullable=False),
        pa.field("noise_rel_path", pa.string(), nullable=False),
        pa.field("noise_class", pa.string(), nullable=False),
        pa.field("noise_clip", pa.string(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("snr_db", pa.float64(), nullable=False),
        pa.field("speech_offset", pa.int64(), nullable=False),
        pa.field("noise_offset", pa.int64(), nullable=False),
        pa.field("noise_looped", pa.bool_(), nullable=False),
        pa.field("n_samples", pa.int64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("noise_gain", pa.float64()),
        pa.field("output_gain", pa.float64()),
        pa.field("noisy_uri", pa.string()),
        pa.field("clean_uri", pa.string()),
        pa.field("noise_audio_uri", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ],
)
"""One row per mixture of ``prepare``: the recipe (sources, speaker, noise class and recording, drawn SNR,
offsets in samples at ``sample_rate``, length) and what rendering found (``noise_gain`` applied to the
resampled noise, ``output_gain`` applied to all three signals so that nothing clips, the audio URIs —
null for a recipe-only run — and ``status``/``error``)."""


MIXTURES_AUGMENTED = _schema(
    "mixtures",
    [
        *MIXTURES,
        pa.field("aug_speed", pa.float64()),
        pa.field("aug_pitch_semitones", pa.float64()),
        pa.field("aug_rt60", pa.float64()),
        pa.field("aug_room", pa.list_(pa.float64())),
        pa.field("aug_source", pa.list_(pa.float64())),
        pa.field("aug_mic", pa.list_(pa.float64())),
        pa.field("aug_early_ms", pa.float64()),
        pa.field("aug_max_order", pa.int32()),
        pa.field("aug_telephone", pa.bool_()),
        pa.field("aug_telephone_band", pa.list_(pa.float64())),
        pa.field("aug_level_dbfs", pa.float64()),
        pa.field("aug_noise2_uri", pa.string()),
        pa.field("aug_noise2_rel_path", pa.string()),
        pa.field("aug_noise2_class", pa.string()),
        pa.field("aug_noise2_clip", pa.string()),
        pa.field("aug_noise2_offset", pa.int64()),
        pa.field("aug_noise2_db", pa.float64()),
    ],
)
"""``MIXTURES`` of a ``prepare --augment`` run, plus each mixture's augmentation draws
(:class:`batchsep.corpus.augment.AugmentDraw`; all null in splits that are not augmented): speed factor,
pitch shift (semitones), room (RT60 s, dimensions, source and microphone positions m, early-reflection
window ms, image order cap; null: dry), telephone band (Hz), RMS level (dBFS) and the second noise
(file, class, recording, offset, level relative to the first noise in dB)."""


def _frames_field(name: str, n_bins: int) -> pa.Field:
    return pa.field(name, pa.list_(pa.list_(pa.float32(), n_bins)))


def stft_features_schema(
    *, n_freq: int, noise_mag: bool, psa_target: bool, metadata: dict[str, str] | None = None
) -> pa.Schema:
    """Schema of an STFT feature shard: one row per mixture, magnitudes as ``[n_frames][n_freq]``.

    Feature columns are ``list<fixed_size_list<float32, n_freq>>`` (frames × bins): ``noisy_mag``,
    ``clean_mag``, optionally ``noise_mag`` and ``psa_target`` (the truncated phase-sensitive target
    ``psf(S, X)·|X|``). ``metadata`` (transform parameters and hash) is merged into the schema metadata.
    """
    fields = [
        pa.field("mixture_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("speaker", pa.string()),
        pa.field("noise_class", pa.string()),
        pa.field("noise_clip", pa.string()),
        pa.field("snr_db", pa.float64()),
        pa.field("n_samples", pa.int64()),
        pa.field("n_frames", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        _frames_field("noisy_mag", n_freq),
        _frames_field("clean_mag", n_freq),
    ]
    if noise_mag:
        fields.append(_frames_field("noise_mag", n_freq))
    if psa_target:
        fields.append(_frames_field("psa_target", n_freq))
    return _schema("stft_features", fields).with_metadata(
        {**_base_metadata("stft_features"), **(metadata or {})}
    )


def logmel_features_schema(*, n_mels: int, metadata: dict[str, str] | None = None) -> pa.Schema:
    """Schema of a log-mel feature shard: one row per file, ``logmel`` as ``[n_frames][n_mels]`` dB."""
    fields = [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64()),
        pa.field("n_frames", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        _frames_field("logmel", n_mels),
    ]
    return _schema("logmel_features", fields).with_metadata(
        {**_base_metadata("logmel_features"), **(metadata or {})}
    )


def _base_metadata(name: str) -> dict[str, str]:
    return {"batchsep.schema": name, "batchsep.schema_version": SCHEMA_VERSION}


METRICS_BASE = [
    pa.field("rel_path", pa.string(), nullable=False),
    pa.field("noisy_uri", pa.string()),
    pa.field("enhanced_uri", pa.string()),
    pa.field("clean_uri", pa.string()),
    pa.field("model", pa.string()),
    pa.field("speaker", pa.string()),
    pa.field("noise_class", pa.string()),
    pa.field("split", pa.string()),
    pa.field("mixture_id", pa.string()),
    pa.field("mixture_snr", pa.float64()),
    pa.field("duration_s", pa.float64()),
    pa.field("seconds", pa.float64()),
    pa.field("eval_sr", pa.int32()),
    pa.field("emotion_true", pa.string()),
    pa.field("emotion_pred", pa.string()),
    pa.field("error", pa.string()),
    pa.field("input_size", pa.int64()),
    pa.field("input_mtime_ns", pa.int64()),
]
"""``input_size`` and ``input_mtime_ns``: the unprocessed input as enhance listed it; a later evaluate
reuses the input's DNSMOS scores of a row whose input is unchanged."""


def metrics_table(rows: Sequence[dict[str, Any]], metric_columns: Sequence[str]) -> pa.Table:
    """Per-file metrics (``metrics/part-*.parquet``): the fixed columns above, then ``metric_columns``
    (the caller passes :func:`batchsep.evaluation.metrics.metric_columns`: reference metrics, then
    DNSMOS; float64, or string for ``*_error`` reasons). The metric names come from the caller, so
    ``io`` does not import ``evaluation``."""
    extra = [
        pa.field(k, pa.string() if k.endswith("_error") else pa.float64()) for k in metric_columns
    ]
    return table_from_rows(rows, _schema("metrics", METRICS_BASE + extra))
