"""Held-out checks: the test speakers and noise recordings a model was trained on (issue 19).

The train stage records in a model's ``metrics.json`` (its ``data`` section) the speakers (``speakers``) and
noise recordings (``noise_recordings``: each mixture's ``noise_rel_path`` and, where a second noise was
added, its ``aug_noise2_rel_path``) of the mixtures it was trained on, and the speakers of its validation
split (``valid_speakers``), all from the prepare run's ``mixtures.parquet``: :func:`training_sources`.
:func:`overlap` compares the ``test`` split of a mixtures table with them, so that a dev-test set that is
not held out is caught before it is scored (``bench/zoo.py`` refuses such a set).

The pure functions take mixtures rows (dicts with ``split``, ``status``, ``speaker``, ``noise_rel_path``,
``aug_noise2_rel_path``, ``mixture_id``); :func:`read_mixture_rows` and :func:`overlap` read files.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

SPEAKERS = "speakers"
NOISES = "noise_recordings"
VALID_SPEAKERS = "valid_speakers"
"""``metrics.json`` ``data`` keys: train speakers, train noise recordings, validation speakers."""
NOISE_COLUMNS = ("noise_rel_path", "aug_noise2_rel_path")
MIXTURE_COLUMNS = ("mixture_id", "split", "status", "speaker", *NOISE_COLUMNS)
"""The columns of ``mixtures.parquet`` these checks read (``aug_*``: only in an augmented run)."""


def split_sources(
    rows: Iterable[Mapping[str, Any]], split: str, ids: Collection[str] | None = None
) -> dict[str, list[str]]:
    """Sorted distinct speakers and noise recordings of the ok rows of ``split`` (of ``ids`` only, if given).

    Examples
    --------
    >>> rows = [{"split": "test", "status": "ok", "speaker": "7", "noise_rel_path": "a.wav",
    ...          "aug_noise2_rel_path": "b.wav"},
    ...         {"split": "test", "status": "error", "speaker": "8", "noise_rel_path": "c.wav"}]
    >>> split_sources(rows, "test")
    {'speakers': ['7'], 'noise_recordings': ['a.wav', 'b.wav']}
    """
    speakers: set[str] = set()
    noises: set[str] = set()
    for r in rows:
        if r.get("split") != split or r.get("status") != "ok":
            continue
        if ids is not None and r.get("mixture_id") not in ids:
            continue
        if r.get("speaker"):
            speakers.add(str(r["speaker"]))
        noises.update(str(r[c]) for c in NOISE_COLUMNS if r.get(c))
    return {SPEAKERS: sorted(speakers), NOISES: sorted(noises)}


def training_sources(
    rows: Sequence[Mapping[str, Any]],
    train_ids: Collection[str] | None = None,
    valid_ids: Collection[str] | None = None,
) -> dict[str, list[str]]:
    """The ``metrics.json`` keys of a model trained on the ``train`` rows (``train_ids`` of them, if given)
    and validated on the ``valid`` rows (``valid_ids``): ``speakers``, ``valid_speakers``,
    ``noise_recordings`` (train split only: the second noises included), each a sorted list."""
    train = split_sources(rows, "train", train_ids)
    valid = split_sources(rows, "valid", valid_ids)
    return {SPEAKERS: train[SPEAKERS], VALID_SPEAKERS: valid[SPEAKERS], NOISES: train[NOISES]}


def read_mixture_rows(uri: str) -> list[dict[str, Any]]:
    """The :data:`MIXTURE_COLUMNS` of a ``mixtures.parquet`` (its URI) as rows.

    Raises
    ------
    StorageError
        When the file cannot be read.
    """
    from batchsep.io import parquet

    return parquet.read_columns(uri, MIXTURE_COLUMNS).to_pylist()


def compare(
    data: Mapping[str, Any], rows: Iterable[Mapping[str, Any]], *, split: str = "test"
) -> dict[str, Any]:
    """What of ``split`` of ``rows`` a model whose ``metrics.json`` ``data`` section is ``data`` saw.

    Returns
    -------
    dict
        ``recorded`` (the model records its training speakers and noise recordings; when False the other
        lists are empty and say nothing), ``speakers`` and ``noise_recordings`` (the split's that are in
        the model's training data), ``valid_speakers`` (the split's speakers among its validation
        speakers), ``held_out`` (recorded and all three empty), ``test_speakers``,
        ``n_test_noise_recordings`` and ``split``.

    Examples
    --------
    >>> data = {"speakers": ["1", "2"], "valid_speakers": ["3"], "noise_recordings": ["a.wav"]}
    >>> rows = [{"split": "test", "status": "ok", "speaker": s, "noise_rel_path": n}
    ...         for s, n in (("2", "a.wav"), ("4", "z.wav"))]
    >>> r = compare(data, rows)
    >>> r["speakers"], r["noise_recordings"], r["valid_speakers"], r["held_out"]
    (['2'], ['a.wav'], [], False)
    """
    test = split_sources(rows, split)
    recorded = SPEAKERS in data and NOISES in data
    out: dict[str, Any] = {
        "split": split,
        "recorded": recorded,
        "test_speakers": test[SPEAKERS],
        "n_test_noise_recordings": len(test[NOISES]),
    }
    for key, test_key in ((SPEAKERS, SPEAKERS), (NOISES, NOISES), (VALID_SPEAKERS, SPEAKERS)):
        out[key] = sorted(set(test[test_key]) & set(data.get(key) or ())) if recorded else []
    out["held_out"] = recorded and not (out[SPEAKERS] or out[NOISES] or out[VALID_SPEAKERS])
    return out


def overlap(
    model_uri: str, mixtures_table: str | Iterable[Mapping[str, Any]], *, split: str = "test"
) -> dict[str, Any]:
    """The test speakers and noise recordings of ``mixtures_table`` that model ``model_uri`` was trained on.

    Parameters
    ----------
    model_uri : str
        A checkpoint folder or a shipped name (``default``; resolved as
        :func:`batchsep.io.checkpoint.resolve` does). A model without ``metrics.json`` (a zoo name) or
        whose metrics record no training data gives ``recorded=False``.
    mixtures_table : str or iterable of dict
        A prepare run's ``mixtures.parquet`` (its URI), or its rows.
    split : str
        The split checked (default ``test``).

    Returns
    -------
    dict
        :func:`compare`'s result with ``model``: ``model_uri``.

    Raises
    ------
    StorageError
        When the table or the model's ``metrics.json`` cannot be read.
    """
    from batchsep.io import checkpoint

    metrics = checkpoint.read_metrics(model_uri) or {}
    rows = read_mixture_rows(mixtures_table) if isinstance(mixtures_table, str) else mixtures_table
    return {"model": model_uri, **compare(metrics.get("data") or {}, rows, split=split)}


def _some(values: Sequence[str], n: int = 4) -> str:
    return ", ".join(values[:n]) + (f", … ({len(values)} in all)" if len(values) > n else "")


def describe(result: Mapping[str, Any], label: str) -> str:
    """One readable line on ``result`` (:func:`overlap`) for the test set called ``label``."""
    model = result.get("model", "the model")
    if not result["recorded"]:
        return f"{model} × {label}: not checked ({model} records no training speakers or noises)"
    n_spk, n_noise = len(result["test_speakers"]), result["n_test_noise_recordings"]
    if result["held_out"]:
        return (
            f"{model} × {label}: held out (none of its {n_spk} speakers and {n_noise} noise "
            f"recordings is in {model}'s training or validation data)"
        )
    parts = []
    if result[SPEAKERS]:
        parts.append(f"trained on {len(result[SPEAKERS])} of its {n_spk} speakers "
                     f"({_some(result[SPEAKERS])})")  # fmt: skip
    if result[NOISES]:
        parts.append(f"trained on {len(result[NOISES])} of its {n_noise} noise recordings "
                     f"({_some(result[NOISES])})")  # fmt: skip
    if result[VALID_SPEAKERS]:
        parts.append(f"validated on {len(result[VALID_SPEAKERS])} of its {n_spk} speakers "
                     f"({_some(result[VALID_SPEAKERS])})")  # fmt: skip
    return f"{model} × {label}: NOT held out: {model} was " + "; ".join(parts)
