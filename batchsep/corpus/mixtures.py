"""Mixture recipes: who is speaker/noise class/recording, disjoint splits, seeded draws, rendering.

Everything here is pure (no I/O): :mod:`batchsep.pipeline.prepare.driver` reads the files and writes the outputs.

Splits (seed 004's protocol): train, valid and test share **no speaker and no noise recording**. Speakers
are split as a whole; noise recordings are split *within each noise class*, so every class appears in every
split, except the classes named in ``holdout_noise_classes``, whose recordings go to valid and test only
(classes unseen in training). A *recording* groups files cut from one original recording
(UrbanSound8K's ``fsID-classID-occurrenceID-sliceID`` slices share their ``fsID``), so no slice of a test
recording is heard in training.

Draws: mixture ``i`` of split ``s`` takes all its random choices (speech file, noise class and file, SNR
uniform in ``[snr_min, snr_max]``, offsets) from ``numpy.random.default_rng([seed, code(s), i])``. The
recipes are thus reproducible, independent of the number of workers, and growing ``n_train`` keeps the
first mixtures unchanged.

Rendering (:mod:`batchsep.corpus.render`): the speech segment and the (looped or cropped) noise segment are mixed at exactly the drawn SNR
(:func:`batchsep.dsp.mix_at_snr`); one ``output_gain`` scales all three signals so the peak is at most
``max_peak``; each signal is then rounded to the 24-bit grid (``k / 2**23``), so that the rendered arrays
are *exactly* what a 24-bit FLAC stores and decodes, and ``noisy == clean + noise`` holds bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from batchsep.config import Config, register_config
from batchsep.errors import ParameterError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
_SPLIT_CODE = {"train": 1, "valid": 2, "test": 3}
GROUP_RULES = ("parent", "dir", "top", "file")
"""Named rules of :func:`group_of`; ``"re:<regex>"`` is accepted as well."""
RECORDING_RULE = "recording"
_UrbanSound8K = re.compile(r"^(\d+)-\d+-\d+-\d+$")  # fsID-classID-occurrenceID-sliceID
ROOT_GROUP = "(root)"


@register_config("mixtures")
@dataclass(frozen=True)
class MixtureConfig(Config):
    """How ``prepare`` turns a speech corpus and a noise corpus into mixtures.

    Parameters
    ----------
    n_train, n_valid, n_test : int
        Mixtures per split.
    snr_min, snr_max : float
        SNR range in dB (uniform draw).
    seed : int
        Seeds every draw (splits and recipes).
    draw_seed : int or None
        Seeds the per-mixture draws instead of ``seed`` (which still splits): fresh mixtures of the same
        split (None: ``seed``).
    sample_rate : int
        Rate of the rendered mixtures (inputs are resampled and downmixed).
    max_seconds : float or None
        Crop speech longer than this at a random offset; None keeps whole utterances.
    min_seconds : float
        Speech files shorter than this are skipped.
    speaker_from, noise_class_from : str
        Rule deriving a file's speaker / noise class from its path relative to the input root:
        ``parent`` (name of the folder holding the file), ``dir`` (the whole folder path),
        ``top`` (the first folder), ``file`` (the file itself) or ``re:<regex>`` (searched in the file
        name; group 1, else the whole match).
    noise_clip_from : str
        Rule grouping noise files into recordings: ``recording`` (UrbanSound8K's fsID when the name
        has its pattern, else the file), or any rule above.
    valid_fraction, test_fraction : float
        Share of speakers, and of each class's noise recordings, held out for valid and test.
    holdout_noise_classes : tuple of str
        Noise classes kept out of training (their recordings go to valid and test).
    noise_sampling : {"class", "clip"}
        Draw a noise class uniformly then a file in it (balanced classes), or a file uniformly.
    silence_dbfs : float
        Speech or noise whose RMS level is below this (or digital silence) is skipped.
    max_peak : float
        Peak level of the rendered signals (``output_gain`` brings louder mixtures down to it).
    """

    n_train: int = 3000
    n_valid: int = 300
    n_test: int = 300
    snr_min: float = -5.0
    snr_max: float = 5.0
    seed: int = 0
    draw_seed: int | None = None
    sample_rate: int = 16000
    max_seconds: float | None = None
    min_seconds: float = 0.5
    speaker_from: str = "parent"
    noise_class_from: str = "dir"
    noise_clip_from: str = RECORDING_RULE
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    holdout_noise_classes: tuple[str, ...] = ()
    noise_sampling: Literal["class", "clip"] = "class"
    silence_dbfs: float = -60.0
    max_peak: float = 0.99

    def __post_init__(self) -> None:
        for name in ("n_train", "n_valid", "n_test"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 0")
        if not (math.isfinite(self.snr_min) and math.isfinite(self.snr_max)):
            raise ParameterError(f"snr range [{self.snr_min}, {self.snr_max}] must be finite")
        if self.snr_min > self.snr_max:
            raise ParameterError(f"snr_min={self.snr_min} must be <= snr_max={self.snr_max}")
        if self.sample_rate <= 0:
            raise ParameterError(f"sample_rate={self.sample_rate} must be > 0")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ParameterError(f"max_seconds={self.max_seconds} must be > 0 (or None)")
        if self.min_seconds < 0:
            raise ParameterError(f"min_seconds={self.min_seconds} must be >= 0")
        fv, ft = self.valid_fraction, self.test_fraction
        if not (0 <= fv < 1 and 0 <= ft < 1 and fv + ft < 1):
            raise ParameterError(
                f"valid_fraction={fv}, test_fraction={ft}: each must be in [0, 1) and their sum < 1"
            )
        if not 0 < self.max_peak <= 0.999:
            raise ParameterError(f"max_peak={self.max_peak} must be in (0, 0.999]")
        for name in ("speaker_from", "noise_class_from"):
            check_rule(getattr(self, name), name)
        check_rule(self.noise_clip_from, "noise_clip_from", extra=(RECORDING_RULE,))

    @property
    def recipe_seed(self) -> int:  # the seed of the per-mixture draws
        return self.seed if self.draw_seed is None else self.draw_seed

    def counts(self) -> dict[str, int]:
        return {"train": self.n_train, "valid": self.n_valid, "test": self.n_test}


def check_rule(rule: str, name: str = "rule", *, extra: tuple[str, ...] = ()) -> None:
    """Raise ParameterError unless ``rule`` is a known group rule or a valid ``re:`` pattern."""
    if rule.startswith("re:"):
        try:
            re.compile(rule[3:])
        except re.error as e:
            raise ParameterError(
                f"{name}={rule!r} is not a valid regular expression: {e}"
            ) from None
        return
    if rule not in GROUP_RULES + extra:
        known = ", ".join([*GROUP_RULES, *extra, "re:<regex>"])
        raise ParameterError(f"{name}={rule!r} must be one of {known}")


def group_of(rel_path: str, rule: str) -> str | None:
    """The group (speaker, noise class or recording) of a file by ``rule``; None if a regex misses.

    Examples
    --------
    >>> group_of("librispeech/61/61-70968-0000.flac", "parent")
    '61'
    >>> group_of("urbansound8k/dog_bark/100032-3-0-0.flac", "dir")
    'urbansound8k/dog_bark'
    >>> group_of("urbansound8k/dog_bark/100032-3-0-0.flac", "recording")
    'urbansound8k/dog_bark/100032'
    """
    folder, name = posixpath.split(rel_path)
    if rule == "parent":
        return posixpath.basename(folder) or ROOT_GROUP
    if rule == "dir":
        return folder or ROOT_GROUP
    if rule == "top":
        return rel_path.split("/", 1)[0] if folder else ROOT_GROUP
    if rule == "file":
        return rel_path
    if rule == RECORDING_RULE:
        m = _UrbanSound8K.match(name.rsplit(".", 1)[0])
        return posixpath.join(folder, m.group(1)) if m else rel_path
    if rule.startswith("re:"):
        m = re.search(rule[3:], name)
        if m is None:
            return None
        return m.group(1) if m.re.groups else m.group(0)
    check_rule(rule)
    raise AssertionError("unreachable")  # pragma: no cover


def resampled_length(frames: int, orig_sr: int, target_sr: int) -> int:
    """Samples after resampling ``frames`` from ``orig_sr`` to ``target_sr`` (soxr: round half up)."""
    return (2 * frames * target_sr + orig_sr) // (2 * orig_sr)


@dataclass(frozen=True)
class SourceFile:
    """A usable input file: where it is, its length at the mixture rate, and its groups."""

    uri: str
    rel_path: str
    n_samples: int
    group: str
    clip: str = ""


@dataclass(frozen=True)
class Recipe:
    """Everything needed to render one mixture (offsets and length in samples at ``sample_rate``)."""

    mixture_id: str
    split: str
    index: int
    speech_uri: str
    speech_rel_path: str
    speaker: str
    noise_uri: str
    noise_rel_path: str
    noise_class: str
    noise_clip: str
    sample_rate: int
    snr_db: float
    speech_offset: int
    noise_offset: int
    noise_looped: bool
    n_samples: int

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    def to_row(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Recipe:
        """The recipe part of a ``mixtures.parquet`` row (other columns are ignored)."""
        try:
            return cls(**{f.name: row[f.name] for f in fields(cls)})
        except KeyError as e:
            raise ParameterError(f"mixture row lacks column {e.args[0]!r}") from None


def recipes_hash(recipes: Sequence[Recipe], extra: Mapping[str, Any] | None = None) -> str:
    """A stable hash of a list of recipes (and settings that change the rendered audio)."""
    h = hashlib.sha256(json.dumps(dict(extra or {}), sort_keys=True).encode())
    for r in recipes:
        h.update(json.dumps(asdict(r), sort_keys=True).encode())
    return h.hexdigest()[:16]


def split_counts(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of ``n`` groups go to (train, valid, test): rounded shares, each held-out split
    getting at least one group and train keeping at least one, when ``n >= 3``; all train otherwise."""
    if n < 3:
        return n, 0, 0
    nv = max(1, math.floor(n * valid_fraction + 0.5)) if valid_fraction > 0 else 0
    nt = max(1, math.floor(n * test_fraction + 0.5)) if test_fraction > 0 else 0
    while nv + nt > n - 1:
        if nv >= nt:
            nv -= 1
        else:
            nt -= 1
    return n - nv - nt, nv, nt


