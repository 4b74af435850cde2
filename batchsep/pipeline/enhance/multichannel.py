"""Multichannel files in the enhance stage: each channel enhanced (``keep``), or mask-based beamforming.

``--multichannel`` (:data:`MULTICHANNEL_MODES`) says what becomes of a file with several channels:

* ``downmix`` (default): the channels are averaged to mono, polarity-aligned first (a channel out of phase
  with the first one is inverted, so that an out-of-phase pair does not cancel; see
  :mod:`batchsep.pipeline.enhance.file`), and the mono signal is enhanced;
* ``keep``: every channel is enhanced on its own; the output has the input's channels;
* ``beamform``: the model gives a speech mask per channel (the median over channels is used), speech and
  noise spatial covariances are estimated from it, and a beamformer (:mod:`batchsep.dsp.beamform`: MVDR,
  GEV-BAN, MWF or delay-and-sum) makes one channel: the speech as the reference microphone (chosen by SNR)
  hears it; optionally the model's single-channel mask is applied to that output too (``beam_postmask``).

Masks: a model of batchsep's own (:class:`~batchsep.pipeline.enhance.enhancer.MaskEnhancer`) gives its masks in its
own STFT; a model that only returns waveforms (the zoo's) gives ``|Ŝ| / |X|`` clipped to [0, 1], computed
in an STFT of 32 ms frames with a quarter hop at the model's rate. The beamformer itself works in longer
frames (:data:`BEAM_FRAME_S`, 128 ms: in reverberant rooms a per-bin filter in 32 ms frames distorts the
speech image, see docs/results.md), into which the masks are carried over (:func:`resample_mask`).

Statistics: ``beam_forgetting=None`` averages them over the whole file: the file is read once per round
of statistics, then once more to filter; a forgetting factor λ in (0, 1) updates them recursively and the
filter every :data:`UPDATE_S` seconds, in one pass. The noise weight of a bin is ``(1 - m̃)^p``, the
power ``p`` per filter by default (:func:`default_noise_power`, :data:`NOISE_POWERS`): 2 for MVDR and
GEV-BAN (:data:`NOISE_POWER`: bins the mask calls half speech count little as noise), 1 for the MWF
(its filter ``Φx⁻¹Φs`` assumes ``Φx = Φs + Φn``, which weights ``m`` and ``1 - m`` keep and ``(1 - m)²``
breaks), 2 for delay-and-sum (its filter uses the speech statistics only; the noise statistics choose
its reference channel); ``beam_noise_power`` in (0, :data:`MAX_NOISE_POWER`] sets it for every filter.
``m̃`` is the speech mask held for :data:`NOISE_HOLD_S` (default 0: not held; held, the talker's
reverberant tail does not count as noise, which keeps it in the output). The statistics are refined
:data:`REFINE` time(s) by default (``beam_refine``: 0 to :data:`MAX_REFINE`): the model's mask of the
beamformed signal (one mono model pass) replaces the channels' median mask and the statistics are
estimated again (whole file: one more round, so three reads of the file by default; recursive: each
window's statistics use the model's mask of the filter so far). docs/results.md (beamforming, session
13) measures these choices: refinement gains MVDR and GEV-BAN 0.2–0.5 dB, costs the MWF 0.4–0.6 dB
(4 mics); the power is worth 0.1–0.2 dB to the MWF. All run window by window (``chunk_s``), in bounded
memory; the reference channel is chosen by the last round (whole file) or from the first window.

``beam_mask`` (:data:`BEAM_MASKS`) says what the statistics are estimated from: ``model`` (default) the
model's mask as above; ``spatial`` that mask refined by a two-class spatial mixture model of the window's
channel vectors (cACGMM, :func:`batchsep.dsp.spatial_mixture.spatial_speech_mask`, initialised from it);
``guided`` the same mixture with the model's mask as each bin's fixed class prior. The post-mask: the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from batchsep.dsp import beamform as bf
from batchsep.dsp import spatial_mixture as smm
from batchsep.dsp.stft import StftConfig, istft, stft
from batchsep.errors import ParameterError
from batchsep.pipeline.enhance.multiwindow import overlap_add_multi, segments

MULTICHANNEL_MODES: tuple[str, ...] = ("downmix", "keep", "beamform")
CHANNELS_ALIASES = {"mono": "downmix", "keep": "keep"}
"""``--channels`` (issue 21's spelling) → ``--multichannel``."""
UPDATE_S = 1.0
"""With a forgetting factor, the filter is redesigned every this many seconds."""
BEAM_FRAME_S = 0.128
"""The beamformer's STFT frame (s): 2048 points at 16 kHz (see :class:`MaskSource`)."""
NOISE_HOLD_S = 0.0
"""The speech mask is held this long (s) for the noise weights (:func:`batchsep.dsp.beamform.hold_mask`).
0.128 scores +0.4 dB better against the reverberant image and 1.1 dB worse against the early image
(4 mics, 18 simulated rooms, docs/results.md): the default model's masks aim at the early image, so it is not held by default."""
NOISE_POWER = 2.0
"""The noise weight is ``(1 - held mask) ** NOISE_POWER`` for MVDR, GEV-BAN and delay-and-sum."""
NOISE_POWERS = {
    "mvdr": NOISE_POWER,
    "gev_ban": NOISE_POWER,
    "mwf": 1.0,
    "delay_and_sum": NOISE_POWER,
}
"""The default noise weight power per filter (:func:`default_noise_power`): the MWF keeps 1, the weight its
filter assumes (see the module's docstring)."""
MAX_NOISE_POWER = 4.0
"""The largest noise weight power accepted (``beam_noise_power`` is in (0, this])."""
REFINE = 1
"""Rounds of statistics from the model's mask of the beamformed signal (0: the channels' masks only)."""
MAX_REFINE = 3
"""The most refinement rounds accepted (each a model pass more; whole-file statistics: a read more)."""
BEAM_MASK = "model"
BEAM_MASKS: tuple[str, ...] = ("model", "spatial", "guided")
"""What the statistics are estimated from (default :data:`BEAM_MASK`; see the module's docstring)."""
MASK_PRIORS = {"spatial": "estimated", "guided": "mask"}
BEAM_NAMES = {"mvdr": "MVDR", "gev_ban": "GEV-BAN", "mwf": "MWF", "delay_and_sum": "delay-and-sum"}


def default_noise_power(beamformer: str) -> float:
    """The noise weight power ``p`` (weight ``(1 - m)^p``) the filter ``beamformer`` uses by default.

    >>> default_noise_power("mwf"), default_noise_power("mvdr")
    (1.0, 2.0)
    """
    if beamformer not in NOISE_POWERS:
        raise ParameterError(f"beamformer={beamformer!r} must be one of {list(bf.BEAMFORMERS)}")
    return NOISE_POWERS[beamformer]


def check_multichannel(
    mode: str,
    beamformer: str,
    forgetting: float | None,
    *,
    refine: int = REFINE,
    noise_power: float | None = None,
    mask: str = BEAM_MASK,
) -> None:
    """Raise :class:`ParameterError` for an unknown mode or beamformer, a forgetting factor outside (0, 1),
    ``refine`` (rounds) outside 0..:data:`MAX_REFINE`, ``noise_power`` outside (0, :data:`MAX_NOISE_POWER`]
    (None: the filter's default, :func:`default_noise_power`) or a ``mask`` not in :data:`BEAM_MASKS`."""
    if mode not in MULTICHANNEL_MODES:
        raise ParameterError(f"multichannel={mode!r} must be one of {list(MULTICHANNEL_MODES)}")
    if beamformer not in bf.BEAMFORMERS:
        raise ParameterError(f"beamformer={beamformer!r} must be one of {list(bf.BEAMFORMERS)}")
    if forgetting is not None and not 0.0 < forgetting < 1.0:
        raise ParameterError(
            f"beam_forgetting={forgetting} must be in (0, 1) (or None: whole file)"
        )
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= MAX_REFINE:
        raise ParameterError(f"beam_refine={refine!r} must be an integer in [0, {MAX_REFINE}]")
    p = noise_power
    if p is not None and (
        isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= MAX_NOISE_POWER
    ):
        raise ParameterError(
            f"beam_noise_power={p!r} must be in (0, {MAX_NOISE_POWER:g}] (None: the beamformer's default)"
        )
    if mask not in BEAM_MASKS:
        raise ParameterError(f"beam_mask={mask!r} must be one of {list(BEAM_MASKS)}")


def stft_for_rate(sample_rate: int) -> StftConfig:
    """32 ms frames (a power of two at 16 kHz: 512) with a quarter hop."""
    n_fft = 32 * round(sample_rate / 1000)
    return StftConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4)


