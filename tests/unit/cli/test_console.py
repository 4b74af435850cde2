"""Progress on any console (a bar on a terminal, plain lines elsewhere) and the filter on the driver's stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from batchsep.cli import console
from batchsep.cli.console import Progress
from batchsep.pipeline.common import progress

ANSI = re.compile(r"\x1b\[")


def test_plain_lines_say_files_audio_speed_eta_and_failures(capsys, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    p = Progress(tty=False, interval_s=5.0)
    p.start("enhance", 20)
    clock[0] += 30.0  # worker start-up: the first shard comes late
    p.update(4, 36.0, 1)
    clock[0] += 1.0  # within the interval: no line
    p.update(4, 36.0, 0)
    clock[0] += 10.0
    p.update(4, 36.0, 0)
    p.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "enhance: 20 files to do"
    assert lines[1].startswith(
        "enhance: 4/20 files (20%), 0.010 h of audio, 1.2x real time, 1 failed"
    )
    assert "ETA after the next shard" in lines[1]  # the first shard's time is mostly start-up
    # 8 files in the 11 s since the first shard: 8 left take 11 s, not 2 min (start-up not counted again)
    assert lines[2].startswith("enhance: 12/20 files (60%)") and "ETA 0:11" in lines[2]
    assert lines[3].startswith("enhance: 12/20 files") and lines[3].endswith("stopped")
    assert len(lines) == 4
    assert not any(ANSI.search(line) for line in lines)


def test_plain_lines_go_on_while_no_shard_completes(capsys):
    """Workers starting, a long shard: a line every interval all the same, and none after close()."""
    p = Progress(tty=False, interval_s=0.2)
    p.start("enhance", 3)
    time.sleep(0.9)
    p.update(1, 2.0)
    p.close()
    time.sleep(0.5)
    lines = capsys.readouterr().err.splitlines()
    waiting = [x for x in lines if x.startswith("enhance: 0/3 files (0%)")]
    assert len(waiting) >= 2 and all(x.endswith("ETA after the first shard") for x in waiting)
    assert lines[-1].startswith("enhance: 1/3 files") and lines[-1].endswith("stopped")
    p = Progress(tty=False, interval_s=0.0)  # a line per update, and none between them
    p.start("scan", 2)
    time.sleep(0.3)
    p.close()
    assert capsys.readouterr().err.splitlines() == ["scan: 2 files to do"]


def test_a_finished_phase_ends_with_done(capsys):
    with Progress(tty=False, interval_s=0.0) as p:
        p.start("scan", 2)
        p.update(2, 7200.0)
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("scan: 2/2 files (100%), 2.000 h of audio") and err[-1].endswith(
        "done"
    )
    assert "ETA" not in err[-1]


def test_a_bar_on_a_terminal_keeps_other_lines_above_it(capsys):
    p = Progress(tty=True)
    p.start("enhance", 3)
    print("(MapWorker pid=1) a line from a worker", file=sys.stderr)  # what Ray forwards meanwhile
    p.update(1, 1.0, 1)
    p.close()
    err = capsys.readouterr().err
    assert "(MapWorker pid=1) a line from a worker\n" in err
    assert "1 failed" in err
    assert not isinstance(sys.stderr, console._LineWriter)  # restored


def test_stages_pass_failures_to_callbacks_that_take_them():
    got: list[tuple] = []
    rows = [{"status": "ok"}, {"status": "error"}, {"status": "error"}]
    progress.report(lambda n, s: got.append((n, s)), 3, 1.5, progress.failed_rows(rows))
    progress.report(lambda n, s, f: got.append((n, s, f)), 3, 1.5, progress.failed_rows(rows))
    progress.report(None, 3, 1.5, 2)
    assert got == [(3, 1.5), (3, 1.5, 2)]
    assert progress.accepts_failed(Progress(tty=False).update)


FILTER_PROBE = r"""
import os, sys, time
from batchsep.cli.console import filtered_stderr
with filtered_stderr():
    noise = (b"[2026-12-05 09:57:34,425 E 8205 8205] core_worker.cc:2465: Actor with class name: "
             b"'MapWorker(MapBatches(_ShardBatchWorker))' and ID: '05' has constructor arguments in the "
             b"object store and max_restarts > 0. If the arguments ... See https://x for more details.\n")
    os.write(2, noise)  # as Ray's C++ core writes it
    os.write(2, b"[2026-12-05 09:57:35,000 E 8205 8205] core_worker.cc:99: a real error\n")
    print("python-level error line", file=sys.stderr)
    os.write(2, b"partial line without newline")
    time.sleep(0.5)
print("\nafter", file=sys.stderr)
os.write(2, b"fd 2 restored\n")
"""


def test_the_stderr_filter_drops_rays_restart_notice_and_nothing_else():
    env = {**os.environ, "BATCHSEP_RAW_STDERR": "0"}
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", FILTER_PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 0, r.stderr
    assert "max_restarts" not in r.stderr
    assert "core_worker.cc:99: a real error\n" in r.stderr
    assert "python-level error line\n" in r.stderr
    assert "partial line without newline" in r.stderr
    assert r.stderr.rstrip().endswith("fd 2 restored")
    assert "\0" not in r.stderr
    assert time.monotonic() - t0 < 30
