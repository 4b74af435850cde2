"""The console of a command: progress (a bar on a terminal, plain lines anywhere else) and stderr hygiene.

On a terminal a tqdm bar shows files done, hours of audio and failures; lines that Ray prints meanwhile (its
workers' output, its own log lines) are written above the bar instead of through it. Anywhere else (a file,
a pipe, a Ray job's log) a plain line is printed every ``BATCHSEP_PROGRESS_S`` seconds (default
:data:`INTERVAL_S`) as shards complete, also while none does (workers starting, a long shard), and one at
the end of each phase::

    enhance: 0/20 files (0%), 0.000 h of audio, 0 failed, 0:05 elapsed, ETA after the first shard
    enhance: 12/20 files (60%), 0.021 h of audio, 3.4x real time, 0 failed, 0:22 elapsed, ETA 0:15

No ANSI escape is written when stderr is no terminal (Ray's coloured worker prefixes are turned off).

The driver's stderr (file descriptor 2, where Ray's C++ core writes its log lines) passes through a filter
that drops the lines listed in :data:`NOISE` and nothing else: every other line, errors included, is
passed on unchanged. ``BATCHSEP_RAW_STDERR=1`` turns the filter off.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

INTERVAL_S = 5.0
"""Seconds between two progress lines when stderr is no terminal (``BATCHSEP_PROGRESS_S`` overrides)."""

NOISE = (
    # Ray Data's actor pool creates its actors with max_restarts=-1 and its context and transformer in
    # the object store: Ray's core worker logs this at level E on every run (ray-project/ray#53727). The
    # pool's actors do restart; batchsep re-runs unfinished shards on a new pool should that fail.
    re.compile(rb"core_worker\.cc:\d+: Actor with class name: .*max_restarts > 0"),
)
"""Lines of the driver's stderr that are dropped: Ray's messages that read like errors and are none."""

_state: dict[str, Any] = {"tty": None, "filter": None}


def stderr_is_tty() -> bool:
    """Whether the command's stderr is a terminal (as it was before :func:`filtered_stderr` piped it)."""
    if _state["tty"] is None:
        try:
            _state["tty"] = os.isatty(2)
        except OSError:
            _state["tty"] = False
    return bool(_state["tty"])


def _ansi_off() -> None:
    """No colour codes in redirected output: Ray colours its worker prefixes unless told not to."""
    if not stderr_is_tty() or not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


class _Filter:
    """File descriptor 2 redirected into a pipe; a thread passes its lines on, :data:`NOISE` excepted."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.real: IO[str] = open(  # noqa: SIM115  (closed by stop)
            os.dup(self.saved), "w", buffering=1, encoding="utf-8", errors="replace"
        )
        self.lock = threading.Lock()
        self.sink: Callable[[str], None] = self._write
        self.marker = f"\0batchsep-flush-{os.getpid()}\0\n".encode()
        self.flushed = threading.Event()
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self.read_fd = r
        # the thread runs until the process ends: child processes that inherited the pipe as their stderr
        # never block on it, and what they write is still passed on
        threading.Thread(target=self._pump, name="batchsep-stderr", daemon=True).start()

    def _write(self, text: str) -> None:
        self.real.write(text)
        self.real.flush()

    def _emit(self, data: bytes) -> None:
        if self.marker.strip(b"\n") in data:
            data = data.replace(self.marker.strip(b"\n"), b"")
            self.flushed.set()
            if not data.strip(b"\n"):
                return
        if any(p.search(data) for p in NOISE):
            return
        with self.lock, contextlib.suppress(OSError, ValueError):
            self.sink(data.decode("utf-8", errors="replace"))

    def _pump(self) -> None:
        buf = b""
        while True:
            ready, _, _ = select.select([self.read_fd], [], [], 0.2 if buf else None)
            if not ready:  # a partial line that stays partial (a prompt, a bar): pass it on
                self._emit(buf)
                buf = b""
                continue
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                if buf:
                    self._emit(buf)
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._emit(line + b"\n")

    def stop(self) -> None:
        """Pass on what is in the pipe, and give fd 2 back (the thread goes on draining the pipe)."""
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        self.flushed.clear()
        with contextlib.suppress(OSError):
            os.write(2, self.marker)
            self.flushed.wait(2.0)
        os.dup2(self.saved, 2)
        os.close(self.saved)
        with self.lock:
            self.sink = self._write


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Run the block with the driver's stderr filtered (see the module's docstring); a no-op when stderr
    is not the process's own (a test runner's capture) or ``BATCHSEP_RAW_STDERR=1``."""
    stderr_is_tty()
    _ansi_off()
    if (
        _state["filter"] is not None
        or os.environ.get("BATCHSEP_RAW_STDERR") == "1"
        or sys.stderr is not sys.__stderr__
    ):
        yield
        return
    try:
        filt = _Filter()
    except OSError:
        yield
        return
    _state["filter"] = filt
    try:
        yield
    finally:
        _state["filter"] = None
        filt.stop()


