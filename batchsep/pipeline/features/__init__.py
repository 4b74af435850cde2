"""The features stage: STFT/log-mel feature shards of a prepare run (``driver``, ``worker``, ``options``)."""
