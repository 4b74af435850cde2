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
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from batchsep.config import Config, register_config
from batchsep.dsp.masks import psf
from batchsep.dsp.resample import to_rate_mono
from batchsep.dsp.stft import StftConfig, stft
from batchsep.errors import AudioDecodeError, ConfigError, ParameterError, StorageError
from batchsep.io import audio, parquet, schemas, storage
from batchsep.pipeline import jobinfo
from batchsep.pipeline import prepare as prep
from batchsep.pipeline.runner import Runner, SerialRunner

FEATURES_DIR = "features"
FEATURES_VERSION = "1"
"""Bumped whenever the computation of a feature changes (it enters every transform hash)."""
ROW_GROUP_ROWS = 16
FEATURE_COLUMNS = ("noisy_mag", "clean_mag", "noise_mag", "psa_target", "logmel")

ProgressFn = Callable[[int, float], None]


@register_config("stft_features")
@dataclass(frozen=True)
class StftFeatures(Config):
    """STFT magnitude features of a prepare run (defaults: :class:`~batchsep.dsp.StftConfig`'s)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    window: Literal["sqrt_hann", "hann"] = "sqrt_hann"
    noise_mag: bool = True
    psa_target: bool = False

    def __post_init__(self) -> None:
        StftConfig(self.sample_rate, self.n_fft, self.hop_length, self.window)  # validates

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def columns(self) -> list[str]:
        return (
            ["noisy_mag", "clean_mag"]
            + ["noise_mag"] * self.noise_mag
            + ["psa_target"] * self.psa_target
        )

    def n_frames(self, n_samples: int) -> int:
        return 1 + max(n_samples, self.n_fft // 2 + 1) // self.hop_length


@register_config("logmel_features")
@dataclass(frozen=True)
class LogMelFeatures(Config):
    """80-band log-power mel spectrogram (dB) of every file of a scan run (:func:`dsp.mel.log_mel`)."""

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 400
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0

    def __post_init__(self) -> None:
        if self.n_mels < 1 or self.n_fft < 2 or not 1 <= self.hop_length <= self.n_fft:
            raise ParameterError(
                f"n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length}: "
                "need n_mels >= 1, n_fft >= 2, 1 <= hop_length <= n_fft"
            )

    @property
    def n_bins(self) -> int:
        return self.n_mels

    def columns(self) -> list[str]:
        return ["logmel"]

    def n_frames(self, n_samples: int) -> int:
        return 1 + max(n_samples, self.n_fft // 2 + 1) // self.hop_length


FeatureConfig = StftFeatures | LogMelFeatures


def transform_hash(config: FeatureConfig) -> str:
    """Hash of the transform: its parameters and :data:`FEATURES_VERSION`."""
    text = FEATURES_VERSION + config.to_json()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


@dataclass
class FeatureSummary:
    """What a features run produced (counts over all shards of the plan, written now or before)."""

    out_uri: str
    transform_hash: str
    rows_ok: int = 0
    rows_failed: int = 0
    shards: int = 0
    shards_skipped: int = 0
    bytes: int = 0
    hours: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bytes_per_hour(self) -> float:
        return self.bytes / self.hours if self.hours else 0.0


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
    sig = prep.load_mixture(row, max_peak=max_peak)
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
    pq.write_table(
        table,
        out,
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


def _schema_meta(uri: str) -> dict[bytes, bytes]:
    fs, path = storage.filesystem(uri)
    try:
        return pq.read_schema(path, filesystem=fs).metadata or {}
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read Parquet schema of {uri}: {e}") from e


def read_transform(uri: str) -> dict[str, Any]:
    """The transform parameters stored in a feature shard's schema metadata."""
    return json.loads(_schema_meta(uri)[b"batchsep.transform"])


def _input_rows(run_uri: str, config: FeatureConfig) -> tuple[list[dict[str, Any]], float]:
    if isinstance(config, StftFeatures):
        uri = storage.join(run_uri, prep.MIXTURES_NAME)
        if not storage.exists(uri):
            raise StorageError(f"cannot read {uri}: not a prepare run (run `batchsep prepare`)")
        rows = [r for r in prep.read_mixtures(run_uri) if r["status"] == "ok"]
        bad = {r["sample_rate"] for r in rows} - {config.sample_rate}
        if bad:
            raise ConfigError(
                f"mixtures at {sorted(bad)} Hz but sample_rate={config.sample_rate} in the features"
            )
        recipe_uri = storage.join(run_uri, prep.RECIPE_NAME)
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
        return uri in existing and _schema_meta(uri).get(b"batchsep.shard_key") == key.encode()
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
    for _, result in runner.map_unordered(featurize_shard, tasks):
        if on_progress:
            on_progress(result.rows, result.seconds)
    _remove_stale(existing, set(planned))
    _summarise(summary, planned)
    jobinfo.write_job_json(
        run_uri if out_uri == storage.join(run_uri, FEATURES_DIR) else out_uri,
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
        fs, path = storage.filesystem(uri)
        try:
            with fs.open_input_file(path) as f:
                pf = pq.ParquetFile(f)
                meta = pf.schema_arrow.metadata or {}
                n_rows, n_ok = pf.metadata.num_rows, int(meta[b"batchsep.num_ok"])
                summary.bytes += f.size()
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
