"""A full disk for unit tests: files that :mod:`batchsep.io.storage` writes stop taking bytes after a limit.

``FullDisk`` is a real file whose raw writes stop fitting after ``limit`` bytes (the part that fits is written,
then ``OSError(ENOSPC)``, as the kernel says), under Python's own buffering, as on a full file system. See
``tests/integration/test_enhance_full_disk.py`` for a real full file system (a small tmpfs).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from typing import Any

import pytest

from batchsep.io import storage


class FullDisk(io.FileIO):
    """A raw file that holds at most ``limit`` bytes: then ``OSError(ENOSPC)``."""

    def __init__(self, path: str, mode: str, limit: int) -> None:
        super().__init__(path, mode.replace("b", ""))
        self.limit, self.used = limit, 0

    def write(self, b: Any) -> int:
        room = self.limit - self.used
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = super().write(memoryview(b)[:room]) or 0
        self.used += n
        return n


def full_disk(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Every file :mod:`batchsep.io.storage` writes from now on holds at most ``limit`` bytes."""

    def open_(path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" not in mode:
            return builtins.open(path, mode, *args, **kwargs)
        return io.BufferedWriter(FullDisk(path, mode, limit))

    monkeypatch.setattr(storage, "open", open_, raising=False)
