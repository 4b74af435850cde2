"""Emotion training data: labelled log-mels of a RAVDESS-named corpus, actor-disjoint splits, batches.

An :class:`EmotionCorpus` holds, in memory, one voice-trimmed log-mel spectrogram per utterance
(``[n_mels, T]`` dB, *before* the fixed-length crop/pad and normalisation), its emotion label and its
actor. It is read from

* an audio folder or prefix (:func:`load_audio_corpus`): the features are exactly those the tagger
  computes at inference, ``emotion_features(x) == finish(utterance_log_mel(x))``; or
* a ``batchsep features --kind logmel`` run (:func:`load_logmel_run`): whole-file log-mels from Parquet,
  trimmed here in the mel domain (:func:`trim_frames`, within a frame or two of the waveform trim).

960 RAVDESS utterances take about 25 MB, so the corpus lives in memory (an optional ``.npz`` cache
skips the decoding on a re-run). :class:`~batchsep.training.data.emotion_batches.EmotionBatches` turns a split into training batches
``{"logmel": float32 [B, n_mels, n_frames], "label": int64 [B]}`` with two speaker-level augmentations
(a random position of the utterance in the 128-frame window and a small shift along the mel axis, a
crude vocal-tract-length perturbation) and a deterministic per-``(seed, epoch)`` order; each DDP rank
gets a disjoint share with the same number of batches.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from batchsep.corpus.ravdess import check_speaker_disjoint, parse_ravdess_name
from batchsep.corpus.ravdess import speaker_disjoint_split as _split_names
from batchsep.dsp.mel import EmotionFeatureConfig, fix_frames, log_mel, normalize_utterance
from batchsep.dsp.resample import to_rate_mono
from batchsep.dsp.vad import trim_silence
from batchsep.errors import ParameterError, StorageError
from batchsep.io import audio, parquet, storage

DEFAULT_VALID_ACTORS = (11, 12)
DEFAULT_TEST_ACTORS = (13, 14, 15, 16)


@dataclass
class EmotionCorpus:
    """Labelled utterances: trimmed log-mels ``mels[i]`` ``[n_mels, T_i]``, ``labels``, ``actors``.

    ``labels`` and ``actors`` are int64 ``[n]``; ``rel_paths`` name the files; ``config`` is the
    feature configuration the mels were computed with.
    """

    mels: list[np.ndarray]
    labels: np.ndarray
    actors: np.ndarray
    rel_paths: list[str]
    config: EmotionFeatureConfig

    def __len__(self) -> int:
        return len(self.mels)

    def subset(self, index: Sequence[int] | np.ndarray) -> EmotionCorpus:
        """The items at ``index`` (a new corpus sharing the arrays)."""
        idx = np.asarray(index, dtype=np.int64)
        return EmotionCorpus(
            [self.mels[i] for i in idx], self.labels[idx], self.actors[idx],
            [self.rel_paths[i] for i in idx], self.config,
        )  # fmt: skip

    def split(
        self,
        *,
        valid_actors: Sequence[int] = DEFAULT_VALID_ACTORS,
        test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
    ) -> dict[str, EmotionCorpus]:
        """``{"train", "valid", "test"}`` corpora by actor (no actor in two splits).

        Raises
        ------
        ParameterError
            An actor is both valid and test, or no training actor is left.
        """
        names = np.array(
            _split_names(self.actors.tolist(), valid_actors=valid_actors, test_actors=test_actors)
        )
        check_speaker_disjoint(self.actors.tolist(), names.tolist())
        return {s: self.subset(np.flatnonzero(names == s)) for s in ("train", "valid", "test")}

    def features(self) -> np.ndarray:
        """The models' inputs ``[n, n_mels, n_frames]`` float32: centred, normalised (as the tagger)."""
        if not self.mels:
            return np.zeros((0, self.config.n_mels, self.config.n_frames), np.float32)
        return np.stack([finish(m, self.config) for m in self.mels]).astype(np.float32)


def utterance_log_mel(x: np.ndarray, config: EmotionFeatureConfig) -> np.ndarray:
    """Voice-trimmed log-mel of one utterance, before the fixed-length crop and normalisation.

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,)], float32 mono at ``config.sample_rate``

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_trimmed // hop_length)], float32, dB in ``[-top_db, 0]``
        ``normalize_utterance(fix_frames(m, n_frames))`` equals ``emotion_features(x, config)``.
    """
    c = config
    if c.trim:
        start, end = trim_silence(x, c.sample_rate)
        if end > start:
            x = x[start:end]
    m = log_mel(
        np.ascontiguousarray(x, dtype=np.float32), sample_rate=c.sample_rate, n_mels=c.n_mels,
        n_fft=c.n_fft, hop_length=c.hop_length, fmin=c.fmin, fmax=c.fmax, top_db=c.top_db,
    )  # fmt: skip
    return np.asarray(m, dtype=np.float32)


