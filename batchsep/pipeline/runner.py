"""How a stage's shards get executed: the :class:`Runner` protocol and the local serial runner.

Stages are plain functions over one shard. A runner applies such a function to many shards and yields
``(index, result)`` pairs as they finish (in any order). :class:`SerialRunner` runs in this process, for
tests and tiny inputs; ``batchsep.distributed.runtime.RayRunner`` runs the same function as Ray tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    """Applies a picklable function to items, yielding ``(index, result)`` as each finishes."""

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Run ``fn(items[i])`` for every ``i``; order of completion, not of input."""
        ...


class SerialRunner:
    """Runs every item in the calling process, in order."""

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            yield i, fn(item)


def shards(items: Sequence[T], size: int) -> list[list[T]]:
    """Split ``items`` into consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"shard size={size} must be >= 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
