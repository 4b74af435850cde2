"""A Ctrl-C that soundfile's C callback swallowed is raised again, not turned into an error row."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import soundfile as sf

from batchsep.pipeline.common import interrupt
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file


@pytest.fixture
def sigint_recorded():
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupt.install()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        interrupt._interrupted.clear()


def test_sigint_is_recorded_and_raised(sigint_recorded):
    assert not interrupt.interrupted()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0.1)  # let the handler run
    assert interrupt.interrupted()


def test_install_keeps_a_handler_someone_else_set():
    before = signal.getsignal(signal.SIGINT)
    mine = lambda *a: None  # noqa: E731
    signal.signal(signal.SIGINT, mine)
    try:
        interrupt.install()
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_failure_after_a_swallowed_ctrl_c_raises_it(sigint_recorded, tmp_path):
    src = tmp_path / "x.wav"
    sf.write(src, np.zeros(1600, np.float32), 16000)
    (tmp_path / "a-file").write_text("x")
    out = (
        tmp_path / "a-file" / "y.wav"
    )  # cannot be written: a failure, as a swallowed interrupt makes
    row = enhance_file(str(src), str(out), None, EnhanceOptions())
    assert row["status"] == "error"  # no Ctrl-C: the file's own error row
    try:
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0.1)
    except KeyboardInterrupt:
        pass  # as cffi would: printed and dropped
    with pytest.raises(KeyboardInterrupt):
        enhance_file(str(src), str(out), None, EnhanceOptions())


def test_a_success_after_a_swallowed_ctrl_c_raises_it(sigint_recorded, tmp_path):
    """A Ctrl-C swallowed where nothing fails (soundfile's vio_tell callback, seen in CI): the file is not
    reported done and the run stops (exit 130), instead of going on to the end with exit 0."""
    src = tmp_path / "x.wav"
    sf.write(src, np.zeros(1600, np.float32), 16000)
    row = enhance_file(str(src), str(tmp_path / "y.wav"), None, EnhanceOptions())
    assert row["status"] == "ok"  # no Ctrl-C: done
    try:
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0.1)
    except KeyboardInterrupt:
        pass  # as cffi would: printed and dropped
    with pytest.raises(KeyboardInterrupt):
        enhance_file(str(src), str(tmp_path / "z.wav"), None, EnhanceOptions())
