"""How a stage's work gets executed: the one place that declares how execution is injected.

Every stage is a Ray-free function that takes its execution as an argument, of one of three kinds declared
here (the serial implementation runs in this process, for tests and ``--local``; the Ray one lives in
``batchsep.distributed``, which ``batchsep.api`` picks; the stage cannot tell them apart):

- :class:`Runner` (argument ``runner``): scan, prepare, features, evaluate and SNMF training. Here:
  :class:`SerialRunner`; Ray: ``distributed.runtime.RayRunner`` (``make_runner``, ``train.snmf_runner``).
- :class:`ShardExecutor` (``executor``): enhance and tag. Here: ``pipeline.enhance.worker.serial_executor``;
  Ray: ``distributed.data.RayDataExecutor`` (``distributed.executors.enhance_executor``).
- :class:`FitExecutor` (``fit_executor``): deep training. Here: ``pipeline.train.driver.serial_fit``
  (``train.emotion.serial_emotion_fit``); Ray: ``distributed.train.RayTrainExecutor`` (Ray Train, DDP).

A :class:`Runner` applies a picklable function to many shards and yields ``(index, result)`` pairs as they
finish (in any order). A :class:`ShardExecutor` does the same for a stateful worker (it loads its models
once per process): it builds the worker from keyword arguments and runs shard tasks through it. A
:class:`FitExecutor` runs one training job (a picklable description of the whole fit) on one or several
(DDP) workers. :class:`AutoRunner` and :class:`AutoExecutor` pick the serial or the Ray implementation per
call by the size of the work: the rule of every stage's default placement (``SMALL_JOB_FILES``,
``SMALL_JOB_SECONDS``; ``batchsep.distributed.runtime.make_runner``, ``distributed.executors``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")
TaskT = TypeVar("TaskT", contravariant=True)
JobT = TypeVar("JobT", contravariant=True)


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


class ShardExecutor(Protocol[TaskT]):
    """Builds a stage's worker from ``worker_kwargs`` (once per process) and runs ``tasks`` through it,
    yielding ``(shard, rows)`` as shards finish (enhance: ``ShardExecutor[ShardTask]``)."""

    def __call__(
        self, worker_kwargs: dict[str, Any], tasks: Sequence[TaskT], /
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Run every task; order of completion, not of input."""
        ...


class FitExecutor(Protocol[JobT]):
    """Runs one training job to its end (one worker, or every DDP worker) and returns its metrics
    (``metrics.json``'s content, written by rank 0)."""

    def __call__(self, job: JobT, /) -> dict[str, Any]:
        """Train ``job``; the outputs are under its ``out_uri``."""
        ...


def shards(items: Sequence[T], size: int) -> list[list[T]]:
    """Split ``items`` into consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"shard size={size} must be >= 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# --- where a job runs: in this process when it is small, else on Ray (one rule for every stage) ---

SMALL_JOB_FILES = 32
"""A job of at most this many files (and at most ``SMALL_JOB_SECONDS`` of audio) runs in this process
when no cluster address, ``--ray`` or ``--workers N`` > 1 is given: starting Ray and its workers takes
10-30 s, longer than such a job's work."""
SMALL_JOB_SECONDS = 120.0
"""At most this much audio (2 minutes) in a small job: in one process the shipped enhancer does it in
about 10 s, a zoo model like DeepFilterNet3 in about a minute."""
BYTES_PER_SECOND = 32_000
"""Files whose duration is not known before the work (enhance and scan inputs) count one second of audio
per this many bytes: 16-bit 16 kHz mono WAV (compressed audio counts as shorter than it is, a 48 kHz or
24-bit WAV as longer), so a small job's inputs hold at most ~3.8 MB."""


@dataclass(frozen=True)
class JobSize:
    """The work of a job as a runner sees it: ``files`` and their audio ``seconds``; ``known`` is False
    when an item's size could not be told (such a job is never called small)."""

    files: int
    seconds: float
    known: bool = True

    def is_small(self) -> bool:
        """Whether the job runs in this process (see ``SMALL_JOB_FILES``, ``SMALL_JOB_SECONDS``)."""
        return self.known and self.files <= SMALL_JOB_FILES and self.seconds <= SMALL_JOB_SECONDS

    def describe(self) -> str:
        """``6 files, 0.5 min of audio``."""
        return f"{self.files} file{'' if self.files == 1 else 's'}, {self.seconds / 60:.1f} min of audio"


def _leaf_seconds(leaf: Any) -> float | None:
    """A file's audio seconds: its ``duration_s`` (a row, a recipe, an evaluate item's fields) or, for a
    listed file (``size``), its bytes / ``BYTES_PER_SECOND``; None when neither is there."""
    if isinstance(leaf, Mapping):
        value = leaf.get("duration_s")
    elif hasattr(leaf, "duration_s"):
        value = leaf.duration_s
    elif isinstance(getattr(leaf, "fields", None), tuple):
        value = dict(leaf.fields).get("duration_s")
    elif isinstance(getattr(leaf, "size", None), int):
        return leaf.size / BYTES_PER_SECOND
    else:
        return None
    return float(value) if isinstance(value, int | float) and value == value else None


