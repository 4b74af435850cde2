"""batchsep: distributed batch speech enhancement and emotion tagging for large audio corpora."""

from __future__ import annotations

from typing import Any

from batchsep._version import __version__

__all__ = [
    "__version__",
    "enhance",
    "evaluate",
    "features",
    "prepare",
    "report",
    "scan",
    "tag",
    "train",
]


def __getattr__(name: str) -> Any:  # lazy: `import batchsep` stays cheap (no torch/ray import)
    if name in {"scan", "enhance", "tag", "prepare", "features", "train", "evaluate", "report"}:
        from batchsep import api

        return getattr(api, name)
    raise AttributeError(f"module 'batchsep' has no attribute {name!r}")
