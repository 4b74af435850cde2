"""Compressed audio through FFmpeg (PyAV): MP3, AAC/M4A, MP4/MOV/WebM/Matroska audio tracks, Opus, WMA, ...

:class:`AVStream` reads the first audio track of a container as a soundfile-like object (``samplerate``,
``channels``, ``frames``, ``format``, ``subtype``, ``read(frames, dtype="float32", always_2d=True)``), decoding
packet by packet into a small buffer: bounded memory for any length, from any seekable binary file object
(a local file or an S3 object).

``frames`` is what the container declares (its duration times the rate), which a compressed stream may not
match exactly (encoder padding, a missing or wrong duration): ``frames_exact`` is False, and the reader's
count of decoded frames is the length. What FFmpeg's decoders report (corrupt packets skipped, a missing
header) is collected in ``warnings`` instead of printed, and a stream that ends well before its declared
length says so there too.
"""

from __future__ import annotations

import contextlib
from typing import IO, Any

import numpy as np

from batchsep.errors import AudioDecodeError

SHORT_RATIO = 0.9
"""A stream whose decoded length is below this share of its declared length gets a "truncated?" warning."""

MAX_WARNINGS = 3
"""Distinct decoder messages kept per file (the rest are counted)."""

_FORMAT_NAMES = {"mov": "MP4", "matroska": "MATROSKA", "asf": "ASF"}


def available() -> bool:
    """Whether PyAV (FFmpeg) can be imported here."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class AVStream:
    """The first audio track of ``fobj``, decoded to float32 (see the module's docstring).

    Raises AudioDecodeError when FFmpeg cannot open ``fobj`` or it has no audio track.
    """

    frames_exact = False

    def __init__(self, fobj: IO[bytes]) -> None:
        import av
        import av.logging

        self._av = av
        self.warnings: list[str] = []
        self._messages: dict[str, int] = {}
        self._level = av.logging.get_level()
        av.logging.set_level(av.logging.WARNING)  # collected by Capture below, never printed
        self._capture = av.logging.Capture()
        self._capture.__enter__()
        try:
            self._container = av.open(fobj, mode="r")
        except (av.error.FFmpegError, ValueError, OSError) as e:
            self._restore_logging()
            raise AudioDecodeError(
                "not a recognised audio format (corrupt, truncated header, or not audio)"
            ) from e
        try:
            if not self._container.streams.audio:
                raise AudioDecodeError("no audio track (FFmpeg found none in this container)")
            self._stream = self._container.streams.audio[0]
            cc = self._stream.codec_context
            self.samplerate = int(cc.sample_rate or 0)
            self.channels = int(cc.layout.nb_channels if cc.layout else 0) or int(
                getattr(cc, "channels", 0) or 0
            )
            if self.samplerate <= 0 or self.channels <= 0:
                raise AudioDecodeError(f"audio track without a sample rate or channels ({cc.name})")
            name = self._container.format.name.split(",")[0]
            self.format = _FORMAT_NAMES.get(name, name.upper())
            self.subtype = cc.name.upper()
            self.frames = self._declared_frames()
        except BaseException:
            self.close()
            raise
        self._resampler = av.AudioResampler(format="flt", layout=cc.layout, rate=self.samplerate)
        self._packets = self._container.demux(self._stream)
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._decoded = 0
        self._ended = self._flushed = self._finished = False
        self._closed = False

    def _declared_frames(self) -> int:
        s = self._stream
        if s.duration is not None and s.time_base is not None:
            return max(0, round(float(s.duration * s.time_base) * self.samplerate))
        if self._container.duration is not None:
            return max(0, round(self._container.duration / 1_000_000 * self.samplerate))
        return 0

    # -- decoding -----------------------------------------------------------------------------------
    def _note(self, message: str) -> None:
        message = " ".join(message.split())
        if message:
            self._messages[message] = self._messages.get(message, 0) + 1

    def _collect_logs(self) -> None:
        for _level, name, text in self._capture.logs:
            self._note(f"{name}: {text}" if name else text)
        self._capture.logs.clear()

    def _push(self, frames: list[Any]) -> None:
        for frame in frames:
            for out in self._resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1, self.channels)
                if arr.shape[0]:
                    self._buffer.append(np.asarray(arr, dtype=np.float32))
                    self._buffered += arr.shape[0]

    def _fill(self, frames: int) -> None:
        av = self._av
        while not self._ended and self._buffered < frames:
            try:
                packet = next(self._packets)
            except StopIteration:
                self._ended = True
                break
            except av.error.FFmpegError as e:  # the container is cut off or corrupt here: stop
                self._note(f"demuxer: {e}")
                self._ended = True
                break
            try:
                self._push(packet.decode())
            except av.error.FFmpegError as e:  # one corrupt packet: skipped, counted
                self._note(f"corrupt packet skipped ({type(e).__name__})")
        if self._ended and not self._flushed:  # (demux's last, empty packet flushed the decoder)
            self._flushed = True
            with contextlib.suppress(av.error.FFmpegError, ValueError):
                for out in self._resampler.resample(None):
                    arr = out.to_ndarray().reshape(-1, self.channels)
                    if arr.shape[0]:
                        self._buffer.append(np.asarray(arr, dtype=np.float32))
                        self._buffered += arr.shape[0]
        self._collect_logs()

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """Up to ``frames`` decoded frames ``[n, channels]`` (all that are left with ``frames=-1``);
        fewer only at the end of the stream."""
        if dtype != "float32":
            raise ValueError("AVStream reads float32 only")
        if self._closed:
            raise ValueError("read from a closed stream")
        want = frames if frames >= 0 else 1 << 62
        self._fill(want)
        if not self._buffer:
            self._finish()
            return np.zeros((0, self.channels), np.float32)
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        out, rest = data[:want], data[want:]
        self._buffer = [rest] if rest.shape[0] else []
        self._buffered = rest.shape[0]
        self._decoded += out.shape[0]
        if self._ended and not self._buffer:
            self._finish()
        return out if always_2d or self.channels > 1 else out[:, 0]

    def _finish(self) -> None:
        """The stream's warnings, once it is read to its end."""
        if self._finished:
            return
        self._finished = True
        kept = list(self._messages.items())[:MAX_WARNINGS]
        for text, n in kept:
            self.warnings.append(f"decoder: {text}" + (f" (x{n})" if n > 1 else ""))
        more = sum(self._messages.values()) - sum(n for _, n in kept)
        if more:
            self.warnings.append(f"decoder: {more} more messages")
        if self.frames and self._decoded < SHORT_RATIO * self.frames:
            self.warnings.append(
                f"decoded {self._decoded / self.samplerate:.2f} s of the "
                f"{self.frames / self.samplerate:.2f} s the container declares (truncated file?)"
            )

    # -- lifetime -------------------------------------------------------------------------------------
    def _restore_logging(self) -> None:
        with contextlib.suppress(Exception):
            self._capture.__exit__(None, None, None)
        with contextlib.suppress(Exception):
            self._av.logging.set_level(self._level)

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._restore_logging()

    def __enter__(self) -> AVStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
