"""``--glob``: which relative paths of a listing match a glob pattern, as an Arrow filter (millions of paths,
no Python object per path)."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from batchsep.errors import ParameterError


def glob_mask(rel_paths: pa.ChunkedArray | pa.Array, pattern: str) -> pa.Array:
    """Which relative paths match the glob ``pattern`` (``fnmatch``: ``*`` also crosses ``/``).

    Raises ParameterError for a pattern that is no glob (e.g. a reversed range ``[z-a]``)."""
    try:
        return pc.match_substring_regex(rel_paths, glob_regex(pattern))
    except pa.ArrowInvalid as e:
        raise ParameterError(f"--glob {pattern!r} is not a valid pattern: {e}") from e


def glob_regex(pattern: str) -> str:
    """``pattern`` (``*``, ``?``, ``[seq]``, ``[!seq]``, as :func:`fnmatch.fnmatchcase`) as an anchored
    regular expression that Arrow's RE2 accepts: :func:`fnmatch.translate` writes atomic groups ``(?>``
    for a second ``*`` since Python 3.11, which RE2 refuses."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + (i < n and pattern[i] == "!")
            j += j < n and pattern[j] == "]"  # a leading ] is a member
            j = pattern.find("]", j)
            if j < 0:  # no closing bracket: a literal [
                out.append(r"\[")
                continue
            body = pattern[i:j].replace("\\", r"\\")
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(c))
    return "(?s)^" + "".join(out) + "$"
