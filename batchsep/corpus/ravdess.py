"""RAVDESS file names and speaker-independent (actor-disjoint) splits.

A RAVDESS file is named by seven two-digit fields, ``MM-VV-EE-II-SS-RR-AA`` + extension
(Livingstone & Russo, PLoS ONE 2018):

=====  ==============  ==========================================================================
field  name            values
=====  ==============  ==========================================================================
MM     modality        01 audio-video, 02 video-only, 03 audio-only
VV     vocal channel   01 speech, 02 song
EE     emotion         01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
                       08 surprised (song has only 01-06)
II     intensity       01 normal, 02 strong (neutral has no strong intensity)
SS     statement       01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
RR     repetition      01, 02
AA     actor           01-24; odd numbers are male, even numbers female
=====  ==============  ==========================================================================

Example: ``03-01-06-01-02-01-12.flac`` is audio-only speech, fearful, normal intensity, "Dogs", first
repetition, actor 12 (female). Emotion ``i`` has class index ``i - 1`` in
:data:`RAVDESS_EMOTIONS` (the same order as ``batchsep.models.emotion.EMOTIONS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from batchsep.errors import ParameterError

RAVDESS_EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)  # fmt: skip
N_ACTORS = 24
SPLITS = ("train", "valid", "test")

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_RANGES = {  # field -> (low, high) inclusive
    "modality": (1, 3),
    "vocal_channel": (1, 2),
    "emotion_id": (1, 8),
    "intensity": (1, 2),
    "statement": (1, 2),
    "repetition": (1, 2),
    "actor": (1, N_ACTORS),
}


@dataclass(frozen=True)
class RavdessInfo:
    """The fields of one RAVDESS file name (codes as ints; see the module docstring)."""

    modality: int
    vocal_channel: int
    emotion: str
    emotion_id: int
    intensity: int
    statement: int
    repetition: int
    actor: int
    gender: Literal["M", "F"]

    @property
    def label(self) -> int:
        """Class index of the emotion in :data:`RAVDESS_EMOTIONS` (``emotion_id - 1``)."""
        return self.emotion_id - 1


def parse_ravdess_name(name: str) -> RavdessInfo:
    """Parse a RAVDESS file name (a bare name or a path, any extension).

    Parameters
    ----------
    name : str
        E.g. ``"03-01-06-01-02-01-12.wav"`` or ``"Actor_12/03-01-06-01-02-01-12.flac"``.

    Returns
    -------
    RavdessInfo

    Raises
    ------
    ParameterError
        If the name is not seven dash-separated two-digit fields, a field is out of range, or the
        combination does not exist in RAVDESS (strong neutral; disgust or surprised song).

    Examples
    --------
    >>> info = parse_ravdess_name("Actor_12/03-01-06-01-02-01-12.flac")
    >>> info.emotion, info.actor, info.gender, info.label
    ('fearful', 12, 'F', 5)
    """
    if not isinstance(name, str):
        raise ParameterError(f"name={name!r} must be a string")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.split(".", 1)[0]
    match = _NAME.match(stem)
    if match is None:
        raise ParameterError(
            f"name={name!r} is not a RAVDESS file name: expected seven 2-digit fields "
            "MM-VV-EE-II-SS-RR-AA, e.g. 03-01-06-01-02-01-12.wav"
        )
    values = dict(zip(_RANGES, (int(g) for g in match.groups())))
    for field, (lo, hi) in _RANGES.items():
        if not lo <= values[field] <= hi:
            raise ParameterError(
                f"name={name!r}: {field}={values[field]:02d} must be in {lo:02d}..{hi:02d}"
            )
    if values["emotion_id"] == 1 and values["intensity"] == 2:
        raise ParameterError(f"name={name!r}: neutral (emotion 01) has no strong intensity (02)")
    if values["vocal_channel"] == 2 and values["emotion_id"] > 6:
        raise ParameterError(
            f"name={name!r}: song (vocal channel 02) has emotions 01..06 only, "
            f"got {values['emotion_id']:02d}"
        )
    return RavdessInfo(
        modality=values["modality"],
        vocal_channel=values["vocal_channel"],
        emotion=RAVDESS_EMOTIONS[values["emotion_id"] - 1],
        emotion_id=values["emotion_id"],
        intensity=values["intensity"],
        statement=values["statement"],
        repetition=values["repetition"],
        actor=values["actor"],
        gender="M" if values["actor"] % 2 else "F",
    )


def _actor_set(actors: Iterable[int], what: str) -> set[int]:
    out = set()
    for a in actors:
        if isinstance(a, bool) or not isinstance(a, int | np.integer):
            raise ParameterError(f"{what} contains {a!r}; actors must be integers")
        out.add(int(a))
    return out


def speaker_disjoint_split(
    actors: Sequence[int], *, valid_actors: Iterable[int], test_actors: Iterable[int]
) -> list[str]:
    """Assign each item to ``"train"``, ``"valid"`` or ``"test"`` by its actor.

    Parameters
    ----------
    actors : sequence of int [length n_items]
        The actor of every item (e.g. ``RavdessInfo.actor``).
    valid_actors, test_actors : iterable of int
        Actors held out for validation and for test; all other actors train.

    Returns
    -------
    list of str [length n_items]
        The split of each item; no actor appears in two splits.

    Raises
    ------
    ParameterError
        If an actor is both a validation and a test actor, or no item is left for training.

    Examples
    --------
    >>> speaker_disjoint_split([1, 2, 3, 1], valid_actors=[2], test_actors=[3])
    ['train', 'valid', 'test', 'train']
    """
    valid = _actor_set(valid_actors, "valid_actors")
    test = _actor_set(test_actors, "test_actors")
    both = sorted(valid & test)
    if both:
        raise ParameterError(f"actors {both} are in both valid_actors and test_actors")
    items = [int(a) for a in _actor_list(actors)]
    out = ["test" if a in test else "valid" if a in valid else "train" for a in items]
    if items and "train" not in out:
        raise ParameterError(
            f"no training item left: every actor of {sorted(set(items))} is held out"
        )
    check_speaker_disjoint(items, out)
    return out


def _actor_list(actors: Sequence[int]) -> list[int]:
    items = list(actors)
    _actor_set(items, "actors")
    return items


def seeded_actor_split(
    actors: Iterable[int], *, n_valid: int, n_test: int, seed: int = 0, balance_gender: bool = True
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Draw held-out actors reproducibly: ``(train, valid, test)`` actor ids, each sorted.

    With ``balance_gender`` the held-out sets alternate female/male actors (RAVDESS: odd = male), so an
    even ``n_valid``/``n_test`` gives gender-balanced sets when enough actors of each gender exist.

    Parameters
    ----------
    actors : iterable of int
        Actor ids (duplicates are ignored).
    n_valid, n_test : int
        Number of validation and test actors; at least one actor must remain for training.
    seed : int
        Seed of the numpy generator.

    Raises
    ------
    ParameterError
        If ``n_valid`` or ``n_test`` is negative or they leave no training actor.

    Examples
    --------
    >>> tr, va, te = seeded_actor_split(range(1, 17), n_valid=2, n_test=4, seed=0)
    >>> len(tr), len(va), len(te), set(tr) & set(te)
    (10, 2, 4, set())
    """
    pool = sorted(_actor_set(actors, "actors"))
    if n_valid < 0 or n_test < 0 or n_valid + n_test >= len(pool):
        raise ParameterError(
            f"n_valid={n_valid}, n_test={n_test} must be >= 0 and leave a training actor "
            f"out of {len(pool)}"
        )
    rng = np.random.default_rng(seed)
    if balance_gender:
        female = [int(a) for a in rng.permutation([a for a in pool if a % 2 == 0])]
        male = [int(a) for a in rng.permutation([a for a in pool if a % 2 == 1])]
        order: list[int] = []
        while female or male:
            for group in (female, male):
                if group:
                    order.append(group.pop(0))
    else:
        order = [int(a) for a in rng.permutation(pool)]
    test = tuple(sorted(order[:n_test]))
    valid = tuple(sorted(order[n_test : n_test + n_valid]))
    train = tuple(sorted(set(pool) - set(test) - set(valid)))
    return train, valid, test


def check_speaker_disjoint(actors: Sequence[int], splits: Sequence[str]) -> None:
    """Raise ParameterError if any actor's items fall in more than one split.

    Parameters
    ----------
    actors : sequence of int [length n_items]
    splits : sequence of str [length n_items]
        Split name of each item.
    """
    if len(actors) != len(splits):
        raise ParameterError(f"len(actors)={len(actors)} != len(splits)={len(splits)}")
    seen: dict[int, str] = {}
    for a, s in zip(actors, splits):
        first = seen.setdefault(int(a), s)
        if first != s:
            raise ParameterError(
                f"actor {int(a)} is in both {first!r} and {s!r}: splits must be speaker-disjoint"
            )
