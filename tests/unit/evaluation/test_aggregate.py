"""Aggregation arithmetic checked by hand on a 7-row table (two models)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batchsep.errors import ParameterError
from batchsep.evaluation.aggregate import (
    by_noise_class,
    by_snr_bin,
    per_speaker,
    snr_bin_labels,
    snr_bins,
    speaker_spread,
    summarize,
)


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["A"] * 4 + ["B"] * 3,
            "sdr_i": [2.0, 4.0, 6.0, np.nan, 10.0, 20.0, 30.0],
            "si_sdr_i": [1.0, 3.0, 5.0, 7.0, 9.0, 19.0, 29.0],
            "pesq": [2.0, 2.5, 3.0, 3.5, 1.0, 2.0, 3.0],
            "stoi": [0.8, 0.9, 0.7, 0.6, 0.5, 0.5, 0.8],
            "input_snr": [-7.0, 0.0, 4.9, 15.0, 5.0, 5.0, 10.0],
            "noise_class": ["babble", "babble", "car", "car", "car", "car", "car"],
            "speaker": ["s1", "s1", "s2", "s2", "s1", "s2", "s2"],
            "duration_s": [2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.0],
            "seconds": [0.5, 0.5, 0.5, 0.5, 1.0, 2.0, 3.0],
        }
    )


def test_summarize_by_hand(table: pd.DataFrame) -> None:
    s = summarize(table)
    assert list(s.index) == ["A", "B"]
    a, b = s.loc["A"], s.loc["B"]
    assert a["n_files"] == 4 and b["n_files"] == 3
    assert a["n_incomplete"] == 1 and b["n_incomplete"] == 0  # A's NaN SDRi
    assert a["sdr_i_mean"] == pytest.approx(4.0) and a["sdr_i_median"] == pytest.approx(4.0)
    assert a["si_sdr_i_mean"] == pytest.approx(4.0)
    assert a["pesq_mean"] == pytest.approx(2.75) and a["stoi_median"] == pytest.approx(0.75)
    assert b["sdr_i_mean"] == pytest.approx(20.0) and b["si_sdr_i_median"] == pytest.approx(19.0)
    assert a["audio_s"] == pytest.approx(10.0) and a["processing_s"] == pytest.approx(2.0)
    assert a["x_real_time"] == pytest.approx(5.0)
    assert b["x_real_time"] == pytest.approx(12.0 / 6.0)
    assert np.isnan(a["pesq_i_mean"])  # absent column: NaN, not an error


def test_summarize_without_timing_and_other_key(table: pd.DataFrame) -> None:
    s = summarize(table.drop(columns=["seconds"]).assign(run="r1"), by="run", metrics=["sdr_i"])
    assert list(s.columns) == [
        "n_files",
        "n_incomplete",
        "sdr_i_mean",
        "sdr_i_median",
        "audio_s",
        "processing_s",
        "x_real_time",
    ]
    assert s.loc["r1", "sdr_i_mean"] == pytest.approx(np.mean([2, 4, 6, 10, 20, 30]))
    assert np.isnan(s.loc["r1", "x_real_time"])


def test_snr_bins_edges() -> None:
    assert snr_bin_labels() == [
        "< -5 dB",
        "-5 to 0 dB",
        "0 to 5 dB",
        "5 to 10 dB",
        "10 to 15 dB",
        ">= 15 dB",
    ]
    bins = snr_bins(np.array([-5.0, -0.001, 0.0, 4.999, 15.0, np.nan]))
    assert list(bins.astype(object)[:5]) == [
        "-5 to 0 dB",
        "-5 to 0 dB",
        "0 to 5 dB",
        "0 to 5 dB",
        ">= 15 dB",
    ]
    assert pd.isna(bins[5])
    with pytest.raises(ParameterError, match="strictly increasing"):
        snr_bins([1.0], edges=[5.0, 0.0])


def test_by_snr_bin_by_hand(table: pd.DataFrame) -> None:
    out = by_snr_bin(table)
    rows = [(r.model, r.snr_bin, r.n, r.mean, r.median) for r in out.itertuples(index=False)]
    assert rows == [
        ("A", "< -5 dB", 1, 2.0, 2.0),
        ("A", "0 to 5 dB", 2, 5.0, 5.0),  # 0.0 and 4.9; the 15 dB row has NaN SDRi
        ("B", "5 to 10 dB", 2, 15.0, 15.0),
        ("B", "10 to 15 dB", 1, 30.0, 30.0),
    ]
    assert out.loc[2, "std"] == pytest.approx(np.std([10, 20], ddof=1))


def test_by_noise_class_by_hand(table: pd.DataFrame) -> None:
    out = by_noise_class(table, metric="si_sdr_i")
    got = {(r.model, r.noise_class): (r.n, r.mean) for r in out.itertuples(index=False)}
    assert got == {("A", "babble"): (2, 2.0), ("A", "car"): (2, 6.0), ("B", "car"): (3, 19.0)}


def test_per_speaker_and_spread_by_hand(table: pd.DataFrame) -> None:
    ps = per_speaker(table)
    got = {(r.model, r.speaker): r.mean for r in ps.itertuples(index=False)}
    assert got == {("A", "s1"): 3.0, ("A", "s2"): 6.0, ("B", "s1"): 10.0, ("B", "s2"): 25.0}
    spread = speaker_spread(table)
    assert spread.loc["A", "n_speakers"] == 2
    assert spread.loc["A", "mean"] == pytest.approx(4.5)
    assert spread.loc["A", "std"] == pytest.approx(1.5)
    assert spread.loc["B", "min"] == 10.0 and spread.loc["B", "max"] == 25.0
    assert spread.loc["B", "worst_speaker"] == "s1" and spread.loc["B", "best_speaker"] == "s2"


def test_missing_columns_raise(table: pd.DataFrame) -> None:
    with pytest.raises(ParameterError, match="lacks columns \\['noise_class'\\]"):
        by_noise_class(table.drop(columns=["noise_class"]))
    with pytest.raises(ParameterError, match="lacks columns \\['system'\\]"):
        summarize(table, by="system")
    with pytest.raises(ParameterError, match="expected a pandas DataFrame"):
        summarize({"model": ["a"]})  # type: ignore[arg-type]
