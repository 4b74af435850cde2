"""One feature shard: computing its rows' features, writing it as Parquet, reading its metadata."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pyarrow as pa
import torch

from batchsep.dsp.masks import psf
from batchsep.dsp.resample import to_rate_mono
from batchsep.dsp.stft import stft
from batchsep.errors import AudioDecodeError, ParameterError, StorageError
from batchsep.io import audio, parquet, schemas, storage
from batchsep.pipeline.features.options import (
    FEATURES_VERSION,
    FeatureConfig,
    LogMelFeatures,
    StftFeatures,
    transform_hash,
)
from batchsep.pipeline.prepare import render as prepare_render

ROW_GROUP_ROWS = 16
FEATURE_COLUMNS = ("noisy_mag", "clean_mag", "noise_mag", "psa_target", "logmel")


@dataclass(frozen=True)
class FeatureTask:
    """One shard to compute: its rows (mixture rows or manifest rows), where it goes, its key."""

    uri: str
    split: str
    rows: list[dict[str, Any]]
    config: FeatureConfig
    key: str
    compression: str = "zstd"
    max_peak: float = 0.99


@dataclass
class ShardResult:
    uri: str
    rows: int
    seconds: float


def _stft_row(
    row: dict[str, Any],
    config: StftFeatures,
    max_peak: float,
    outs: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """[T, F] magnitudes of noisy, clean (, noise) (, PSA target) of one mixture, written into ``outs``
    (views of the shard's buffers, so no copy is made) when their shapes fit.

    The STFT is linear and ``noisy == clean + noise`` exactly, so ``X = S + N`` (two FFTs, not three);
    it equals the STFT of the noisy signal up to float32 rounding.
    """
    sig = prepare_render.load_mixture(row, max_peak=max_peak)
    x = torch.from_numpy(np.stack([sig["clean"], sig["noise"]]))
    SN = stft(x, n_fft=config.n_fft, hop_length=config.hop_length, window=config.window)
    X = SN[0] + SN[1]
    shape = (X.shape[-1], config.n_bins)
    if outs is None or any(o.shape != shape for o in outs):
        outs = [np.empty(shape, np.float32) for _ in config.columns()]
    views = [torch.from_numpy(o).T for o in outs]  # [F, T] views of the [T, F] outputs
    for spec, view in zip([X, SN[0], SN[1]][: 2 + config.noise_mag], views):
        torch.hypot(spec.real, spec.imag, out=view)
    if config.psa_target:
        torch.mul(psf(SN[0], X), views[0], out=views[-1])
    return outs


def _logmel_row(row: dict[str, Any], config: LogMelFeatures) -> list[np.ndarray]:
    from batchsep.dsp.mel import log_mel

    decoded = audio.decode(storage.read_bytes(row["uri"]))
    x = to_rate_mono(decoded.samples, decoded.sample_rate, config.sample_rate)
    m = log_mel(
        x, sample_rate=config.sample_rate, n_mels=config.n_mels, n_fft=config.n_fft,
        hop_length=config.hop_length, fmin=config.fmin, fmax=config.fmax, top_db=config.top_db,
    )  # fmt: skip
    return [np.ascontiguousarray(np.asarray(m, dtype=np.float32).T)]


def _frames_array(
    items: list[np.ndarray | None], n_bins: int, *, flat: np.ndarray | None = None
) -> pa.Array:
    """``list<fixed_size_list<float32, n_bins>>`` from per-row [T, n_bins] arrays (None → null).

    ``flat``: the rows' values already laid out end to end, in order (then nothing is copied).
    """
    lengths = [0 if a is None else a.shape[0] for a in items]
    offsets = np.zeros(len(items) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    if flat is None:
        present = [a.reshape(-1) for a in items if a is not None]
        flat = np.concatenate(present) if present else np.zeros(0)
    flat = np.ascontiguousarray(flat, np.float32)
    floats = pa.FloatArray.from_buffers(pa.float32(), flat.size, [None, pa.py_buffer(flat)])
    values = pa.FixedSizeListArray.from_arrays(floats, n_bins)  # no copy, no scan (pa.array scans)
    mask = pa.array([a is None for a in items])
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def shard_bytes(table: pa.Table, *, compression: str = "zstd") -> bytes:
    """Parquet bytes of a feature shard (see :func:`write_shard`)."""
    buf = io.BytesIO()
    write_shard(table, buf, compression=compression)
    return buf.getvalue()


def write_shard(table: pa.Table, out: IO[bytes], *, compression: str = "zstd") -> None:
    """Write a feature shard as Parquet to ``out``: dictionaries and statistics only on the scalar
    columns, byte-stream-split floats when compressed (much better ratio on magnitudes), small row
    groups."""
    feats = [n for n in table.column_names if n in FEATURE_COLUMNS]
    scalars = [n for n in table.column_names if n not in FEATURE_COLUMNS]
    parquet.write_to(
        out,
        table,
        compression=compression,
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=[n for n in scalars if pa.types.is_string(table.schema.field(n).type)],
        write_statistics=scalars,
        use_byte_stream_split=[f"{n}.list.element.list.element" for n in feats]
        if compression != "none"
        else False,
    )


def featurize_shard(task: FeatureTask) -> ShardResult:
    """Compute one shard's features and commit it atomically (the unit of work of a Ray task)."""
    config = task.config
    cols = config.columns()
    feats: dict[str, list[np.ndarray | None]] = {c: [] for c in cols}
    meta_rows: list[dict[str, Any]] = []
    seconds = 0.0
    bufs: dict[str, np.ndarray] = {}
    in_place = True  # every row written into its slice of `bufs` (then they are the column values)
    if isinstance(config, StftFeatures):  # frame counts are known: one buffer per column
        starts = np.cumsum([0] + [config.n_frames(int(r["n_samples"])) for r in task.rows])
        bufs = {c: np.empty((int(starts[-1]), config.n_bins), np.float32) for c in cols}
    for i, row in enumerate(task.rows):
        meta = {k: row.get(k) for k in _META_KEYS} | {"split": task.split, "status": "ok"}
        try:
            if isinstance(config, StftFeatures):
                outs = [bufs[c][starts[i] : starts[i + 1]] for c in cols]
                arrays: list[np.ndarray | None] = list(_stft_row(row, config, task.max_peak, outs))
                in_place = in_place and arrays[0] is outs[0]
            else:
                arrays = list(_logmel_row(row, config))
        except (StorageError, AudioDecodeError, ParameterError) as e:
            arrays, in_place = [None] * len(cols), False
            meta.update(status=schemas.STATUS_ERROR, error=str(e))
        else:
            seconds += float(row.get("duration_s") or 0.0)
        first = arrays[0]
        meta["n_frames"] = None if first is None else first.shape[0]
        meta_rows.append(meta)
        for c, a in zip(cols, arrays):
            feats[c].append(a)
    n_ok = sum(r["status"] == "ok" for r in meta_rows)
    schema = feature_schema(
        config, {"batchsep.split": task.split, "batchsep.shard_key": task.key,
                 "batchsep.num_rows": str(len(meta_rows)), "batchsep.num_ok": str(n_ok),
                 "batchsep.seconds_ok": repr(seconds)},
    )  # fmt: skip
    arrays_out = []
    for f in schema:
        if f.name in feats:
            flat = bufs[f.name].reshape(-1) if in_place and f.name in bufs else None
            arrays_out.append(_frames_array(feats[f.name], config.n_bins, flat=flat))
        else:
            arrays_out.append(pa.array([r.get(f.name) for r in meta_rows], f.type))
    table = pa.Table.from_arrays(arrays_out, schema=schema)
    # straight to the file: no copy of the shard in memory
    with storage.atomic_writer(task.uri) as f:
        write_shard(table, f, compression=task.compression)
    return ShardResult(task.uri, len(meta_rows), seconds)


_META_KEYS = (
    "mixture_id", "index", "speaker", "noise_class", "noise_clip", "snr_db", "n_samples",
    "uri", "rel_path", "duration_s", "error",
)  # fmt: skip


def feature_schema(config: FeatureConfig, extra: dict[str, str] | None = None) -> pa.Schema:
    """The shard schema of ``config``, with the transform and its hash in the metadata."""
    meta = {
        "batchsep.transform": config.to_json(),
        "batchsep.transform_hash": transform_hash(config),
        "batchsep.features_version": FEATURES_VERSION,
        **(extra or {}),
    }
    if isinstance(config, StftFeatures):
        return schemas.stft_features_schema(
            n_freq=config.n_bins, noise_mag=config.noise_mag, psa_target=config.psa_target,
            metadata=meta,
        )  # fmt: skip
    return schemas.logmel_features_schema(n_mels=config.n_mels, metadata=meta)


def schema_meta(uri: str) -> dict[bytes, bytes]:
    try:
        return parquet.read_schema(uri).metadata or {}
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read Parquet schema of {uri}: {e}") from e


def read_transform(uri: str) -> dict[str, Any]:
    """The transform parameters stored in a feature shard's schema metadata."""
    return json.loads(schema_meta(uri)[b"batchsep.transform"])
