"""Simulated rooms: shapes, the SNR at the reference microphone, references that add up."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.corpus.roomsim import RoomConfig, array_positions, simulate_room
from batchsep.errors import ParameterError


@pytest.mark.parametrize(("n_mics", "geometry", "t60"), [(2, "linear", 0.2), (4, "circular", 0.6)])
def test_scene_shapes_snr_and_references(n_mics, geometry, t60):
    rng = np.random.default_rng(0)
    speech = rng.normal(size=8000) * 0.1
    noises = [rng.normal(size=3000), rng.normal(size=9000)]  # looped / cropped to the speech
    config = RoomConfig(n_mics=n_mics, geometry=geometry, t60=t60, snr_db=5.0, n_noises=2)
    sc = simulate_room(speech, noises, config, rng)
    assert sc.mixture.shape == sc.speech_image.shape == sc.noise_image.shape == (n_mics, 8000)
    np.testing.assert_allclose(sc.mixture, sc.speech_image + sc.noise_image, atol=1e-12)
    snr = 10 * np.log10(np.sum(sc.speech_image[0] ** 2) / np.sum(sc.noise_image[0] ** 2))
    assert snr == pytest.approx(5.0, abs=0.1)  # sensor noise 40 dB down moves it a little
    assert np.abs(sc.mixture).max() <= 0.9 + 1e-9
    assert sc.dry.shape == (8000,) and sc.ref_mic == 0 and sc.t60 == t60
    # the dry talker is delayed by the direct path: its correlation with the reference image peaks at lag 0
    xc = [np.dot(np.roll(sc.dry, lag), sc.speech_image[0]) for lag in range(-40, 41)]
    assert abs(int(np.argmax(xc)) - 40) <= 1


def test_array_geometry_and_bad_configs():
    rng = np.random.default_rng(1)
    lin = array_positions(np.array([2.0, 2.0, 1.2]), 4, "linear", rng)
    gaps = np.linalg.norm(np.diff(lin, axis=1), axis=0)
    np.testing.assert_allclose(gaps, 0.05)
    circ = array_positions(np.array([2.0, 2.0, 1.2]), 8, "circular", rng)
    np.testing.assert_allclose(np.linalg.norm(circ[:, 1] - circ[:, 0]), 0.05)
    for bad in [{"n_mics": 1}, {"geometry": "planar"}, {"t60": 5.0}, {"n_noises": 0}]:
        with pytest.raises(ParameterError):
            RoomConfig(**bad)  # type: ignore[arg-type]


def test_early_image_is_the_image_with_the_rir_cut_after_early_s():
    """An impulse as the talker: the speech image is the RIR itself, the early image its first part — equal up
    to ``EARLY_S`` after the direct path, zero after — and it leaves out a part of the reverberant energy."""
    from batchsep.corpus.roomsim import EARLY_S

    rng = np.random.default_rng(2)
    impulse = np.zeros(8000)
    impulse[0] = 1.0
    config = RoomConfig(n_mics=3, t60=0.4, sensor_snr_db=200.0)
    sc = simulate_room(impulse, [rng.normal(size=8000)], config, rng)
    assert sc.early_image is not None and sc.early_image.shape == (3, 8000)
    for c in range(3):
        early, full = sc.early_image[c], sc.speech_image[c]
        last = int(np.flatnonzero(np.abs(early) > 1e-12)[-1])
        assert (
            0.9 * EARLY_S * 16000 < last < EARLY_S * 16000 + 16000 * 8 / 343 + 100
        )  # room ≤ 8 m across
        np.testing.assert_allclose(early[: last + 1], full[: last + 1], atol=1e-12)
        assert np.abs(early[last + 1 :]).max() < 1e-12
        assert np.sum(full[last + 1 :] ** 2) > 0.01 * np.sum(full**2)  # the late tail is not in it