def finish(
    m: np.ndarray,
    config: EmotionFeatureConfig,
    *,
    mode: str = "centre",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``[n_mels, T]`` → ``[n_mels, n_frames]``: crop/pad (``fix_frames``), then normalise if configured."""
    out = fix_frames(m, config.n_frames, mode=mode, rng=rng)  # type: ignore[arg-type]
    return np.asarray(normalize_utterance(out) if config.normalize else out, dtype=np.float32)


def trim_frames(m: np.ndarray, *, top_db: float = 40.0, margin_db: float = 6.0) -> tuple[int, int]:
    """Frame range ``[a, b)`` from the first to the last active frame of a dB log-mel ``[n_mels, T]``.

    The mel-domain counterpart of :func:`batchsep.dsp.vad.trim_silence` (same rule on the frame level,
    the sum of mel powers): active when above ``max(peak - top_db, min(floor + margin_db, peak - 20))``.
    Returns ``(0, T)`` when no frame is active.
    """
    if m.ndim != 2 or m.shape[1] < 1:
        raise ParameterError(f"m shape={m.shape} must be [n_mels, T] with T >= 1")
    level = 10.0 * np.log10(np.maximum(np.power(10.0, m.astype(np.float64) / 10.0).sum(0), 1e-30))
    peak, floor = float(level.max()), float(np.percentile(level, 10))
    active = np.flatnonzero(level >= max(peak - top_db, min(floor + margin_db, peak - 20.0)))
    return (int(active[0]), int(active[-1]) + 1) if active.size else (0, m.shape[1])


def _labelled(rel_paths: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
    """Positions, labels and actors of the items whose name is a RAVDESS name (others skipped)."""
    keep, labels, actors = [], [], []
    for i, rel in enumerate(rel_paths):
        try:
            info = parse_ravdess_name(rel)
        except ParameterError:
            continue
        keep.append(i)
        labels.append(info.label)
        actors.append(info.actor)
    if not keep:
        raise StorageError("no file named like RAVDESS (MM-VV-EE-II-SS-RR-AA.ext) to train on")
    return keep, labels, actors


def _corpus(
    mels: list[np.ndarray],
    labels: list[int],
    actors: list[int],
    rels: list[str],
    c: EmotionFeatureConfig,
) -> EmotionCorpus:
    return EmotionCorpus(mels, np.asarray(labels, np.int64), np.asarray(actors, np.int64), rels, c)


def load_audio_corpus(
    uri: str, config: EmotionFeatureConfig | None = None, *, cache_uri: str | None = None
) -> EmotionCorpus:
    """Decode every RAVDESS-named audio file under the folder/prefix ``uri`` (see :func:`load_audio_files`)."""
    return load_audio_files(_locate_files(uri), config, cache_uri=cache_uri)


def load_audio_files(
    entries: Sequence[tuple[str, str]],
    config: EmotionFeatureConfig | None = None,
    *,
    cache_uri: str | None = None,
) -> EmotionCorpus:
    """An :class:`EmotionCorpus` of the RAVDESS-named files among ``entries`` ``(uri, rel_path)``.

    Any rate or channel count is converted to ``config.sample_rate`` mono; other names are skipped.
    With ``cache_uri`` (an ``.npz``), a cache written for the same files and config is read instead,
    else it is written.

    Raises
    ------
    StorageError
        A file is unreadable, or no name is a RAVDESS name.
    AudioDecodeError
        A file cannot be decoded.
    """
    c = config or EmotionFeatureConfig()
    keep, labels, actors = _labelled([rel for _, rel in entries])
    rels = [entries[i][1] for i in keep]
    key = json.dumps({"features": c.to_dict(), "files": rels}, sort_keys=True)
    if cache_uri is not None and storage.exists(cache_uri):
        z = np.load(io.BytesIO(storage.read_bytes(cache_uri)))
        if str(z["key"]) == key:
            bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
            flat = z["mels"]
            mels = [flat[:, a:b] for a, b in itertools.pairwise(bounds)]
            return _corpus(mels, labels, actors, rels, c)
    mels = []
    for i in keep:
        decoded = audio.decode(storage.read_bytes(entries[i][0]))
        x = to_rate_mono(decoded.samples, decoded.sample_rate, c.sample_rate)
        mels.append(utterance_log_mel(x, c))
    if cache_uri is not None:
        buf = io.BytesIO()
        lengths = np.array([m.shape[1] for m in mels], np.int64)
        np.savez(buf, key=np.array(key), lengths=lengths, mels=np.concatenate(mels, axis=1))
        storage.write_bytes(cache_uri, buf.getvalue())
    return _corpus(mels, labels, actors, rels, c)


def load_emotion_corpus(
    uri: str, config: EmotionFeatureConfig | None = None, *, cache_uri: str | None = None
) -> EmotionCorpus:
    """An :class:`EmotionCorpus` from whatever ``uri`` is.

    In order: a log-mel features run (``uri/features/all`` or ``uri/all`` with shards:
    :func:`load_logmel_run`); a scan run (``uri/manifest.parquet``: its ``ok`` rows are decoded); an
    audio folder or prefix (:func:`load_audio_corpus`).
    """
    logmel_run, entries = _locate(uri)
    if logmel_run is not None:
        return load_logmel_run(logmel_run, config)
    return load_audio_files(entries, config, cache_uri=cache_uri)


def _locate(uri: str) -> tuple[str | None, list[tuple[str, str]]]:
    """Where :func:`load_emotion_corpus` reads from: ``(log-mel features run, [])``, or ``(None, audio
    entries (uri, rel_path))`` of a scan run's ``ok`` rows or of a folder/prefix."""
    from batchsep.io import parquet
    from batchsep.training.data.features import list_shards

    for candidate in (storage.join(uri, "features"), uri):
        all_uri = storage.join(candidate, "all")
        if storage.exists(all_uri) and list_shards(all_uri):
            return candidate, []
    manifest = storage.join(uri, "manifest.parquet")
    if storage.exists(manifest):
        rows = [r for r in parquet.read_table(manifest).to_pylist() if r["status"] == "ok"]
        return None, [(str(r["uri"]), str(r["rel_path"])) for r in rows]
    return None, _locate_files(uri)


def _locate_files(uri: str) -> list[tuple[str, str]]:
    return [(e.uri, e.rel_path) for e in storage.list_files(uri) if audio.is_audio_name(e.rel_path)]


def check_labelled(uri: str) -> int:
    """How many items :func:`load_emotion_corpus` would train on (RAVDESS names), from names only: a
    quick check before any training worker starts.

    Raises
    ------
    StorageError
        ``uri`` unreadable, or no RAVDESS name in it.
    """

    from batchsep.training.data.features import list_shards

    logmel_run, entries = _locate(uri)
    if logmel_run is None:
        names = [rel for _, rel in entries]
    else:
        names = []
        for shard in list_shards(storage.join(logmel_run, "all")):
            names += [str(r) for r in parquet.read_table(shard.uri, columns=["rel_path"])
                      .column("rel_path").to_pylist()]  # fmt: skip
    return len(_labelled(names)[0])


def load_logmel_run(features_uri: str, config: EmotionFeatureConfig | None = None) -> EmotionCorpus:
    """Read the log-mel shards of a ``batchsep features --kind logmel`` run (``<uri>/all/part-*``).

    Each whole-file log-mel is trimmed with :func:`trim_frames` (when ``config.trim``). The run's
    transform (rate, mels, FFT, hop, band, top_db) replaces those fields of ``config``.

    Raises
    ------
    StorageError
        No log-mel shards, or no RAVDESS-named row.
    """

    from batchsep.training.data.features import frames_column, list_shards

    shards = list_shards(storage.join(features_uri, "all"))
    if not shards:
        raise StorageError(f"no log-mel shards under {features_uri}/all (run `batchsep features`)")
    c = config or EmotionFeatureConfig()
    mels_all: list[np.ndarray] = []
    rels_all: list[str] = []
    transform: dict[str, object] = {}
    for s in shards:
        table = parquet.read_table(s.uri, columns=["rel_path", "status", "logmel"])
        transform = json.loads((table.schema.metadata or {}).get(b"batchsep.transform", b"{}"))
        ok = [st == "ok" for st in table.column("status").to_pylist()]
        frames = frames_column(table.column("logmel"))
        for rel, good, f in zip(table.column("rel_path").to_pylist(), ok, frames):
            if good and f is not None:
                rels_all.append(str(rel))
                mels_all.append(np.ascontiguousarray(f.T, dtype=np.float32))
    if transform.get("type") not in (None, "logmel_features"):
        raise StorageError(f"{features_uri} holds {transform.get('type')!r} features, not log-mel")
    fields = ("sample_rate", "n_mels", "n_fft", "hop_length", "fmin", "fmax", "top_db")
    c = EmotionFeatureConfig.from_dict(
        {**c.to_dict(), **{k: transform[k] for k in fields if k in transform}}
    )
    keep, labels, actors = _labelled(rels_all)
    mels = []
    for i in keep:
        a, b = trim_frames(mels_all[i]) if c.trim else (0, mels_all[i].shape[1])
        mels.append(mels_all[i][:, a:b])
    return _corpus(mels, labels, actors, [rels_all[i] for i in keep], c)
