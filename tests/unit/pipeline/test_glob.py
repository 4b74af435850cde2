"""``--glob``: the listing's glob filter agrees with :func:`fnmatch.fnmatchcase` (``*`` crosses ``/``), in Arrow."""

from __future__ import annotations

import fnmatch
import random

import pyarrow as pa
import pytest

from batchsep.pipeline.scan.globs import glob_mask

NAMES = [
    "a.wav", "sub/a.wav", "sub/deep/b-0001.flac", "1284-000.flac", "x/1284-0003.flac", "[x].wav",
    "a!b.wav", "a]b.wav", "a^b.wav", "a\\b.wav", "é/ü.mp3", "a.b.c", "", "line\nbreak.wav", ".hidden",
]  # fmt: skip
PATTERNS = [
    "*", "*.wav", "*/*-000[0-4].flac", "**/*.flac", "sub/*", "?.wav", "*[!a-z].wav", "[[]x].wav",
    "*[]]*", "a[!]]b.wav", "a[^]b.wav", "a[\\]b.wav", "[", "a[b", "*.[fw]*", "*\n*", "é/*",
]  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_glob_matches_fnmatch(pattern):
    got = glob_mask(pa.array(NAMES), pattern).to_pylist()
    assert got == [fnmatch.fnmatchcase(n, pattern) for n in NAMES]


def test_random_globs_match_fnmatch():
    rng = random.Random(0)
    alphabet = "ab/.-*?[]!^"
    names = ["".join(rng.choice("ab/.-[]!^") for _ in range(rng.randint(0, 8))) for _ in range(200)]
    for _ in range(300):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
        try:
            want = [fnmatch.fnmatchcase(n, pattern) for n in names]
        except Exception:  # a pattern Python's own re refuses (e.g. a bad range): not a glob
            continue
        assert glob_mask(pa.array(names), pattern).to_pylist() == want, pattern


def test_a_pattern_that_is_no_glob_is_a_parameter_error():
    from batchsep.errors import ParameterError

    with pytest.raises(ParameterError, match=r"--glob '\[z-a\]\*' is not a valid pattern"):
        glob_mask(pa.array(NAMES), "[z-a]*")