def _leaves(item: Any) -> Sequence[Any] | None:
    """The files of one work item of a stage: a scan shard (a list of listed files), an evaluate shard
    (``(items, metrics)``), a features task (``.rows``), a prepare render task (``.recipes``)."""
    for attr in ("rows", "recipes"):
        value = getattr(item, attr, None)
        if isinstance(value, list):
            return value
    if isinstance(item, tuple) and item and isinstance(item[0], list):
        return item[0]
    if isinstance(item, list):
        return item
    return None


def job_size(items: Sequence[Any]) -> JobSize:
    """The files and audio seconds of a stage's work items (see :func:`_leaves`, :func:`_leaf_seconds`);
    ``known=False`` when any item or file is of a shape not listed there."""
    files, seconds = 0, 0.0
    for item in items:
        leaves = _leaves(item)
        if leaves is None:
            return JobSize(files + 1, seconds, known=False)
        for leaf in leaves:
            s = _leaf_seconds(leaf)
            if s is None:
                return JobSize(files + 1, seconds, known=False)
            files, seconds = files + 1, seconds + s
    return JobSize(files, seconds)


def _announce(size: JobSize) -> None:
    """One line on stderr saying where a job runs (it changes with its size; ``--ray`` to override)."""
    print(
        f"batchsep: small job ({size.describe()}): running in this process, one worker "
        "(--ray for the embedded Ray)",
        file=sys.stderr,
        flush=True,
    )


class Placement:
    """Where each call of a runner or executor with the ``auto`` placement runs: in this process when its
    work is small (:meth:`JobSize.is_small`) and no cluster runs in this process yet, else on the big
    runner (``RayRunner``, Ray Data), made on first need and used for every later call, so Ray starts
    at most once per command.

    Parameters
    ----------
    make_big : callable
        Makes the runner (or executor) for work that is not small: Ray starts only when needed.
    big_running : callable, optional
        Whether that runner's cluster already runs in this process (then every call uses it).
    """

    def __init__(
        self, make_big: Callable[[], Any], big_running: Callable[[], bool] | None = None
    ) -> None:
        self.make_big, self.big_running = make_big, big_running
        self._big: Any = None
        self.calls: list[tuple[JobSize, bool]] = []
        """Each call's work and whether it ran in this process (for tests and diagnostics)."""

    def big(self, size: JobSize) -> Any:
        """The big runner for work of ``size``, or None when it runs in this process (announced on
        stderr the first time)."""
        running = self._big is not None or (self.big_running is not None and self.big_running())
        here = not running and size.is_small()
        if here and not any(h for _, h in self.calls):
            _announce(size)
        self.calls.append((size, here))
        if here:
            return None
        if self._big is None:
            self._big = self.make_big()
        return self._big


class AutoRunner:
    """A :class:`Runner` that runs each call's items where :class:`Placement` says: in this process
    (:class:`SerialRunner`) when they are small, else on the runner ``make_big()`` makes."""

    def __init__(
        self, make_big: Callable[[], Runner], big_running: Callable[[], bool] | None = None
    ) -> None:
        self.placement = Placement(make_big, big_running)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not items:
            return iter(())
        big: Runner | None = self.placement.big(job_size(items))
        return (big or SerialRunner()).map_unordered(fn, items)


def _input_seconds(uris: Sequence[str]) -> float | None:
    """The audio seconds of input files by their size (``BYTES_PER_SECOND``); None when one cannot be
    stat'ed (the work will report it: this only decides where it runs)."""
    from batchsep.io import storage

    total = 0
    try:
        for uri in uris:
            fs, path = storage.filesystem(uri)
            size = fs.get_file_info(path).size
            if size is None:
                return None
            total += size
    except Exception:  # a listing that just worked: any failure here means "do not call it small"
        return None
    return total / BYTES_PER_SECOND


class AutoExecutor:
    """The enhance stage's :class:`AutoRunner`, a :class:`ShardExecutor`: shards whose input files are few
    and small (by size, ``BYTES_PER_SECOND``) run through ``small`` (the in-process executor), others
    through the executor ``make_big()`` makes; a task has ``files``, tuples whose first element is the
    input's URI.
    """

    def __init__(
        self,
        small: ShardExecutor[Any],
        make_big: Callable[[], ShardExecutor[Any]],
        big_running: Callable[[], bool] | None = None,
    ) -> None:
        self.small = small
        self.placement = Placement(make_big, big_running)

    def __call__(
        self, worker_kwargs: dict[str, Any], tasks: Sequence[Any], /
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        if not tasks:
            return iter(())
        uris = [f[0] for t in tasks for f in t.files]
        seconds = _input_seconds(uris) if len(uris) <= SMALL_JOB_FILES else None
        size = JobSize(len(uris), seconds or 0.0, known=seconds is not None)
        executor: ShardExecutor[Any] = self.placement.big(size) or self.small
        return executor(worker_kwargs, tasks)