class MaskSource:
    """``(X [C, F, T], mask [F, T])`` of a multichannel window ``[C, n]``: the beamformer's STFT and the median
    over channels of the model's speech masks, carried over to that STFT (:func:`resample_mask`).

    ``frame_s``: the beamformer's STFT frame (s; a quarter hop), :data:`BEAM_FRAME_S` by default; ``None``:
    the model's own STFT. In a reverberant room the speech image is not rank one in frames much shorter than
    the room's response, which a per-bin filter charges as speech distortion; longer frames reduce it
    (docs/results.md, beamforming section).
    """

    def __init__(
        self, enhancer: Any, sample_rate: int, frame_s: float | None = BEAM_FRAME_S
    ) -> None:
        self.enhancer = enhancer
        self.own = hasattr(enhancer, "masks") and hasattr(enhancer, "stft_config")
        self.model_stft: StftConfig = (
            enhancer.stft_config if self.own else stft_for_rate(sample_rate)
        )
        self.stft_config: StftConfig = (
            self.model_stft if frame_s is None else beam_stft(self.model_stft.sample_rate, frame_s)
        )

    @property
    def description(self) -> str:
        return "the model's masks" if self.own else "masks |Ŝ|/|X| from the model's output"

    @staticmethod
    def _stft(x: np.ndarray, c: StftConfig) -> np.ndarray:
        return stft(np.ascontiguousarray(x, np.float32), n_fft=c.n_fft, hop_length=c.hop_length,
                    window=c.window)  # fmt: skip

    def stft(self, x: np.ndarray) -> np.ndarray:
        return self._stft(x, self.stft_config)

    def istft(self, Y: np.ndarray, length: int) -> np.ndarray:
        c = self.stft_config
        return istft(np.ascontiguousarray(Y, np.complex64), length=length, n_fft=c.n_fft,
                     hop_length=c.hop_length, window=c.window)  # fmt: skip

    def _model_masks(self, x: np.ndarray) -> np.ndarray:
        """The model's speech masks ``[B, F, T]`` (its STFT, in [0, 1]) of signals ``[B, n]``."""
        x = np.ascontiguousarray(x, np.float32)
        if self.own:
            masks = np.asarray(self.enhancer.masks(x))
        else:
            S = self._stft(np.asarray(self.enhancer(x), np.float32), self.model_stft)
            masks = np.abs(S) / np.maximum(np.abs(self._stft(x, self.model_stft)), 1e-8)
        return np.clip(masks, 0.0, 1.0)

    def _to_beam(self, mask: np.ndarray, n_frames: int) -> np.ndarray:
        if self.stft_config == self.model_stft:
            return np.asarray(mask, np.float64)
        return resample_mask(mask, self.model_stft, self.stft_config, n_frames)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self.stft(x)
        return X, self._to_beam(np.median(self._model_masks(x), axis=0), X.shape[-1])

    def output_mask(self, y: np.ndarray, n_frames: int) -> np.ndarray:
        """The model's speech mask of a mono signal ``y [n]`` (a beamformer's output) in the beamformer's
        STFT ``[F, n_frames]``: what a refinement round estimates the statistics from."""
        return self._to_beam(self._model_masks(np.asarray(y)[None])[0], n_frames)