def _hms(seconds: float) -> str:
    s = round(seconds)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _speed(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


class _LineWriter:
    """A text stream whose complete lines are written above the progress bar (partial ones are held)."""

    def __init__(self, stream: IO[str], write_above: Callable[[str], None]) -> None:
        self.stream, self.write_above, self.held = stream, write_above, ""

    def write(self, text: str) -> int:
        self.held += text
        if "\n" in self.held:
            lines, _, self.held = self.held.rpartition("\n")
            self.write_above(lines + "\n")
        return len(text)

    def flush(self) -> None:
        if self.held:
            self.write_above(self.held)
            self.held = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class Progress:
    """Progress of a command over one or more phases (scan inputs, render, enhance, ...).

    ``start(phase, total)`` begins a phase, ``update(n, seconds, failed=0)`` counts ``n`` more items done
    (``seconds`` of audio, ``failed`` of them failed), ``close()`` ends the phase. On a terminal: a tqdm
    bar; elsewhere: plain lines (see the module's docstring). ``tty`` forces one or the other (tests).
    """

    def __init__(
        self, *, unit: str = "file", tty: bool | None = None, interval_s: float | None = None
    ) -> None:
        self.unit = unit
        self.tty = stderr_is_tty() if tty is None else tty
        env = os.environ.get("BATCHSEP_PROGRESS_S")
        self.interval_s = interval_s if interval_s is not None else float(env or INTERVAL_S)
        self.bar: Any = None
        self.phase: str | None = None
        self._restore: list[tuple[str, Any]] = []
        self._lock = threading.RLock()
        self._stop_beat: threading.Event | None = None

    # -- one phase --------------------------------------------------------------------------------
    def start(self, phase: str, total: int) -> None:
        self.close()
        self.phase, self.total = phase, total
        self.done = self.failed = 0
        self.audio_s = 0.0
        self.t0 = self.last = time.monotonic()
        self.first: tuple[float, int] | None = (
            None  # (time, done) of the first update: start-up behind
        )
        if self.tty:
            self._start_bar()
        else:
            self._line(f"{self.total} {self._units(self.total)} to do")
            self._start_beat()

    def update(self, n: int, seconds: float, failed: int = 0) -> None:
        if self.phase is None:
            return
        self.done += n
        self.audio_s += seconds
        self.failed += failed
        if self.first is None:
            self.first = (time.monotonic(), self.done)
        if self.bar is not None:
            post = f"{self.audio_s / 3600:.2f} h audio"
            if self.failed:
                post += f", {self.failed} failed"
            self.bar.set_postfix_str(post, refresh=False)
            self.bar.update(n)
        elif time.monotonic() - self.last >= self.interval_s and self.done < self.total:
            self._line(self.status())

    def close(self) -> None:
        if self.phase is None:
            return
        self._stop_heartbeat()
        if self.bar is not None:
            self._stop_bar()
        elif self.done:
            self._line(self.status(final=True))
        self.phase = None

    __call__ = update

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- text ---------------------------------------------------------------------------------------
    def _units(self, n: int) -> str:
        return self.unit if n == 1 else f"{self.unit}s"

    def status(self, *, final: bool = False) -> str:
        """``12/20 files (60%), 0.021 h of audio, 3.4x real time, 0 failed, 0:22 elapsed, ETA 0:15``."""
        elapsed = max(1e-9, time.monotonic() - self.t0)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [
            f"{self.done}/{self.total} {self._units(self.total)}{pct}",
            f"{self.audio_s / 3600:.3f} h of audio",
        ]
        if self.audio_s > 0:
            parts.append(f"{_speed(self.audio_s / elapsed)} real time")
        parts += [f"{self.failed} failed", f"{_hms(elapsed)} elapsed"]
        if not final and self.done == 0:
            parts.append("ETA after the first shard")
        elif not final and self.done < self.total:
            eta = self._eta()
            parts.append(f"ETA {_hms(eta)}" if eta is not None else "ETA after the next shard")
        elif final:
            parts.append("done" if self.done >= self.total else "stopped")
        return ", ".join(parts)

    def _eta(self) -> float | None:
        """Seconds left at the pace since the first update (the workers' start-up, behind it, is not
        repeated); None until a second update gives that pace."""
        if self.first is None or self.done <= self.first[1]:
            return None
        t1, done1 = self.first
        return (self.total - self.done) * (time.monotonic() - t1) / (self.done - done1)

    def _line(self, text: str) -> None:
        with self._lock:
            self.last = time.monotonic()
            print(f"{self.phase}: {text}", file=sys.stderr, flush=True)

    # -- the plain lines' heartbeat -----------------------------------------------------------------
    def _start_beat(self) -> None:
        """A line every ``interval_s`` also while no shard completes (plain lines only; none with an
        interval of 0, which asks for a line per update)."""
        if self.interval_s <= 0:
            return
        stop = self._stop_beat = threading.Event()

        def beat() -> None:
            while not stop.wait(min(1.0, self.interval_s)):
                with self._lock:  # never after close() (it sets ``stop`` holding the lock)
                    if stop.is_set():
                        return
                    if time.monotonic() - self.last >= self.interval_s:
                        self._line(self.status())

        threading.Thread(target=beat, name="batchsep-progress", daemon=True).start()

    def _stop_heartbeat(self) -> None:
        with self._lock:
            if self._stop_beat is not None:
                self._stop_beat.set()
                self._stop_beat = None

    # -- the bar --------------------------------------------------------------------------------------
    def _start_bar(self) -> None:
        from tqdm.auto import tqdm

        filt = _state["filter"]
        out = filt.real if filt is not None else sys.stderr
        self.bar = tqdm(
            total=self.total, unit=self.unit, desc=self.phase, dynamic_ncols=True, file=out
        )
        bar = self.bar

        def above(text: str) -> None:  # tqdm.write's way: clear the bar, write, draw it again
            with bar.external_write_mode(file=out):
                out.write(text)
                out.flush()

        # Python-level writes (Ray's forwarded worker output, log records) and the C-level ones the filter
        # passes on are written above the bar
        for name in ("stdout", "stderr"):
            self._restore.append((name, getattr(sys, name)))
            setattr(sys, name, _LineWriter(getattr(sys, name), above))
        if filt is not None:
            with filt.lock:
                filt.sink = above

    def _stop_bar(self) -> None:
        filt = _state["filter"]
        if filt is not None:
            with filt.lock:
                filt.sink = filt._write
        for name, stream in reversed(self._restore):
            current = getattr(sys, name)
            if isinstance(current, _LineWriter):
                current.flush()
            setattr(sys, name, stream)
        self._restore.clear()
        self.bar.close()
        self.bar = None
