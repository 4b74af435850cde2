"""Pure signal processing: validation, STFT, resampling, mixing, masks. No I/O."""

from batchsep.dsp.masks import iam, ibm, irm, psf
from batchsep.dsp.mix import fit_length, mix_at_snr, snr_db
from batchsep.dsp.resample import resample, to_mono, to_rate_mono
from batchsep.dsp.stft import Istft, Stft, StftConfig, istft, stft
from batchsep.dsp.validate import check_positive, check_sample_rate, validate_audio

__all__ = [
    "Istft", "Stft", "StftConfig", "check_positive", "check_sample_rate", "fit_length", "iam",
    "ibm", "irm", "istft", "mix_at_snr", "psf", "resample", "snr_db", "stft", "to_mono",
    "to_rate_mono", "validate_audio",
]
