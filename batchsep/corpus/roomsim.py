"""Simulated multichannel recordings: a talker and 1–2 noise sources in a shoebox room, heard by an array.

Pure arrays (no file I/O; :mod:`bench.beamform` reads the sources and writes the scenes). The room impulse
responses come from ``pyroomacoustics``' image-source method with wall absorption from Sabine's formula for
the drawn T60 (:func:`pyroomacoustics.inverse_sabine`).

A scene (:class:`RoomScene`) holds the mixture ``[C, n]`` and its references:

* ``dry``: the talker's dry signal, delayed by the direct path to the reference microphone (``ref_mic``);
* ``speech_image``: the reverberant talker as each microphone hears it ``[C, n]`` — its ``ref_mic`` row is the
  target a beamformer is scored against (a beamformer reconstructs the speech *as a microphone hears it*; it
  does not dereverberate, so the dry signal would charge it for the room);
* ``early_image``: the direct path and the first :data:`EARLY_S` seconds of reflections of the talker at each
  microphone ``[C, n]`` (the part of ``speech_image`` that a frame-wise beamformer's steering vector models:
  scored against it, a method is not charged for the late reverberation it removes or alters);
* ``noise_image``: everything else at each microphone (the noise sources' images and sensor noise), so that
  ``mixture == speech_image + noise_image``.

The SNR is set at the reference microphone, between the speech image and the noise image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.signal import fftconvolve

from batchsep.errors import ParameterError

Geometry = Literal["linear", "circular"]
SPACING_M = 0.05
"""Spacing of a linear array's microphones (m); a circular array's radius is chosen for the same spacing
between neighbours."""


EARLY_S = 0.05
"""The early image keeps the room impulse response up to this long after each microphone's direct path."""


@dataclass(frozen=True)
class RoomConfig:
    """One scene's room and array (``t60`` in seconds, 0.2–0.7 in the bench)."""

    n_mics: int = 4
    geometry: Geometry = "linear"
    t60: float = 0.4
    snr_db: float = 0.0
    n_noises: int = 1
    sensor_snr_db: float = 40.0
    """White sensor noise at each microphone, this far below the reference microphone's speech."""
    sample_rate: int = 16000
    max_order: int = 40
    """Cap on the image-source order (the Sabine order of a 0.7 s room is far higher; the cap bounds the
    time; the late tail it drops is made up by no ray tracing: the T60 reached is a little shorter)."""

    def __post_init__(self) -> None:
        if self.n_mics < 2:
            raise ParameterError(f"n_mics={self.n_mics} must be >= 2")
        if self.geometry not in ("linear", "circular"):
            raise ParameterError(f"geometry={self.geometry!r} must be 'linear' or 'circular'")
        if not 0.05 <= self.t60 <= 2.0:
            raise ParameterError(f"t60={self.t60} must be in [0.05, 2.0] s")
        if self.n_noises < 1:
            raise ParameterError(f"n_noises={self.n_noises} must be >= 1")


@dataclass(frozen=True)
class RoomScene:
    """A simulated recording and its references (all float64, ``n`` samples at ``sample_rate``)."""

    mixture: np.ndarray
    speech_image: np.ndarray
    noise_image: np.ndarray
    dry: np.ndarray
    ref_mic: int
    sample_rate: int
    room_dim: tuple[float, float, float]
    t60: float
    early_image: np.ndarray | None = None
    """``[C, n]``, see the module's docstring (``None`` only for scenes built by hand)."""


def array_positions(
    center: np.ndarray, n_mics: int, geometry: Geometry, rng: np.random.Generator
) -> np.ndarray:
    """Microphone positions ``[3, C]`` around ``center`` (a horizontal array, random orientation)."""
    theta = rng.uniform(0, 2 * np.pi)
    if geometry == "linear":
        offsets = (np.arange(n_mics) - (n_mics - 1) / 2) * SPACING_M
        xy = np.stack([offsets * np.cos(theta), offsets * np.sin(theta)])
    else:
        radius = SPACING_M / (2 * np.sin(np.pi / n_mics))
        phi = theta + 2 * np.pi * np.arange(n_mics) / n_mics
        xy = radius * np.stack([np.cos(phi), np.sin(phi)])
    return np.vstack([xy, np.zeros((1, n_mics))]) + center[:, None]


