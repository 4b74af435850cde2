"""Where the audio data of an uncompressed container starts and how long its header says it is.

libsndfile decodes a WAVE, AIFF, Wave64 or Sun/NeXT AU file that was cut off (a failed copy, a full disk) as a
shorter, valid-looking file: it quietly trusts the bytes present over the header's declared length. These
parsers read only chunk headers, so the caller can compare the declared data size with the bytes present and
refuse such a file (:func:`batchsep.io.audio.truncation_reason`). Compressed formats (FLAC, Ogg, ...) are not
parsed: libsndfile reports their truncation as a decode error.

Every parser takes a seekable binary file object and its size in bytes, may move its position, and returns
a :class:`DataExtent`, or None when the stream is not its container, declares no definite data size (a
streaming writer's placeholder), or its headers are unreadable.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import IO, NamedTuple

_UNKNOWN_SIZE = 0xFFFFFFFF  # size field of streamed (unknown length) and RF64 data chunks
_MAX_CHUNKS = 4096


class DataExtent(NamedTuple):
    """Declared and present audio data of a container, in bytes; ``byte_rate`` 0 when unknown."""

    declared: int
    present: int
    byte_rate: int
    block_align: int


def _wave(fobj: IO[bytes], size: int) -> DataExtent | None:
    """RIFF/RIFX/RF64/BW64 WAVE: walk the chunk list to the ``data`` chunk (``ds64`` for 64-bit sizes)."""
    fobj.seek(0)
    head = fobj.read(12)
    if (
        len(head) < 12
        or head[8:12] != b"WAVE"
        or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64")
    ):
        return None
    endian = ">" if head[:4] == b"RIFX" else "<"
    ds64_data: int | None = None
    byte_rate = block_align = 0
    pos = 12
    for _ in range(_MAX_CHUNKS):
        fobj.seek(pos)
        hdr = fobj.read(8)
        if len(hdr) < 8:
            return None
        cid, csize = hdr[:4], struct.unpack(endian + "I", hdr[4:])[0]
        body = pos + 8
        if cid == b"data":
            if csize == _UNKNOWN_SIZE:
                if ds64_data is None:
                    return None
                csize = ds64_data
            if csize == 0:
                return None  # written by a streaming encoder that never filled in the size
            return DataExtent(csize, max(0, size - body), byte_rate, block_align)
        if cid == b"fmt ":
            fmt = fobj.read(14)
            if len(fmt) == 14:
                _, _, _, byte_rate, block_align = struct.unpack(endian + "HHIIH", fmt)
        elif cid == b"ds64":
            ds = fobj.read(16)
            if len(ds) == 16:
                ds64_data = struct.unpack("<Q", ds[8:])[0]
        pos = body + csize + (csize & 1)
        if pos >= size:
            return None
    return None


# Wave64 ids are GUIDs: a four-character code and a 12-byte tail, one tail for every id but ``riff``.
_W64_TAIL = bytes.fromhex("f3acd3118cd100c04f8edb8a")
_W64_RIFF = b"riff" + bytes.fromhex("2e91cf11a5d628db04c10000")
_W64_WAVE = b"wave" + _W64_TAIL


def _w64(fobj: IO[bytes], size: int) -> DataExtent | None:
    """Sony Wave64: 16-byte GUID ids, 64-bit sizes that include the 24-byte chunk header, 8-byte padding."""
    fobj.seek(0)
    head = fobj.read(40)
    if len(head) < 40 or head[:16] != _W64_RIFF or head[24:40] != _W64_WAVE:
        return None
    byte_rate = block_align = 0
    pos = 40
    for _ in range(_MAX_CHUNKS):
        fobj.seek(pos)
        hdr = fobj.read(24)
        if len(hdr) < 24:
            return None
        cid, csize = hdr[:4], struct.unpack("<Q", hdr[16:])[0]
        body = pos + 24
        if csize < 24 or hdr[4:16] != _W64_TAIL:
            return None
        if cid == b"data":
            return DataExtent(csize - 24, max(0, size - body), byte_rate, block_align)
        if cid == b"fmt ":
            fmt = fobj.read(14)
            if len(fmt) == 14:
                _, _, _, byte_rate, block_align = struct.unpack("<HHIIH", fmt)
        pos += csize + (-csize % 8)
        if pos >= size:
            return None
    return None


def _extended_to_float(b: bytes) -> float:
    """An 80-bit IEEE 754 extended float (AIFF's sample rate), big-endian."""
    exp_sign, mantissa = struct.unpack(">HQ", b)
    exponent = exp_sign & 0x7FFF
    if exponent == 0 and mantissa == 0:
        return 0.0
    value = math.ldexp(mantissa, exponent - 16383 - 63)
    return -value if exp_sign & 0x8000 else value


# AIFF-C compression types whose samples are stored uncompressed, and their bytes per sample
# (None: from the COMM chunk's sample size).
_AIFC_PLAIN = {b"NONE": None, b"sowt": None, b"twos": None, b"raw ": None, b"in24": 3, b"in32": 4,
               b"fl32": 4, b"FL32": 4, b"fl64": 8, b"FL64": 8, b"ulaw": 1, b"ULAW": 1, b"alaw": 1,
               b"ALAW": 1}  # fmt: skip


def _aiff(fobj: IO[bytes], size: int) -> DataExtent | None:
    """AIFF/AIFF-C: big-endian chunks; ``COMM`` gives the frame layout, ``SSND`` holds the samples."""
    fobj.seek(0)
    head = fobj.read(12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    block_align = byte_rate = 0
    pos = 12
    for _ in range(_MAX_CHUNKS):
        fobj.seek(pos)
        hdr = fobj.read(8)
        if len(hdr) < 8:
            return None
        cid, csize = hdr[:4], struct.unpack(">I", hdr[4:])[0]
        body = pos + 8
        if cid == b"COMM":
            comm = fobj.read(22)
            if len(comm) < 18:
                return None
            channels, _, bits = struct.unpack(">hIh", comm[:8])
            rate = _extended_to_float(comm[8:18])
            width = math.ceil(bits / 8)
            if head[8:12] == b"AIFC":
                if len(comm) < 22 or comm[18:22] not in _AIFC_PLAIN:
                    return None  # a compressed AIFF-C: sizes are not frames x width
                width = _AIFC_PLAIN[comm[18:22]] or width
            block_align = channels * width
            byte_rate = round(rate * block_align) if rate > 0 else 0
        elif cid == b"SSND":
            offset = fobj.read(4)
            if len(offset) < 4 or csize < 8:
                return None
            start = body + 8 + struct.unpack(">I", offset)[0]
            declared = csize - 8 - struct.unpack(">I", offset)[0]
            if declared <= 0 or not block_align:
                return None
            return DataExtent(declared, max(0, size - start), byte_rate, block_align)
        pos = body + csize + (csize & 1)
        if pos >= size:
            return None
    return None


# Sun/NeXT AU encodings with fixed bytes per sample.
_AU_WIDTH = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def _au(fobj: IO[bytes], size: int) -> DataExtent | None:
    """Sun/NeXT AU: a 24-byte header (big-endian ``.snd``, or little-endian ``dns.``)."""
    fobj.seek(0)
    head = fobj.read(24)
    if len(head) < 24 or head[:4] not in (b".snd", b"dns."):
        return None
    endian = ">" if head[:4] == b".snd" else "<"
    offset, data_size, encoding, rate, channels = struct.unpack(endian + "5I", head[4:])
    width = _AU_WIDTH.get(encoding)
    if data_size in (0, _UNKNOWN_SIZE) or width is None or channels == 0:
        return None
    block_align = channels * width
    return DataExtent(data_size, max(0, size - offset), rate * block_align, block_align)


PARSERS: tuple[Callable[[IO[bytes], int], DataExtent | None], ...] = (_wave, _w64, _aiff, _au)
"""Container parsers, tried in order; each recognises its own magic bytes."""


def data_extent(fobj: IO[bytes], size: int) -> DataExtent | None:
    """The declared and present audio data of ``fobj`` (``size`` bytes), or None if unknown.

    Moves the position of ``fobj``; the caller restores it.
    """
    for parse in PARSERS:
        extent = parse(fobj, size)
        if extent is not None:
            return extent
    return None
