"""Models: enhancement mask estimators (SNMF, DR-NMF, (B)LSTM, oracle) and emotion models.

Importing this package registers every model in :data:`batchsep.models.base.MODELS`.
"""

from batchsep.models import drnmf, lstm_mask, oracle, snmf  # noqa: F401  (registration)
from batchsep.models.base import (
    MODELS,
    BatchsepModel,
    MaskModel,
    build_model,
    deserialize,
    serialize,
)

try:  # the emotion models arrive with their own issue
    from batchsep.models import emotion  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["MODELS", "BatchsepModel", "MaskModel", "build_model", "deserialize", "serialize"]