def _place(
    rng: np.random.Generator, room: np.ndarray, center: np.ndarray, dist: tuple[float, float]
) -> np.ndarray:
    """A point at a distance in ``dist`` from ``center``, ≥ 0.5 m from the walls (else the nearest such)."""
    lo, hi = np.array([0.5, 0.5, 1.0]), room - np.array([0.5, 0.5, 0.5])
    for _ in range(100):
        d = rng.uniform(*dist)
        az = rng.uniform(0, 2 * np.pi)
        p = center + np.array([d * np.cos(az), d * np.sin(az), rng.uniform(-0.3, 0.3)])
        if np.all(p >= lo) and np.all(p <= hi):
            return p
    return np.clip(p, lo, hi)


def simulate_room(
    speech: np.ndarray,
    noises: list[np.ndarray],
    config: RoomConfig,
    rng: np.random.Generator,
) -> RoomScene:
    """Render ``speech`` (mono) and ``config.n_noises`` noise signals (mono, looped or cropped to the speech's
    length) in a random shoebox room with an array of ``config.n_mics`` microphones.

    Microphone 0 is the reference (``ref_mic``); the SNR at it is ``config.snr_db``.
    """
    import pyroomacoustics as pra

    if len(noises) < config.n_noises:
        raise ParameterError(f"need {config.n_noises} noise signals, got {len(noises)}")
    sr, n = config.sample_rate, len(speech)
    room_dim = np.array([rng.uniform(4, 8), rng.uniform(4, 7), rng.uniform(2.5, 3.2)])
    absorption, order = pra.inverse_sabine(config.t60, room_dim)
    center = np.array(
        [rng.uniform(1.5, room_dim[0] - 1.5), rng.uniform(1.5, room_dim[1] - 1.5), 1.2]
    )
    mics = array_positions(center, config.n_mics, config.geometry, rng)

    def render(signal: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        room = pra.ShoeBox(
            room_dim,
            fs=sr,
            materials=pra.Material(absorption),
            max_order=min(order, config.max_order),
        )
        room.add_source(pos, signal=np.asarray(signal, np.float64))
        room.add_microphone_array(mics)
        room.compute_rir()
        room.simulate()
        sig = np.asarray(room.mic_array.signals)  # [C, n + rir length - 1]
        half = pra.constants.get("frac_delay_length") // 2
        lags = np.linalg.norm(pos[:, None] - mics, axis=0) / room.c * sr + half  # direct paths [C]
        early = np.stack([  # the same convolution as ``simulate``, with each RIR cut EARLY_S after its direct path
            fftconvolve(signal, np.asarray(room.rir[c][0])[: int(lags[c] + EARLY_S * sr)])[:n]
            for c in range(mics.shape[1])
        ])  # fmt: skip
        return sig[:, :n], round(float(lags[0]) - half) + half, early

    speech_pos = _place(rng, room_dim, center, (1.0, 2.5))
    speech_image, direct, early_image = render(speech, speech_pos)
    noise_image = np.zeros_like(speech_image)
    for k in range(config.n_noises):
        noise = np.resize(np.asarray(noises[k], np.float64), n)  # loops a short noise
        img, _, _ = render(noise, _place(rng, room_dim, center, (1.0, 3.0)))
        noise_image += img / max(
            np.sqrt(np.mean(img[0] ** 2)), 1e-12
        )  # equal power at the reference
    p_s = np.mean(speech_image[0] ** 2)
    noise_image *= np.sqrt(
        p_s / max(np.mean(noise_image[0] ** 2), 1e-20) / 10 ** (config.snr_db / 10)
    )
    noise_image += rng.normal(size=noise_image.shape) * np.sqrt(
        p_s / 10 ** (config.sensor_snr_db / 10)
    )
    mixture = speech_image + noise_image
    peak = max(np.abs(mixture).max(), np.abs(speech_image).max(), 1e-12)
    gain = 0.9 / peak
    dry = np.zeros(n)
    dry[direct:] = np.asarray(speech, np.float64)[: max(0, n - direct)]
    return RoomScene(
        mixture=mixture * gain, speech_image=speech_image * gain, noise_image=noise_image * gain,
        dry=dry * gain, early_image=early_image * gain, ref_mic=0, sample_rate=sr, room_dim=tuple(float(v) for v in room_dim),  # type: ignore[arg-type]
        t60=config.t60,
    )  # fmt: skip
