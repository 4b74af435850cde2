"""Figures: valid PNGs of the expected size and colours; placeholders instead of failures.

The metric figures are taken from the session's ``full_report`` (rendering is the slow part).
"""

from __future__ import annotations

import io
import struct

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from batchsep.reporting import plots


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG")
    return struct.unpack(">II", data[16:24])


def test_metric_figures(full_report: dict[str, bytes]) -> None:
    for name in ("sdri_vs_snr.png", "sdri_by_noise.png", "per_speaker.png"):
        png = full_report[name]
        w, h = png_size(png)
        assert 600 < w < 1000 and 300 < h < 600, (name, w, h)
        img = mpimg.imread(io.BytesIO(png))
        assert img[..., :3].std() > 0.05  # not blank
    w, h = png_size(full_report["confusion.png"])
    assert w > 300 and h > 300


def test_series_colours_are_the_palette(full_report: dict[str, bytes]) -> None:
    for name in ("sdri_vs_snr.png", "sdri_by_noise.png", "per_speaker.png"):
        img = (mpimg.imread(io.BytesIO(full_report[name]))[..., :3] * 255).round().astype(int)
        for i in range(2):  # two systems: the first two palette colours are drawn
            rgb = np.array([int(plots.color_of(i)[k : k + 2], 16) for k in (1, 3, 5)])
            assert (np.abs(img - rgb).sum(axis=-1) < 6).sum() > 100, (name, plots.color_of(i))
        unused = np.array([int(plots.color_of(5)[k : k + 2], 16) for k in (1, 3, 5)])
        assert (np.abs(img - unused).sum(axis=-1) < 6).sum() == 0


def test_placeholders_when_no_data() -> None:
    df = pd.DataFrame({"system": ["a"], "sdr_i": [np.nan], "input_snr": [3.0]})
    blank = plots.placeholder("x")
    for png in (
        plots.plot_metric_vs_snr(df),  # no valid value
        plots.plot_metric_by_noise(df),  # no noise_class column
        plots.plot_per_speaker(df),  # no speaker column
    ):
        assert png_size(png) == png_size(blank)


def test_spectrogram_panels() -> None:
    x = np.random.default_rng(0).standard_normal(2000) * 0.1
    w1, h1 = png_size(plots.plot_spectrograms([("a", x), ("b", x)], 8000))
    w2, h2 = png_size(plots.plot_spectrograms([("a", x), ("b", x), ("c", np.zeros(2000))], 8000))
    assert w1 == w2 and h2 > h1