def beam_stft(sample_rate: int, frame_s: float = BEAM_FRAME_S) -> StftConfig:
    """The beamformer's STFT: frames of ``frame_s`` seconds (2048 points at 16 kHz), a quarter hop, Hann."""
    n_fft = max(4, 2 * round(frame_s * sample_rate / 2))
    return StftConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4)


def resample_mask(
    mask: np.ndarray, source: StftConfig, target: StftConfig, n_frames: int
) -> np.ndarray:
    """A mask ``[F_s, T_s]`` in the STFT ``source`` → ``[F_t, n_frames]`` in ``target`` (same rate, centred
    frames): each target frame takes the mean of the source frames whose centres fall within its hop, and
    each target bin the linear interpolation of the source bins at its frequency."""
    mask = np.asarray(mask, np.float64)
    n_src = mask.shape[1]
    centres = np.arange(n_src) * source.hop_length
    t = np.arange(n_frames) * target.hop_length
    lo = np.searchsorted(centres, t - target.hop_length / 2)
    hi = np.searchsorted(centres, t + target.hop_length / 2)
    lo = np.clip(np.minimum(lo, n_src - 1), 0, None)
    hi = np.maximum(np.minimum(hi, n_src), lo + 1)
    cum = np.concatenate([np.zeros((mask.shape[0], 1)), np.cumsum(mask, axis=1)], axis=1)
    per_frame = (cum[:, hi] - cum[:, lo]) / (hi - lo)  # [F_s, n_frames]
    pos = np.arange(target.n_fft // 2 + 1) * (source.n_fft / target.n_fft)  # in source bins
    i0 = np.clip(np.floor(pos).astype(int), 0, mask.shape[0] - 1)
    i1 = np.minimum(i0 + 1, mask.shape[0] - 1)
    frac = (pos - i0)[:, None]
    return np.clip((1 - frac) * per_frame[i0] + frac * per_frame[i1], 0.0, 1.0)


class BeamformStream:
    """Mask-based beamforming of one file, window by window (see the module's docstring)."""

    def __init__(
        self,
        masks: MaskSource,
        method: str = "mvdr",
        *,
        forgetting: float | None = None,
        overlap: int = 0,
        noise_hold_s: float = NOISE_HOLD_S,
        noise_power: float | None = None,
        refine: int = REFINE,
        mask: str = BEAM_MASK,
    ) -> None:
        check_multichannel(
            "beamform", method, forgetting, refine=refine, noise_power=noise_power, mask=mask
        )
        if noise_hold_s < 0:
            raise ParameterError(f"noise_hold_s={noise_hold_s} must be >= 0")
        self.masks, self.method, self.overlap, self.refine = masks, method, overlap, int(refine)
        self.mask = mask
        c = masks.stft_config
        self.noise_hold_s = noise_hold_s
        self.noise_power = (
            default_noise_power(method) if noise_power is None else float(noise_power)
        )
        self._hold = round(noise_hold_s * c.sample_rate / c.hop_length)
        self.estimator = self._new_estimator(forgetting)
        self.filter: bf.Beamformer | None = None
        self.ref: int | None = None
        self.warnings: list[str] = []
        self._windows = 0

    def _new_estimator(self, forgetting: float | None) -> bf.CovarianceEstimator:
        return bf.CovarianceEstimator(
            forgetting, noise_hold=self._hold, noise_power=self.noise_power
        )

    def _design(self) -> bf.Beamformer:
        phi_s, phi_n = self.estimator.covariances()
        out = bf.design(self.method, phi_s, phi_n, ref=self.ref)
        self.ref = out.ref
        for w in out.warnings:
            if w not in self.warnings:
                self.warnings.append(w)
        return out

    def _stft_and_mask(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X, mask)`` of a window: the channels' median mask, or (refining, once a filter exists) the
        model's mask of the current filter's output; with ``mask`` ``spatial`` or ``guided``, that mask
        refined by the spatial mixture model (:func:`batchsep.dsp.spatial_mixture.spatial_speech_mask`)."""
        if not self.refine or self.filter is None:
            X, m = self.masks(x)
        else:
            X = self.masks.stft(x)
            y = self.masks.istft(bf.apply_filter(self.filter.w, X), x.shape[1])
            m = self.masks.output_mask(y, X.shape[-1])
        if self.mask in MASK_PRIORS and X.shape[0] > 1:
            m = smm.spatial_speech_mask(X, m, prior=MASK_PRIORS[self.mask])
        return X, m

    def accumulate(self, x: np.ndarray) -> None:
        """A statistics pass (whole-file statistics): add a segment ``[C, n]``."""
        X, m = self._stft_and_mask(x)
        self.estimator.update(X, m)

    def next_round(self) -> None:
        """Start a refinement pass: new statistics, from the model's masks of the current filter's output
        (the reference channel is chosen again)."""
        if self.filter is None:
            raise ParameterError("BeamformStream.next_round before finish()")
        self.estimator = self._new_estimator(self.estimator.forgetting)
        self.ref = None

    def fit(self, x: np.ndarray) -> None:
        """Whole-file statistics of a signal ``[C, n]`` held in memory, all rounds (what
        :func:`beamform_pieces` does window by window), then the filter (:meth:`apply`)."""
        for r in range(1 + self.refine):
            if r:
                self.next_round()
            self.accumulate(x)
            self.finish()

    def finish(self) -> None:
        """End of the first pass: design the filter."""
        self.filter = self._design()

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Second pass: the fixed filter applied to a window ``[C, n]`` → ``[1, n]``."""
        if self.filter is None:
            raise ParameterError("BeamformStream.apply before finish()")
        X = self.masks.stft(x)
        return self.masks.istft(bf.apply_filter(self.filter.w, X), x.shape[1])[None]

    def adapt(self, x: np.ndarray) -> np.ndarray:
        """One pass with a forgetting factor: update the statistics with the window's new frames and
        redesign the filter every :data:`UPDATE_S` seconds → ``[1, n]``."""
        X, m = self._stft_and_mask(x)
        hop = self.masks.stft_config.hop_length
        step = max(1, round(UPDATE_S * self.masks.stft_config.sample_rate / hop))
        first_new = 0 if self._windows == 0 else min(X.shape[-1], -(-self.overlap // hop))
        self._windows += 1
        Y = np.empty(X.shape[1:], np.complex128)
        if self.filter is not None:  # the overlap's frames: the filter they were made with
            Y[:, :first_new] = bf.apply_filter(self.filter.w, X[..., :first_new])
        for a in range(first_new, X.shape[-1], step):
            b = min(a + step, X.shape[-1])
            self.estimator.update(X[..., a:b], m[:, a:b])
            self.filter = self._design()
            Y[:, a:b] = bf.apply_filter(self.filter.w, X[..., a:b])
        return self.masks.istft(Y, x.shape[1])[None]

    def description(self, n_channels: int) -> str:
        stats = (
            "whole-file statistics"
            if self.estimator.forgetting is None
            else f"recursive statistics, forgetting factor {self.estimator.forgetting:g}"
        )
        c = self.masks.stft_config
        held = f" held {1000 * self.noise_hold_s:g} ms" if self._hold else ""
        noise = (
            f"noise weight (1 - mask{held})^{self.noise_power:g}, "
            if self._hold or self.noise_power != 1.0
            else ""
        )
        if self.refine and self.estimator.forgetting is None:
            noise += f"refined {self.refine}x by the model's mask of the output, "
        elif self.refine:
            noise += "refined by the model's mask of the output, "
        source = self.masks.description
        prior = ", the mask as each bin's prior" * (self.mask == "guided")
        if self.mask in MASK_PRIORS:
            source += f" refined by a spatial mixture model (cACGMM, {smm.ITERATIONS} EM iterations{prior})"
        return (
            f"{n_channels} channels beamformed ({BEAM_NAMES[self.method]}, {stats}, {noise}"
            f"{1000 * c.n_fft / c.sample_rate:g} ms frames, "
            f"reference channel {(self.ref or 0) + 1} chosen by SNR, {source})"
        )


def beamform_pieces(
    first: Iterable[np.ndarray],
    reopen: Callable[[], Iterable[np.ndarray]],
    beam: BeamformStream,
    *,
    chunk: int,
    overlap: int,
) -> Iterator[np.ndarray]:
    """The beamformed mono signal of a file given as blocks ``[n_i, C]``: with whole-file statistics,
    ``first`` is read once for them, ``reopen()`` gives the blocks again for each refinement round
    (``beam.refine``) and once more for the filter; with a forgetting factor only ``first`` is read."""
    if beam.estimator.forgetting is None:
        for r in range(1 + beam.refine):
            if r:
                beam.next_round()
            for seg in segments(first if r == 0 else reopen(), chunk):
                beam.accumulate(seg)
            beam.finish()
        pieces = overlap_add_multi(reopen(), beam.apply, chunk=chunk, overlap=overlap)
    else:
        pieces = overlap_add_multi(first, beam.adapt, chunk=chunk, overlap=overlap)
    for y in pieces:
        if y.shape[0]:
            yield np.ascontiguousarray(y[:, 0])
