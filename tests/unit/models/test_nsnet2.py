"""NSNet2 frame maths: the DNS reference STFT/ISTFT, streamed in any block size, one hop of delay."""

from __future__ import annotations

import numpy as np

from batchsep.dsp.framestream import FrameStream, run_stream
from batchsep.models.nsnet2 import NSNET2_DELAY, NSNET2_HOP, NsNet2Frames


class ToyNet:
    """A recurrent stand-in for the network: gain from a running mean of the features."""

    def __init__(self) -> None:
        self.h = np.zeros(161, np.float32)

    def __call__(self, feat: np.ndarray) -> np.ndarray:
        out = np.empty_like(feat)
        for t in range(feat.shape[1]):
            self.h = 0.9 * self.h + 0.1 * feat[0, t]
            out[0, t] = 1.0 / (1.0 + np.exp(-(feat[0, t] - self.h)))
        return out


def reference(x: np.ndarray, net: ToyNet) -> np.ndarray:
    """The DNS featurelib computation (``nodelay`` STFT, gain, overlap-add), on the whole signal."""
    win = np.sqrt(np.hanning(320))
    n = x.shape[0]
    xp = np.concatenate([x, np.zeros(-n % 160 + 160)])
    frames = np.stack([xp[k : k + 320] for k in range(0, xp.shape[0] - 160, 160)]) * win
    spec = np.fft.rfft(frames, 320, axis=-1)
    feat = np.log10(np.maximum(np.abs(spec) ** 2, 1e-12)).astype(np.float32)
    gain = np.clip(net(feat[None])[0], 1e-4, 1.0)
    y = np.fft.irfft(spec * gain, 320, axis=-1) * win
    out = np.zeros(xp.shape[0] + 320)
    for k in range(y.shape[0]):
        out[k * 160 : k * 160 + 320] += y[k]
    return out[:n]


def test_stream_equals_reference_any_block() -> None:
    x = np.random.default_rng(1).standard_normal(16000 + 37).astype(np.float32) * 0.1
    ref = reference(x.astype(np.float64), ToyNet())
    for block in (1000, 160, 99999):
        s = FrameStream(NsNet2Frames(ToyNet()), hop=NSNET2_HOP, delay=NSNET2_DELAY, max_frames=7)
        y = run_stream(s, x, block=block)
        assert y.shape == x.shape
        np.testing.assert_allclose(y, ref, atol=2e-6)


def test_unit_gain_reconstructs_after_first_hop() -> None:
    x = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    s = FrameStream(NsNet2Frames(lambda f: np.ones_like(f)), hop=NSNET2_HOP, delay=NSNET2_DELAY)
    y = run_stream(s, x)
    w2 = np.hanning(320)
    ola = w2[:160] + w2[160:]  # the reference's (symmetric Hann) overlap-add gain, close to 1
    np.testing.assert_allclose(y[160:3840], x[160:3840] * np.tile(ola, 23), atol=1e-5)
