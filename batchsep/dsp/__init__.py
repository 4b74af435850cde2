"""Pure signal processing: validation, STFT, resampling, mixing, masks. No I/O."""

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
