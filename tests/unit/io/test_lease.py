"""The lease on an output folder: one holder, refusal naming it, heartbeat, expiry, takeover, release."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from batchsep.errors import OutputBusyError, ParameterError
from batchsep.io import lease, storage
from batchsep.io.lease import LEASE_NAME, Holder, Lease, read_holder


def _holder(folder: str) -> Holder:
    """The lease's holder, which the test expects there is."""
    holder = read_holder(folder)
    assert holder is not None, f"no lease in {folder}"
    return holder


def _write_lease(folder: str, **fields: object) -> None:
    d = {
        "run_id": "20200101T000000Z-aaaaaa",
        "host": "elsewhere",
        "pid": 12345,
        "started": time.time() - 60,
        "heartbeat": time.time(),
        **fields,
    }
    storage.write_text(storage.join(folder, LEASE_NAME), json.dumps(d))


def test_one_holder_at_a_time_and_release(storage_root):
    first = lease.acquire(storage_root, "run-a", ttl_s=60)
    try:
        holder = read_holder(storage_root)
        assert holder is not None
        assert (holder.run_id, holder.host, holder.pid) == (
            "run-a",
            socket.gethostname(),
            os.getpid(),
        )
        with pytest.raises(OutputBusyError) as e:
            lease.acquire(storage_root, "run-b", ttl_s=60)
        msg = str(e.value)
        assert "run-a" in msg and socket.gethostname() in msg and f"pid {os.getpid()}" in msg
        assert "started" in msg and LEASE_NAME in msg
        assert isinstance(e.value, ParameterError)  # exit 2 in every command
        assert _holder(storage_root).run_id == "run-a"  # the refused run left it alone
    finally:
        first.release()
    assert read_holder(storage_root) is None
    with Lease(storage_root, "run-b", ttl_s=60) as second:
        assert _holder(storage_root).run_id == second.run_id == "run-b"
    assert read_holder(storage_root) is None


def test_release_leaves_another_runs_lease(tmp_path):
    held = lease.acquire(str(tmp_path), "run-a", ttl_s=60)
    _write_lease(str(tmp_path), run_id="run-z")  # taken over meanwhile
    held.release()
    assert _holder(str(tmp_path)).run_id == "run-z"


def test_heartbeat_refreshes_the_lease(tmp_path):
    held = lease.acquire(str(tmp_path), "run-a", ttl_s=0.4)  # a beat every 0.1 s
    try:
        first = _holder(str(tmp_path)).heartbeat
        time.sleep(0.5)
        later = _holder(str(tmp_path)).heartbeat
        assert later > first
        assert not _holder(str(tmp_path)).expired(0.4)
        # a refused run may not take it over: the holder is alive and beating
        with pytest.raises(OutputBusyError):
            lease.acquire(str(tmp_path), "run-b", ttl_s=0.4)
    finally:
        held.release()
    assert not os.listdir(tmp_path)  # neither the lease nor a temporary of a heartbeat


def test_lease_of_another_host_expires_after_the_ttl(tmp_path):
    _write_lease(str(tmp_path), heartbeat=time.time() - 5)
    with pytest.raises(OutputBusyError, match="host elsewhere, pid 12345"):
        lease.acquire(str(tmp_path), "run-b", ttl_s=60)
    held = lease.acquire(str(tmp_path), "run-b", ttl_s=2)  # heartbeat 5 s old > 2 s
    assert _holder(str(tmp_path)).run_id == "run-b"
    held.release()


def test_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid names no process now
    _write_lease(str(tmp_path), host=socket.gethostname(), pid=proc.pid)
    assert _holder(str(tmp_path)).expired(3600)
    held = lease.acquire(str(tmp_path), "run-b", ttl_s=3600)
    assert _holder(str(tmp_path)).run_id == "run-b"
    held.release()


def test_live_process_on_this_host_holds_until_the_ttl():
    me = Holder("r", socket.gethostname(), os.getpid(), time.time(), time.time())
    assert not me.expired(60)
    assert me.expired(60, now=time.time() + 61)  # a hung holder: its heartbeat stopped


def test_unreadable_lease_counts_from_its_file_time(tmp_path):
    (tmp_path / LEASE_NAME).write_text("{not json")
    with pytest.raises(OutputBusyError, match="run unknown"):
        lease.acquire(str(tmp_path), "run-b", ttl_s=60)
    old = time.time() - 120
    os.utime(tmp_path / LEASE_NAME, (old, old))
    lease.acquire(str(tmp_path), "run-b", ttl_s=60).release()


def test_a_lease_taken_over_is_noticed_by_its_old_holder(tmp_path):
    held = lease.acquire(str(tmp_path), "run-a", ttl_s=60)
    try:
        held.check()  # still ours
        _write_lease(str(tmp_path), run_id="run-z")  # another run took it over
        held.heartbeat()
        assert held.lost and "run-z" in held.lost
        with pytest.raises(OutputBusyError, match="taken over"):
            held.check()
        assert _holder(str(tmp_path)).run_id == "run-z"  # no heartbeat overwrote it
    finally:
        held.release()
    assert _holder(str(tmp_path)).run_id == "run-z"


def test_takeover_puts_back_a_fresh_lease_it_moved_by_mistake(tmp_path):
    """Two runs found the same expired lease; the first replaced it; the second must not remove the
    first's fresh lease."""
    _write_lease(str(tmp_path), run_id="fresh", heartbeat=time.time())
    stale = Holder("expired-one", "elsewhere", 1, 0.0, 0.0)
    Lease(str(tmp_path), "late", ttl_s=60)._take_over(stale)
    assert _holder(str(tmp_path)).run_id == "fresh"
    assert os.listdir(tmp_path) == [LEASE_NAME]


def test_ttl_from_the_environment(monkeypatch):
    monkeypatch.setenv("BATCHSEP_LEASE_TTL_S", "7.5")
    assert lease.lease_ttl_s() == 7.5
    for bad in ("", "zero", "-3"):
        monkeypatch.setenv("BATCHSEP_LEASE_TTL_S", bad)
        assert lease.lease_ttl_s() == lease.DEFAULT_TTL_S


def test_run_ids_sort_by_start_time():
    a = lease.new_run_id()
    time.sleep(1.1)
    b = lease.new_run_id()
    assert a < b and a != b
