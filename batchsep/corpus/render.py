"""Rendering one mixture from its recipe: the speech segment, the noise looped or cropped at the drawn SNR,
one output gain, every signal on the 24-bit PCM grid (:func:`render`, used by ``batchsep prepare``).

Pure (no I/O): :mod:`batchsep.pipeline.prepare.render` decodes the files and writes the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batchsep.corpus.mixtures import Recipe
from batchsep.dsp.mix import fit_length, mix_at_snr
from batchsep.errors import ParameterError

PCM24_SCALE = float(1 << 23)


def quantize_pcm24(x: np.ndarray) -> np.ndarray:
    """Round to the 24-bit PCM grid ``k / 2**23``, ``k`` in ``[-2**23, 2**23 - 1]``; float32 output.

    These values survive a 24-bit FLAC encode/decode unchanged.
    """
    k = np.clip(
        np.round(np.asarray(x, dtype=np.float64) * PCM24_SCALE), -PCM24_SCALE, PCM24_SCALE - 1
    )
    return (k / PCM24_SCALE).astype(np.float32)


@dataclass(frozen=True)
class RenderedMixture:
    """Rendered signals [shape=(n_samples,)], float32 on the 24-bit grid; ``noisy == clean + noise``."""

    noisy: np.ndarray
    clean: np.ndarray
    noise: np.ndarray
    noise_gain: float
    output_gain: float

    def streams(self) -> dict[str, np.ndarray]:
        return {"noisy": self.noisy, "clean": self.clean, "noise": self.noise}


def render(
    speech: np.ndarray, noise: np.ndarray, recipe: Recipe, *, max_peak: float = 0.99
) -> RenderedMixture:
    """Render one mixture from the whole speech file and the whole noise file (mono, recipe's rate).

    Parameters
    ----------
    speech : np.ndarray [shape=(n_speech,)]
        The speech file at ``recipe.sample_rate`` (the segment is cut here; a segment reaching past
        the end, from a length estimate off by a sample, is zero-padded).
    noise : np.ndarray [shape=(n_noise,)]
        The noise file at ``recipe.sample_rate``; looped or cropped from ``recipe.noise_offset``.
    recipe : Recipe
    max_peak : float
        Largest absolute sample value of the outputs.

    Returns
    -------
    RenderedMixture
        ``10·log10(‖clean‖² / ‖noise‖²)`` equals ``recipe.snr_db`` up to 24-bit rounding.

    Raises
    ------
    ParameterError
        If the speech or the noise segment is digital silence (no SNR is defined).
    """
    n = recipe.n_samples
    seg = np.asarray(speech, dtype=np.float64)[recipe.speech_offset : recipe.speech_offset + n]
    if seg.shape[0] < n:
        seg = np.pad(seg, (0, n - seg.shape[0]))
    noise_seg = fit_length(np.asarray(noise, dtype=np.float64), n, offset=recipe.noise_offset)
    try:
        _, scaled, gain = mix_at_snr(seg, noise_seg, recipe.snr_db)
    except ParameterError as e:
        raise ParameterError(f"{recipe.mixture_id}: {e}") from None
    peak = max(
        float(np.abs(seg).max()), float(np.abs(scaled).max()), float(np.abs(seg + scaled).max())
    )
    out_gain = min(1.0, max_peak / peak)
    clean = quantize_pcm24(seg * out_gain)
    noise_q = quantize_pcm24(scaled * out_gain)
    return RenderedMixture(clean + noise_q, clean, noise_q, gain, out_gain)
