"""Streaming one file in bounded memory: the reader (decode, downmix, measure, resample to the model's rate),
the writer (resample to the output rate, clip, write exactly the output's length), the emotion tagger's feed,
and the output file as soundfile's callbacks see it. Used by :func:`batchsep.pipeline.enhance.file.enhance_file`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf

from batchsep.dsp.resample import resample_stream
from batchsep.io import audio
from batchsep.pipeline.enhance.tag import TAG_SR

MODEL_SR = 16000
CLIP_LEVEL = 0.999


class CallbackFile:
    """The output file as soundfile's C callbacks see it: they cannot pass an exception on (cffi prints it,
    "Exception ignored from cffi callback", and soundfile then fails ``assert written == len(data)``), so
    an OSError becomes a short write (0 bytes) or position -1, which the encoder reports as it may. The
    :class:`~batchsep.io.storage.WriteGuard` underneath keeps the OSError, and the atomic writer raises it
    (a StorageError naming the output) when the ``with`` block ends, publishing nothing."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, data: bytes) -> int:
        try:
            return int(self._f.write(data))
        except OSError:
            return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return int(self._f.seek(offset, whence))
        except OSError:
            return -1

    def tell(self) -> int:
        try:
            return int(self._f.tell())
        except OSError:
            return -1


class Reader:
    """Streams a decoded file as mono blocks at the model's rate (16 kHz), measuring what it reads.

    The downmix is polarity-aligned: once a block has signal on the first channel, each other channel
    whose correlation with it there is below -0.5 (normalised) is inverted from then on (``inverted``),
    so that an out-of-phase pair does not cancel. ``keep_channels``: blocks ``[n, C]``, not downmixed.
    """

    def __init__(
        self,
        f: audio.AudioStream,
        block_frames: int,
        model_sr: int = MODEL_SR,
        *,
        keep_channels: bool = False,
    ) -> None:
        self.f, self.block_frames = f, block_frames
        self.frames = self.clipped = self.over = self.nonzero = 0
        self.seconds = 0.0
        self.energy = self.mono_energy = 0.0  # mean channel energy, and the downmix's
        self.keep = keep_channels and f.channels > 1
        self.polarity: np.ndarray | None = None
        self.inverted: list[int] = []
        sr = f.samplerate
        width = f.channels if self.keep else 1
        self.resampler = resample_stream(sr, model_sr, width)

    def _downmix(self, b: np.ndarray) -> np.ndarray:
        if self.polarity is None:
            ref = b[:, 0].astype(np.float64)
            e0 = float(np.dot(ref, ref))
            if e0 > 0:
                corr = ref @ b.astype(np.float64)
                energies = np.einsum("ij,ij->j", b, b, dtype=np.float64)
                self.polarity = np.where(corr < -0.5 * np.sqrt(e0 * energies), -1.0, 1.0).astype(
                    np.float32
                )
                self.inverted = [int(c) for c in np.flatnonzero(self.polarity < 0)]
        return (b * self.polarity).mean(axis=1) if self.polarity is not None else b.mean(axis=1)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Blocks via :func:`audio.read_blocks` (readable decode errors, exact first NaN/Inf frame)."""
        t = time.perf_counter()
        for b in audio.read_blocks(self.f, self.block_frames):
            last = b.shape[0] < self.block_frames
            self.frames += b.shape[0]
            self.clipped += int(np.count_nonzero(np.abs(b) >= CLIP_LEVEL))
            self.over += int(np.count_nonzero(np.abs(b) > 1.0))  # float data only
            self.nonzero += int(np.count_nonzero(b))
            mono = self._downmix(b) if b.shape[1] > 1 else b[:, 0]
            if b.shape[1] > 1:
                self.energy += float(np.einsum("ij,ij->", b, b, dtype=np.float64)) / b.shape[1]
                self.mono_energy += float(np.dot(mono.astype(np.float64), mono))
            if self.keep:
                mono = b
            if self.resampler is not None:
                mono = self.resampler.resample_chunk(mono, last=last)
            self.seconds += time.perf_counter() - t
            if mono.size:
                yield mono
            if last:
                return
            t = time.perf_counter()
        if self.resampler is not None:  # the stream ended on a block boundary: flush the resampler
            empty = np.zeros((0, self.f.channels) if self.keep else 0, np.float32)
            mono = self.resampler.resample_chunk(empty, last=True)
            self.seconds += time.perf_counter() - t
            if mono.size:
                yield mono


class Writer:
    """Resamples pieces at the model's rate (16 kHz) to the output rate and writes exactly ``n_out``
    samples (or nothing).

    Integer formats (FLAC) clip samples outside [-1, 1]; ``clipped`` counts them (float WAV keeps them).
    """

    def __init__(
        self,
        f: sf.SoundFile | None,
        out_sr: int,
        n_out: int,
        fmt: str,
        model_sr: int = MODEL_SR,
        channels: int = 1,
    ) -> None:
        self.f, self.n_out, self.fmt, self.written = f, n_out, fmt, 0
        self.channels = channels
        self.clips, self.clipped = audio.clips_on_write(fmt), 0
        self.resampler = resample_stream(model_sr, out_sr, channels)

    def _empty(self, n: int = 0) -> np.ndarray:
        return np.zeros((n, self.channels) if self.channels > 1 else n, np.float32)

    def write(self, y: np.ndarray, *, last: bool = False) -> None:
        if self.f is None:
            return
        if self.resampler is not None:
            y = self.resampler.resample_chunk(y, last=last)
        y = y[: max(0, self.n_out - self.written)]
        if self.clips:
            y, n = audio.clip_to_full_scale(y)
            self.clipped += n
        self.f.write(y)
        self.written += y.shape[0]

    def close(self) -> None:
        self.write(self._empty(), last=True)
        if self.f is not None and self.written < self.n_out:  # resampler rounding: pad the end
            self.f.write(self._empty(self.n_out - self.written))


class TagFeed:
    """Feeds the emotion tagger its 16 kHz from pieces at the model's rate."""

    def __init__(self, tags: Any, model_sr: int) -> None:
        self.tags = tags
        self.rs = resample_stream(model_sr, TAG_SR)

    def feed(self, y: np.ndarray) -> None:
        self.tags.feed(y if self.rs is None else self.rs.resample_chunk(y))

    def close(self) -> None:
        if self.rs is not None:
            self.tags.feed(self.rs.resample_chunk(np.zeros(0, np.float32), last=True))

    def result(self) -> Any:
        return self.tags.result()
