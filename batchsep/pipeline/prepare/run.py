"""A prepare run's layout and mixtures table, audio URIs rebased onto where the run is now."""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from batchsep.io import parquet, storage

MIXTURES_NAME = "mixtures.parquet"
SOURCES_NAME = "sources.parquet"
AUDIO_DIR = "mixtures"
PARTS_DIR = "mixtures/_parts"
RECIPE_NAME = "mixtures/_recipe.json"
STREAMS = ("noisy", "clean", "noise")
AUDIO_FORMAT = "flac"
URI_COLUMN = {"noisy": "noisy_uri", "clean": "clean_uri", "noise": "noise_audio_uri"}


def audio_uri(run_or_audio_uri: str, split: str, stream: str, mixture_id: str) -> str:
    return storage.join(run_or_audio_uri, split, stream, f"{mixture_id}.{AUDIO_FORMAT}")


class MixturesTable(NamedTuple):
    """The rows of a prepare run's ``mixtures.parquet`` with their audio URIs under ``root``."""

    rows: list[dict[str, Any]]
    root: str
    """The run's folder now (normalized)."""
    written_root: str | None
    """The folder the run was written to, per its audio URIs; None without audio (recipe-only)."""


def written_root(rows: list[dict[str, Any]]) -> str | None:
    """The folder a run's audio was written to: the most common prefix before the run layout's
    ``/mixtures/<split>/<stream>/<mixture_id>.flac`` among the rows' audio URIs (None if none has it)."""
    roots: Counter[str] = Counter()
    for r in rows:
        for stream, column in URI_COLUMN.items():
            uri = r.get(column)
            tail = f"/{AUDIO_DIR}/{r.get('split')}/{stream}/{r.get('mixture_id')}.{AUDIO_FORMAT}"
            if uri and uri.endswith(tail):
                roots[uri[: -len(tail)]] += 1
    return roots.most_common(1)[0][0] if roots else None


def read_mixtures_table(run_uri: str) -> MixturesTable:
    """Like :func:`read_mixtures`, with the run's current and recorded folders."""
    uri = run_uri if run_uri.endswith(".parquet") else storage.join(run_uri, MIXTURES_NAME)
    rows = parquet.read_table(uri).to_pylist()
    root, old = storage.normalize(storage.parent(uri)), written_root(rows)
    if old is None or old == root:
        return MixturesTable(rows, root, old)
    under = [
        (r, c) for r in rows for c in URI_COLUMN.values() if (r.get(c) or "").startswith(old + "/")
    ]
    rebased = [storage.join(root, r[c][len(old) + 1 :]) for r, c in under]
    if not storage.exists(rebased[0]):  # a lone copy of mixtures.parquet: the audio is where it was
        return MixturesTable(rows, root, old)
    for (r, c), new in zip(under, rebased, strict=True):
        r[c] = new
    return MixturesTable(rows, root, old)


def read_mixtures(run_uri: str) -> list[dict[str, Any]]:
    """The rows of a prepare run's ``mixtures.parquet``, its audio URIs under the run's current location.

    Parameters
    ----------
    run_uri : str
        The prepare run's folder (local, file://, s3://), or its ``mixtures.parquet``.

    Returns
    -------
    list of dict
        One row per mixture. The audio URIs (``noisy_uri``, ``clean_uri``, ``noise_audio_uri``) that lie
        under the folder the run was written to are rebased onto ``run_uri`` when the audio is there, so
        a copied or moved run reads its own files; other URIs (the speech and noise sources) stay as they
        are.

    Raises
    ------
    StorageError
        ``mixtures.parquet`` cannot be read.
    """
    return read_mixtures_table(run_uri).rows
