"""Augmented mixture recipes: seeded draws of speed, pitch, room, telephone band, level and a second noise.

Off unless :class:`AugmentConfig` names kinds (``prepare --augment speed,reverb,...``); a run without it
is exactly what it was before augmentation existed (same recipes, files and tables).

Draws: mixture ``i`` of a split draws speech, noise, SNR and offsets from ``default_rng([s, code(split),
i])`` (``s``: ``MixtureConfig.recipe_seed``) as :func:`batchsep.corpus.mixtures.draw_recipes` does (the crop
in the speed-perturbed file), each kind from its own stream ``default_rng([s, code(split), i, 100 + k])``:
turning a kind on or off leaves the others' draws as they were. The driver draws (:func:`draw_augmented`),
render tasks apply (:func:`render_augmented`): byte-identical files on any number of workers; every draw is
a column of ``mixtures.parquet`` (:meth:`AugmentDraw.to_row`, schema ``MIXTURES_AUGMENTED``).

Rendering order: speed → crop → pitch → (+ second noise) → room → mix at the SNR → telephone band →
level → 24-bit grid. What the stored streams are:

- ``clean`` — the training **target**: the dry crop when there is no room; with a room, the **early
  reverberant speech** (direct path + the first ``early_ms`` = 50 ms of reflections), time-aligned with
  the dry speech. Early reflections are kept in the target because a mask on a 32 ms STFT cannot remove
  them (they fall inside one analysis window and are perceived as part of the direct sound, even help
  intelligibility); asking the mask to undo them only teaches it to attenuate speech. Late reverberation
  is the part that smears words and that a mask can suppress, so it counts as interference.
- ``noise`` — everything else: late reverberation + the (one or two) scaled noises, through the same
  telephone channel, so ``noisy == clean + noise`` bit for bit as in unaugmented runs.
- ``snr_db`` — the ratio of the whole reverberant speech to the sum of the noises, before the telephone
  band (with two noises, of their sum: the second noise is placed ``aug_noise2_db`` relative to the first).
- level — the noisy mixture's RMS is brought to ``aug_level_dbfs`` (−45..−15 dBFS), then, like every
  mixture, lowered if a peak would exceed ``max_peak`` (``output_gain`` records the factor applied).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from batchsep.config import Config, register_config
from batchsep.corpus import mixtures as mx
from batchsep.corpus import render as rd
from batchsep.corpus.mixtures import MixtureConfig, Recipe, SourceFile
from batchsep.corpus.render import RenderedMixture
from batchsep.dsp import augment as dsp
from batchsep.dsp.mix import fit_length, mix_at_snr
from batchsep.errors import ParameterError

KINDS: tuple[str, ...] = ("speed", "pitch", "reverb", "telephone", "level", "two-noise")


@register_config("augment")
@dataclass(frozen=True)
class AugmentConfig(Config):
    """Which augmentations ``prepare`` draws, with what probabilities and ranges.

    Parameters
    ----------
    kinds : tuple of str
        Enabled kinds among ``speed``, ``pitch``, ``reverb``, ``telephone``, ``level``, ``two-noise``
        (empty: no augmentation).
    splits : tuple of str
        Splits augmented (the others are drawn and rendered as without augmentation).
    speeds : tuple of float
        Speed factors, drawn uniformly (Kaldi's 0.9/1.0/1.1: each factor ≠ 1 makes pseudo-speakers).
    pitch_prob, pitch_semitones : float
        Share of mixtures pitch-shifted, by a shift uniform in ±``pitch_semitones``.
    reverb_prob : float
        Share of mixtures in a simulated room.
    rt60_min, rt60_max : float
        Reverberation time range (s, uniform).
    room_min, room_max : tuple of float
        Room dimension ranges (m, each uniform); source and microphone are uniform in the room at
        least ``wall_margin`` m from every wall.
    early_ms : float
        Reflections within this time after the direct path belong to the target.
    reverb_max_order : int
        Image-source order cap.
    telephone_prob, telephone_low_hz, telephone_high_hz : float
        Share of mixtures through the telephone channel (8 kHz, band-pass ``low``..``high``).
    telephone_low_min_hz, telephone_high_max_hz : float or None
        When set, band edges drawn uniform in ``[low_min, low]`` and ``[high, high_max]`` (8 kHz audio
        ranges from a 300-3400 Hz codec band to all of 0-4 kHz). None: the fixed band.
    level_min_dbfs, level_max_dbfs : float
        Range of the noisy mixture's RMS level (uniform; with ``level``).
    two_noise_prob : float
        Share of mixtures with a second noise, ``noise2_min_db``..``noise2_max_db`` relative to the first.
    speech_sampling : {"file", "input"}
        How an augmented split draws its speech file: uniformly over its files (as without
        augmentation), or first an input uniformly (the main speech input and each train-only one,
        among those with files in the split), then a file of it, so that a large extra corpus does
        not crowd out the others.
    """

    kinds: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "valid")
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    pitch_prob: float = 0.3
    pitch_semitones: float = 2.0
    reverb_prob: float = 0.5
    rt60_min: float = 0.2
    rt60_max: float = 0.8
    room_min: tuple[float, ...] = (3.0, 3.0, 2.4)
    room_max: tuple[float, ...] = (10.0, 8.0, 4.0)
    wall_margin: float = 0.5
    early_ms: float = 50.0
    reverb_max_order: int = 40
    telephone_prob: float = 0.2
    telephone_low_hz: float = 300.0
    telephone_high_hz: float = 3400.0
    telephone_low_min_hz: float | None = None
    telephone_high_max_hz: float | None = None
    level_min_dbfs: float = -45.0
    level_max_dbfs: float = -15.0
    two_noise_prob: float = 0.3
    noise2_min_db: float = -10.0
    noise2_max_db: float = 0.0
    speech_sampling: Literal["file", "input"] = "file"

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ParameterError(f"unknown augmentation {bad[0]!r}; known: {', '.join(KINDS)}")
        bad = [s for s in self.splits if s not in mx.SPLITS]
        if bad:
            raise ParameterError(f"augment splits has {bad[0]!r}; splits: {', '.join(mx.SPLITS)}")
        if not self.speeds or any(not 0.5 <= f <= 2.0 for f in self.speeds):
            raise ParameterError(f"speeds={self.speeds} must be non-empty factors in [0.5, 2]")
        for name in ("pitch_prob", "reverb_prob", "telephone_prob", "two_noise_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParameterError(f"{name}={getattr(self, name)} must be in [0, 1]")
        for lo, hi in (("rt60_min", "rt60_max"), ("level_min_dbfs", "level_max_dbfs"),
                       ("noise2_min_db", "noise2_max_db")):  # fmt: skip
            if getattr(self, lo) > getattr(self, hi):
                raise ParameterError(
                    f"{lo}={getattr(self, lo)} must be <= {hi}={getattr(self, hi)}"
                )
        if self.rt60_min < 0.05:
            raise ParameterError(f"rt60_min={self.rt60_min} must be >= 0.05 s")
        if len(self.room_min) != 3 or len(self.room_max) != 3:
            raise ParameterError("room_min and room_max need 3 dimensions (m)")
        if any(
            lo > hi or lo <= 2 * self.wall_margin for lo, hi in zip(self.room_min, self.room_max)
        ):
            raise ParameterError("room_min must be <= room_max and larger than 2 × wall_margin")
        if self.level_max_dbfs > 0:
            raise ParameterError(f"level_max_dbfs={self.level_max_dbfs} must be <= 0")
        low, high = self.telephone_low_hz, self.telephone_high_hz
        edges = [self.telephone_low_min_hz or low, low, high, self.telephone_high_max_hz or high]
        if not (edges[0] > 0 and edges == sorted(edges) and low < high and edges[3] < 4000):
            raise ParameterError("telephone band: 0 < low_min <= low < high <= high_max < 4000 Hz")

    @property
    def enabled(self) -> bool:
        return bool(self.kinds)


@dataclass(frozen=True)
class AugmentDraw:
    """One mixture's augmentation draws (neutral values: not applied)."""

    speed: float = 1.0
    pitch_semitones: float = 0.0
    rt60: float | None = None
    room: tuple[float, ...] | None = None
    source: tuple[float, ...] | None = None
    mic: tuple[float, ...] | None = None
    early_ms: float | None = None
    max_order: int | None = None
    telephone: bool = False
    telephone_band: tuple[float, ...] | None = None
    level_dbfs: float | None = None
    noise2_uri: str | None = None
    noise2_rel_path: str | None = None
    noise2_class: str | None = None
    noise2_clip: str | None = None
    noise2_offset: int | None = None
    noise2_db: float | None = None

    def to_row(self) -> dict[str, Any]:
        """The ``aug_*`` columns of ``mixtures.parquet``."""
        return {f"aug_{k}": (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}  # fmt: skip

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AugmentDraw | None:
        """The draws of a mixtures row, or None for a row without augmentation columns."""
        if row.get("aug_speed") is None:
            return None
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            v = row.get(f"aug_{f.name}")
            kw[f.name] = tuple(float(a) for a in v) if isinstance(v, list | tuple) else v
        return cls(**kw)


def draws_hash(draws: Sequence[AugmentDraw | None]) -> str:
    """A stable hash of a list of draws."""
    h = hashlib.sha256()
    for d in draws:
        h.update(json.dumps(None if d is None else d.to_row(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _pick_noise(rng: Any, by_class: dict[str, list[SourceFile]], pool: list[SourceFile],
                config: MixtureConfig) -> SourceFile:  # fmt: skip
    if config.noise_sampling == "class":
        classes = sorted(by_class)
        members = by_class[classes[int(rng.integers(len(classes)))]]
        return members[int(rng.integers(len(members)))]
    return pool[int(rng.integers(len(pool)))]


def _draw_kinds(aug: AugmentConfig, key: list[int], noise2: Any) -> dict[str, Any]:
    """The augmentation draws of one mixture (``key`` = [seed, split code, index])."""

    def stream(k: int) -> Any:
        return np.random.default_rng([*key, 100 + k])

    out: dict[str, Any] = {}
    if "pitch" in aug.kinds and (r := stream(1)).random() < aug.pitch_prob:
        out["pitch_semitones"] = float(r.uniform(-aug.pitch_semitones, aug.pitch_semitones))
    if "reverb" in aug.kinds and (r := stream(2)).random() < aug.reverb_prob:
        room = r.uniform(aug.room_min, aug.room_max)
        m = aug.wall_margin
        out.update(
            rt60=float(r.uniform(aug.rt60_min, aug.rt60_max)),
            room=tuple(float(v) for v in room),
            source=tuple(float(v) for v in r.uniform(m, room - m)),
            mic=tuple(float(v) for v in r.uniform(m, room - m)),
            early_ms=aug.early_ms, max_order=aug.reverb_max_order,
        )  # fmt: skip
    if "telephone" in aug.kinds and (r := stream(3)).random() < aug.telephone_prob:
        low, high = aug.telephone_low_hz, aug.telephone_high_hz  # or drawn within their ranges:
        low = low if aug.telephone_low_min_hz is None else r.uniform(aug.telephone_low_min_hz, low)
        high = (
            high
            if aug.telephone_high_max_hz is None
            else r.uniform(high, aug.telephone_high_max_hz)
        )
        out.update(telephone=True, telephone_band=(float(low), float(high)))
    if "level" in aug.kinds:
        out["level_dbfs"] = float(stream(4).uniform(aug.level_min_dbfs, aug.level_max_dbfs))
    if "two-noise" in aug.kinds and (r := stream(5)).random() < aug.two_noise_prob:
        n2 = noise2(r)
        out.update(
            noise2_uri=n2.uri, noise2_rel_path=n2.rel_path, noise2_class=n2.group,
            noise2_clip=n2.clip, noise2_offset=int(r.integers(0, n2.n_samples)),
            noise2_db=float(r.uniform(aug.noise2_min_db, aug.noise2_max_db)),
        )  # fmt: skip
    return out


def draw_augmented(
    speech: Sequence[SourceFile],
    noise: Sequence[SourceFile],
    speaker_split: Mapping[str, str],
    clip_split: Mapping[str, str],
    config: MixtureConfig,
    aug: AugmentConfig,
    speech_inputs: Mapping[str, int] | None = None,
) -> tuple[list[Recipe], list[AugmentDraw | None]]:
    """Recipes (as :func:`~batchsep.corpus.mixtures.draw_recipes`) and their draws (None: split not
    augmented, rendered exactly as without augmentation).

    ``speech_inputs`` maps a speech file's URI to the input it came from (0: the main input, k: the
    k-th train-only one; absent: 0), for ``speech_sampling="input"``.

    Raises
    ------
    ParameterError
        If a split asked for mixtures has no speech or no noise.
    """
    zero: dict[str, Any] = {f"n_{s}": 0 for s in aug.splits}
    plain_cfg = dataclasses.replace(config, **zero)
    plain = mx.draw_recipes(speech, noise, speaker_split, clip_split, plain_cfg)
    max_s = config.max_seconds
    max_len = None if max_s is None else max(1, round(max_s * config.sample_rate))
    recipes: list[Recipe] = []
    draws: list[AugmentDraw | None] = []
    for split, count in config.counts().items():
        if split not in aug.splits:
            mine = [r for r in plain if r.split == split]
            recipes.extend(mine)
            draws.extend([None] * len(mine))
            continue
        if count == 0:
            continue
        pool, noise_pool, by_class = mx.split_pools(
            speech, noise, speaker_split, clip_split, split,
            hint=f"{count} mixtures but has no {{what}}",
        )  # fmt: skip
        by_input: dict[int, list[SourceFile]] = {}
        for f in pool:
            by_input.setdefault((speech_inputs or {}).get(f.uri, 0), []).append(f)
        groups = [by_input[k] for k in sorted(by_input)]
        for i in range(count):
            key = [config.recipe_seed, mx._SPLIT_CODE[split], i]
            rng = np.random.default_rng(key)
            if aug.speech_sampling == "input":
                group = groups[int(rng.integers(len(groups)))]
                s = group[int(rng.integers(len(group)))]
            else:
                s = pool[int(rng.integers(len(pool)))]
            n = _pick_noise(rng, by_class, noise_pool, config)
            snr = float(rng.uniform(config.snr_min, config.snr_max))
            speed = 1.0
            if "speed" in aug.kinds:
                speed = float(
                    aug.speeds[int(np.random.default_rng([*key, 100]).integers(len(aug.speeds)))]
                )
            src_len = dsp.speed_length(s.n_samples, speed)
            length, s_off = src_len, 0
            if max_len is not None and src_len > max_len:
                length, s_off = max_len, int(rng.integers(0, src_len - max_len + 1))
            looped = n.n_samples < length
            hi = n.n_samples if looped else n.n_samples - length + 1
            recipes.append(Recipe(
                mixture_id=f"{split}-{i:06d}", split=split, index=i,
                speech_uri=s.uri, speech_rel_path=s.rel_path, speaker=s.group,
                noise_uri=n.uri, noise_rel_path=n.rel_path, noise_class=n.group,
                noise_clip=n.clip, sample_rate=config.sample_rate, snr_db=snr,
                speech_offset=s_off, noise_offset=int(rng.integers(0, hi)),
                noise_looped=looped, n_samples=length,
            ))  # fmt: skip
            kinds = _draw_kinds(
                aug,
                key,
                functools.partial(_pick_noise, by_class=by_class, pool=noise_pool, config=config),
            )
            draws.append(AugmentDraw(speed=speed, **kinds))
    return recipes, draws


def render_augmented(
    speech: np.ndarray,
    noise: np.ndarray,
    noise2: np.ndarray | None,
    recipe: Recipe,
    draw: AugmentDraw,
    *,
    max_peak: float = 0.99,
) -> RenderedMixture:
    """Render one augmented mixture from the whole speech, noise (and second noise) files.

    The inputs are at ``recipe.sample_rate``; the result is on the 24-bit grid with
    ``noisy == clean + noise`` (see the module docstring for what each stream holds).

    Raises
    ------
    ParameterError
        Silent speech or noise segment, or a second noise drawn but not given.
    """
    sr, n = recipe.sample_rate, recipe.n_samples
    sped = dsp.speed_perturb(speech, draw.speed, sr)
    seg = sped[recipe.speech_offset : recipe.speech_offset + n]
    if seg.shape[0] < n:
        seg = np.pad(seg, (0, n - seg.shape[0]))
    seg = dsp.pitch_shift(seg, draw.pitch_semitones, sr)
    noise_seg = fit_length(np.asarray(noise, dtype=np.float64), n, offset=recipe.noise_offset)
    try:
        if draw.noise2_uri is not None:
            if noise2 is None:
                raise ParameterError("the second noise was drawn but not given")
            second = fit_length(
                np.asarray(noise2, dtype=np.float64), n, offset=int(draw.noise2_offset or 0)
            )
            noise_seg, _ = dsp.add_noise_at(noise_seg, second, float(draw.noise2_db or 0.0))
        wet = target = seg
        if draw.rt60 is not None:
            rir = dsp.shoebox_rir(
                draw.room, draw.source, draw.mic, draw.rt60, sr,  # type: ignore[arg-type]
                max_order=int(draw.max_order or 40),
            )  # fmt: skip
            full, early, lag = dsp.split_rir(rir, sr, early_ms=float(draw.early_ms or 50.0))
            wet, target = (
                dsp.convolve_aligned(seg, full, lag),
                dsp.convolve_aligned(seg, early, lag),
            )
        _, scaled, gain = mix_at_snr(wet, noise_seg, recipe.snr_db)
        noisy = wet + scaled
        if draw.telephone:
            lo, hi = draw.telephone_band or (300.0, 3400.0)
            noisy = dsp.telephone_band(noisy, sr, low_hz=lo, high_hz=hi)
            target = dsp.telephone_band(target, sr, low_hz=lo, high_hz=hi)
        level = 1.0 if draw.level_dbfs is None else dsp.level_gain(noisy, draw.level_dbfs)
    except ParameterError as e:
        raise ParameterError(f"{recipe.mixture_id}: {e}") from None
    interference = noisy - target
    peak = max(float(np.abs(a).max()) for a in (target, interference, noisy)) * level
    out_gain = level * min(1.0, max_peak / peak) if peak > 0 else level
    clean = rd.quantize_pcm24(target * out_gain)
    noise_q = rd.quantize_pcm24(interference * out_gain)
    return RenderedMixture(clean + noise_q, clean, noise_q, gain, out_gain)
