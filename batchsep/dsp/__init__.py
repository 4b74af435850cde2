"""Pure signal processing: validation, STFT, resampling, mixing, masks. No I/O."""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time each name is imported when first used (see _Package)
    from batchsep.dsp.masks import iam, ibm, irm, psf
    from batchsep.dsp.mel import (
        EmotionFeatureConfig,
        LogMel,
        emotion_features,
        fix_frames,
        log_mel,
        normalize_utterance,
    )
    from batchsep.dsp.mix import fit_length, mix_at_snr, snr_db
    from batchsep.dsp.resample import resample, to_mono, to_rate_mono
    from batchsep.dsp.stft import Istft, Stft, StftConfig, istft, stft
    from batchsep.dsp.vad import trim_silence, voiced_segments
    from batchsep.dsp.validate import check_positive, check_sample_rate, validate_audio

_WHERE = {
    "EmotionFeatureConfig": "batchsep.dsp.mel",
    "Istft": "batchsep.dsp.stft",
    "LogMel": "batchsep.dsp.mel",
    "Stft": "batchsep.dsp.stft",
    "StftConfig": "batchsep.dsp.stft",
    "check_positive": "batchsep.dsp.validate",
    "check_sample_rate": "batchsep.dsp.validate",
    "emotion_features": "batchsep.dsp.mel",
    "fit_length": "batchsep.dsp.mix",
    "fix_frames": "batchsep.dsp.mel",
    "iam": "batchsep.dsp.masks",
    "ibm": "batchsep.dsp.masks",
    "irm": "batchsep.dsp.masks",
    "istft": "batchsep.dsp.stft",
    "log_mel": "batchsep.dsp.mel",
    "mix_at_snr": "batchsep.dsp.mix",
    "normalize_utterance": "batchsep.dsp.mel",
    "psf": "batchsep.dsp.masks",
    "resample": "batchsep.dsp.resample",
    "snr_db": "batchsep.dsp.mix",
    "stft": "batchsep.dsp.stft",
    "to_mono": "batchsep.dsp.resample",
    "to_rate_mono": "batchsep.dsp.resample",
    "trim_silence": "batchsep.dsp.vad",
    "validate_audio": "batchsep.dsp.validate",
    "voiced_segments": "batchsep.dsp.vad",
}
"""Where each name of the package lives. Imported on first use, so that a light module (``level``, which the
CLI reads its defaults from) does not import torch with the package."""


class _Package(types.ModuleType):
    """``batchsep.dsp``: its names imported on first use. ``stft`` and ``resample`` are both a module and a
    function; the package's attribute stays the function (as an eager ``from .stft import stft`` made it)."""

    def __getattr__(self, name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module 'batchsep.dsp' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return  # the import system binding submodule `stft`: the function keeps the name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "EmotionFeatureConfig",
    "Istft",
    "LogMel",
    "Stft",
    "StftConfig",
    "check_positive",
    "check_sample_rate",
    "emotion_features",
    "fit_length",
    "fix_frames",
    "iam",
    "ibm",
    "irm",
    "istft",
    "log_mel",
    "mix_at_snr",
    "normalize_utterance",
    "psf",
    "resample",
    "snr_db",
    "stft",
    "to_mono",
    "to_rate_mono",
    "trim_silence",
    "validate_audio",
    "voiced_segments",
]
