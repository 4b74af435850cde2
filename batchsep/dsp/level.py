"""The level a mask model sees its input at (light: the CLI reads the default without importing torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from batchsep.errors import ParameterError

INPUT_LEVEL_DB = -26.0
"""RMS level (dBFS) each window is brought to before a mask model sees it, for a model that does not record
its own (``input_level_db`` in its ``config.json``, written by ``batchsep train``: the median level of its
training mixtures). The mask then multiplies the window's own STFT, so the output keeps the input's level.
Mask networks are not scale-invariant: the shipped BLSTM, trained on mixtures at -30..-20 dBFS (5th-95th
percentile, median -26), lowered the SI-SDR of its test mixtures by 4.1 dB when they were 20 dB quieter,
and gains +3.4 dB at any level with this normalisation (docs/results.md)."""
MAX_LEVEL_GAIN_DB = 30.0
"""Most gain (and attenuation) the normalisation applies: near-silent windows stay near-silent to the model."""
MODEL_LEVEL: Final = "model"
"""``input_level_db`` value meaning: the level the model records, else :data:`INPUT_LEVEL_DB` (the default)."""

InputLevel = float | None | Literal["model"]
"""A level in dBFS, ``None`` (the raw level: no normalisation) or ``"model"``."""


def check_input_level(level_db: InputLevel) -> None:
    if level_db is None or level_db == MODEL_LEVEL:
        return
    if isinstance(level_db, str) or not -80.0 <= level_db <= 0.0:
        raise ParameterError(
            f"input_level_db={level_db!r} must be in [-80, 0] dBFS, 'model' (the model's own level) "
            "or None (raw level)"
        )


def resolve_input_level(level_db: InputLevel, model_meta: Mapping[str, Any]) -> float | None:
    """The level to normalise to: ``level_db`` itself, or for ``"model"`` the level recorded in the model's
    ``config.json`` (``model_meta``), falling back to :data:`INPUT_LEVEL_DB`."""
    check_input_level(level_db)
    if level_db != MODEL_LEVEL:
        return level_db  # type: ignore[return-value]
    recorded = model_meta.get("input_level_db")
    level = INPUT_LEVEL_DB if recorded is None else float(recorded)
    check_input_level(level)
    return level