def _deal(groups: list[str], counts: tuple[int, ...], names: tuple[str, ...], rng: Any) -> dict:
    order = [groups[i] for i in rng.permutation(len(groups))]
    out, start = {}, 0
    for name, k in zip(names, counts):
        out.update({g: name for g in order[start : start + k]})
        start += k
    return out


def assign_splits(
    speech: Sequence[SourceFile], noise: Sequence[SourceFile], config: MixtureConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """Split speakers, and each noise class's recordings, into train/valid/test.

    Returns
    -------
    speaker_split : dict speaker → split
    clip_split : dict recording (``SourceFile.clip``) → split

    Raises
    ------
    ParameterError
        If a held-out noise class is not among the noise classes found.
    """
    rng = np.random.default_rng([config.seed, 0])
    speakers = sorted({s.group for s in speech})
    fv, ft = config.valid_fraction, config.test_fraction
    speaker_split = _deal(speakers, split_counts(len(speakers), fv, ft), SPLITS, rng)
    by_class: dict[str, set[str]] = {}
    for f in noise:
        by_class.setdefault(f.group, set()).add(f.clip)
    unknown = sorted(set(config.holdout_noise_classes) - set(by_class))
    if unknown:
        raise ParameterError(
            f"holdout_noise_classes has {unknown[0]!r}, which is not a noise class; "
            f"classes: {', '.join(sorted(by_class))}"
        )
    clip_split: dict[str, str] = {}
    for cls in sorted(by_class):
        clips = sorted(by_class[cls])
        if cls in config.holdout_noise_classes:
            n = len(clips)
            nv = min(n, max(1, math.floor(n * fv / (fv + ft) + 0.5))) if fv + ft > 0 else 0
            if ft > 0 and nv == n and n > 1:
                nv -= 1
            counts: tuple[int, ...] = (nv, n - nv)
            clip_split.update(_deal(clips, counts, ("valid", "test"), rng))
        else:
            clip_split.update(_deal(clips, split_counts(len(clips), fv, ft), SPLITS, rng))
    return speaker_split, clip_split


def split_pools(
    speech: Sequence[SourceFile], noise: Sequence[SourceFile],
    speaker_split: Mapping[str, str], clip_split: Mapping[str, str], split: str, *, hint: str,
) -> tuple[list[SourceFile], list[SourceFile], dict[str, list[SourceFile]]]:  # fmt: skip
    """The speech and noise files of ``split`` (sorted by path) and its noise files by class.

    Raises
    ------
    ParameterError
        ``split`` has no speech or no noise: "split 'test' needs " + ``hint`` (``{what}`` filled in).
    """
    pool = sorted(
        (f for f in speech if speaker_split.get(f.group) == split), key=lambda f: f.rel_path
    )
    noise_pool = sorted(
        (f for f in noise if clip_split.get(f.clip) == split), key=lambda f: f.rel_path
    )
    if not pool or not noise_pool:
        what = "speech (speakers)" if not pool else "noise (recordings)"
        raise ParameterError(f"split {split!r} needs " + hint.format(what=what))
    by_class: dict[str, list[SourceFile]] = {}
    for f in noise_pool:
        by_class.setdefault(f.group, []).append(f)
    return pool, noise_pool, by_class


def draw_recipes(
    speech: Sequence[SourceFile],
    noise: Sequence[SourceFile],
    speaker_split: Mapping[str, str],
    clip_split: Mapping[str, str],
    config: MixtureConfig,
) -> list[Recipe]:
    """Draw ``n_train``/``n_valid``/``n_test`` recipes (in that order), each from its own seeded RNG.

    Raises
    ------
    ParameterError
        If a split asked for mixtures has no speech or no noise.
    """
    out: list[Recipe] = []
    max_len = (
        None
        if config.max_seconds is None
        else max(1, round(config.max_seconds * config.sample_rate))
    )
    for split, count in config.counts().items():
        if count == 0:
            continue
        pool, noise_pool, by_class = split_pools(
            speech, noise, speaker_split, clip_split, split,
            hint=f"{count} mixtures but has no {{what}}: too few inputs for "
            f"valid_fraction={config.valid_fraction}, test_fraction={config.test_fraction}",
        )  # fmt: skip
        classes = sorted(by_class)
        for i in range(count):
            rng = np.random.default_rng([config.recipe_seed, _SPLIT_CODE[split], i])
            s = pool[int(rng.integers(len(pool)))]
            if config.noise_sampling == "class":
                members = by_class[classes[int(rng.integers(len(classes)))]]
                n = members[int(rng.integers(len(members)))]
            else:
                n = noise_pool[int(rng.integers(len(noise_pool)))]
            snr = float(rng.uniform(config.snr_min, config.snr_max))
            length, s_off = s.n_samples, 0
            if max_len is not None and s.n_samples > max_len:
                length, s_off = max_len, int(rng.integers(0, s.n_samples - max_len + 1))
            looped = n.n_samples < length
            hi = n.n_samples if looped else n.n_samples - length + 1
            recipe = Recipe(
                mixture_id=f"{split}-{i:06d}", split=split, index=i,
                speech_uri=s.uri, speech_rel_path=s.rel_path, speaker=s.group,
                noise_uri=n.uri, noise_rel_path=n.rel_path, noise_class=n.group,
                noise_clip=n.clip, sample_rate=config.sample_rate, snr_db=snr,
                speech_offset=s_off, noise_offset=int(rng.integers(0, hi)),
                noise_looped=looped, n_samples=length,
            )  # fmt: skip
            out.append(recipe)
    return out
