"""Ctrl-C that a C callback swallowed.

soundfile writes through cffi callbacks into our file objects. A SIGINT that arrives while one runs raises
``KeyboardInterrupt`` inside the callback, where cffi prints it ("Exception ignored from cffi callback") and drops
it; the encoder then sees a short write and fails, and the file would become an error row while the run went on
to the end (exit 1 instead of 130). :func:`install` (called by the CLI) records every SIGINT before raising
``KeyboardInterrupt`` as Python's default handler does, so code that turns failures into rows can ask
:func:`interrupted` and raise it again instead.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_interrupted = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINTs (main thread only, and only over Python's default handler: a handler someone else
    installed stays)."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _on_sigint)


def interrupted() -> bool:
    """Whether a SIGINT arrived since :func:`install` (swallowed or not)."""
    return _interrupted.is_set()


def reraise_if_interrupted(err: BaseException) -> None:
    """Raise ``KeyboardInterrupt`` (from ``err``) when a Ctrl-C has arrived: ``err`` may be its effect."""
    if _interrupted.is_set():
        raise KeyboardInterrupt from err
