"""Models: enhancement mask estimators (SNMF, DR-NMF, (B)LSTM, oracle) and emotion models.

Importing this package registers every model in :data:`batchsep.models.base.MODELS`.
"""

from batchsep.models import (  # noqa: F401  (registration)
    dae,
    dc,
    drnmf,
    emotion,
    emotion_stats,
    lstm_mask,
    oracle,
    sce,
    snmf,
)
from batchsep.models.base import (
    MODELS,
    BatchsepModel,
    MaskModel,
    build_model,
    deserialize,
    serialize,
)

__all__ = ["MODELS", "BatchsepModel", "MaskModel", "build_model", "deserialize", "serialize"]
