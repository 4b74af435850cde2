"""Unit tests of the enhance stage's planning."""

from __future__ import annotations

from typing import Any, cast

import pytest

from batchsep.pipeline.enhance.driver import MAX_AUTO_SHARD, auto_shard_size


@pytest.mark.parametrize(
    ("n_files", "expected"),
    [(0, 1), (1, 1), (17, 1), (32, 2), (100, 6), (511, 31), (512, 32), (2000, MAX_AUTO_SHARD)],
)
def test_auto_shard_size_gives_at_least_16_shards_of_at_most_32_files(n_files, expected):
    size = auto_shard_size(n_files)
    assert size == expected
    n_shards = -(-n_files // size)
    assert size == MAX_AUTO_SHARD or n_files <= 16 or n_shards >= 16


# --- input-level normalisation -------------------------------------------------------------------------


def _enhancer(level_db):
    import torch

    from batchsep.models import build_model
    from batchsep.models.base import MaskModel
    from batchsep.pipeline.enhance.enhancer import MaskEnhancer

    torch.manual_seed(0)
    model = build_model("lstm", {"n_layers": 1, "hidden": 16})
    assert isinstance(model, MaskModel)
    return MaskEnhancer(model, input_level_db=level_db)


def _signal(n=16000, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("gain", [0.5, 3.0, 10.0])
def test_normalised_enhancer_is_level_invariant(gain):
    """With the normalisation, enhancing x * g gives g * enhance(x): the mask does not depend on level
    (windows at about -23 and -49 dBFS: every gain here keeps both within the ±30 dB the normalisation
    may apply)."""
    import numpy as np

    enh = _enhancer(-26.0)
    x = np.stack([_signal(seed=0), _signal(seed=1) * 0.05])  # two windows at different levels
    np.testing.assert_allclose(enh(x * gain), enh(x) * gain, rtol=1e-4, atol=1e-6 * gain)


def test_raw_level_enhancer_depends_on_level():
    """The reason for the normalisation: the same model without it masks a quieter input differently."""
    import numpy as np

    enh = _enhancer(None)
    x = _signal()[None]
    assert np.max(np.abs(enh(x * 0.01) / 0.01 - enh(x))) > 1e-3


def test_normalised_enhancer_batch_equals_one_by_one_and_silence_stays_silent():
    import numpy as np

    enh = _enhancer(-26.0)
    x = np.stack([_signal(seed=2), _signal(seed=3) * 0.001, np.zeros(16000, np.float32)])
    batch = enh(x)
    for i in range(3):
        np.testing.assert_allclose(batch[i], enh(x[i : i + 1])[0], rtol=1e-5, atol=1e-7)
    assert np.isfinite(batch).all() and not batch[2].any()


def test_level_gain_is_bounded():
    import torch

    from batchsep.dsp.level import MAX_LEVEL_GAIN_DB
    from batchsep.pipeline.enhance.enhancer import level_gain

    x = torch.stack([torch.zeros(100), torch.full((100,), 1e-6), torch.full((100,), 0.05)])
    g = level_gain(x, -26.0)
    limit = 10 ** (MAX_LEVEL_GAIN_DB / 20)
    assert torch.allclose(g[:2], torch.full((2,), limit))
    assert torch.allclose(g[2], torch.tensor(10 ** (-26 / 20) / 0.05))


@pytest.mark.parametrize("bad", [5.0, -100.0])
def test_input_level_out_of_range_is_refused(bad):
    from batchsep.errors import ParameterError
    from batchsep.pipeline.enhance.file import EnhanceOptions

    with pytest.raises(ParameterError, match="input_level_db"):
        EnhanceOptions(input_level_db=bad)


def test_model_level_resolves_to_the_recorded_level_else_the_default():
    from batchsep.dsp.level import INPUT_LEVEL_DB, resolve_input_level
    from batchsep.errors import ParameterError

    assert resolve_input_level("model", {"input_level_db": -35.0}) == -35.0
    assert resolve_input_level("model", {}) == INPUT_LEVEL_DB
    assert resolve_input_level(-12.5, {"input_level_db": -35.0}) == -12.5
    assert resolve_input_level(None, {"input_level_db": -35.0}) is None
    for bad_meta, bad_option in (({"input_level_db": 7.0}, "model"), ({}, "loud")):
        with pytest.raises(ParameterError, match="input_level_db"):
            resolve_input_level(cast(Any, bad_option), bad_meta)  # "loud": not a declared value


def test_shipped_enhancer_records_its_training_level():
    import json

    from batchsep.io.checkpoint import PRETRAINED_DIR
    from batchsep.pipeline.enhance.enhancer import load_enhancer

    config = json.loads((PRETRAINED_DIR / "enhancer" / "config.json").read_text())
    assert load_enhancer("default")[0].input_level_db == config["input_level_db"] == -31.0
    # what training wrote: its (last stage's) mixtures' median level, a plausible dBFS value
    assert -45.0 <= config["input_level_db"] <= -15.0


def test_mask_enhancer_needs_a_resolved_level():
    from batchsep.errors import ParameterError

    with pytest.raises(ParameterError, match="load_enhancer"):
        _enhancer("model")
