"""The embedded Ray's workers run at the caller's niceness, not Ray's default of 15."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROBE = """
import os, ray
from batchsep.distributed import runtime
runtime.init(num_cpus=1)

@ray.remote
def niceness():
    return os.nice(0)

print("driver", os.nice(0), "worker", ray.get(niceness.remote()))
"""


@pytest.mark.parametrize("caller_nice", [0, 5])
def test_workers_run_at_the_callers_niceness(caller_nice):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_worker_niceness")}
    cmd = ["nice", "-n", str(caller_nice), sys.executable, "-c", PROBE]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    words = r.stdout.split()
    driver, worker = int(words[words.index("driver") + 1]), int(words[words.index("worker") + 1])
    assert driver == os.nice(0) + caller_nice
    assert worker == driver  # Ray's default would be driver + 15
