"""A job on a multi-node Ray cluster survives the death of a worker node (every output exactly once).

``ray.cluster_utils.Cluster`` runs a head (no CPUs: it only schedules) and two 2-CPU worker nodes in this
process tree, all on 127.0.0.1. The job is run from a spec with :func:`batchsep.jobs.run.run_spec`.
Its units of work are slowed by ``BATCHSEP_TEST_TASK_DELAY`` (read only by this test's wrappers, forwarded
to Ray workers like every ``BATCHSEP_*`` variable) and leave a marker file naming the node that ran them;
once some work has run on a node, that node is killed (``remove_node(allow_graceful=False)``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest
import soundfile as sf
from parts_helpers import read_parts

from batchsep.distributed import runtime
from batchsep.io import parquet, storage
from batchsep.jobs import run as jobs
from batchsep.jobs import spec as jobspec

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.own_cluster]

HEALTH_CHECKS = {  # DESIGN.md §6: a dead node is noticed in ~2 s
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
    "health_check_timeout_ms": 500,
}


def _mark(node_id: str) -> None:
    """Called inside a unit of work: wait a little, then leave a marker naming the node."""
    time.sleep(float(os.environ.get("BATCHSEP_TEST_TASK_DELAY", "0")))
    markers = os.environ.get("BATCHSEP_TEST_MARKERS")
    if markers:
        Path(markers, f"{node_id}-{uuid.uuid4().hex}").touch()


def slow_scan_shard(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The scan stage's shard function, slowed and marked (a closure: pickled by value for Ray)."""

    def scan_shard(entries: Any) -> Any:
        import ray

        _mark(ray.get_runtime_context().get_node_id())
        return orig(entries)

    return scan_shard


def slow_batch_worker(base: type) -> type:
    """The enhance stage's Ray Data actor class, slowed and marked per shard."""

    class SlowShardBatchWorker(base):  # type: ignore[misc, valid-type]
        def __call__(self, batch: Any) -> Any:
            import ray

            _mark(ray.get_runtime_context().get_node_id())
            return super().__call__(batch)

    return SlowShardBatchWorker


class AgentPorts(TypedDict):
    """The ports of :func:`agent_ports`, as ``Cluster.add_node`` keywords."""

    metrics_agent_port: int
    dashboard_agent_listen_port: int
    runtime_env_agent_port: int


def agent_ports() -> AgentPorts:
    """Free ports for a node's agents: given explicitly, the raylet does not wait (15 s at most, too
    short on a loaded machine) for the agents to report the ports they picked."""
    socks = [socket.socket() for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    metrics, dashboard, runtime_env = (s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    return {
        "metrics_agent_port": metrics,
        "dashboard_agent_listen_port": dashboard,
        "runtime_env_agent_port": runtime_env,
    }


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, list[Any]]]:
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    runtime.shutdown()  # this test's driver connects to its own cluster
    # Every address on 127.0.0.1 (the variable below is read when ray is imported, so patch both).
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    for k, v in {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "BATCHSEP_TEST_TASK_DELAY": "0.2",
        "BATCHSEP_TEST_MARKERS": str(tmp_path / "markers"),
    }.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "markers").mkdir()
    for attempt in range(3):  # a node may miss Ray's fixed 30 s start-up window on a loaded machine
        c = Cluster()
        try:
            c.add_node(
                num_cpus=0,
                node_ip_address="127.0.0.1",
                include_dashboard=False,
                _system_config=HEALTH_CHECKS,
                **agent_ports(),
            )
            workers = [
                c.add_node(
                    num_cpus=2,
                    node_ip_address="127.0.0.1",
                    object_store_memory=100 << 20,
                    **agent_ports(),
                )
                for _ in range(2)
            ]
            c.wait_for_nodes()
            break
        except Exception as e:
            c.shutdown()
            if attempt == 2 or "timed out during startup" not in str(e):
                monkeypatch.undo()
                raise
    try:
        yield c, workers
    finally:  # a later test that needs Ray starts it again (fixture ray_local)
        runtime.shutdown()
        c.shutdown()
        monkeypatch.undo()


def kill_busy_node_when(
    c: Any, workers: list[Any], markers: Path, *, after: int
) -> tuple[threading.Thread, dict[str, Any]]:
    """A thread that kills a worker node once ``after`` units of work are done and it has done some."""
    result: dict[str, Any] = {}

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = [p.name.split("-")[0] for p in markers.iterdir()]
            busy = [w for w in workers if w.node_id in done]
            if len(done) >= after and busy:
                result.update(killed=busy[0].node_id, done_before=len(done))
                c.remove_node(busy[0], allow_graceful=False)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, result


def tone_corpus(root: Path, n: int, seconds: float) -> list[str]:
    t = np.arange(int(seconds * 16000)) / 16000
    rels = []
    for i in range(n):
        rel = f"d{i % 7}/f{i:03d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, (0.1 * np.sin(2 * np.pi * (200 + i) * t)).astype(np.float32), 16000)
        rels.append(rel)
    return sorted(rels)


def test_scan_job_survives_node_death(cluster, tmp_path, monkeypatch):
    from batchsep.pipeline.scan import driver as scan_mod

    c, workers = cluster
    rels = tone_corpus(tmp_path / "corpus", 200, 0.05)
    monkeypatch.setattr(scan_mod, "scan_shard", slow_scan_shard(scan_mod.scan_shard))
    spec = jobspec.parse_spec(
        {
            "name": "scan-multinode",
            "stages": [
                {
                    "stage": "scan",
                    "params": {
                        "in_uri": str(tmp_path / "corpus"),
                        "out_uri": str(tmp_path / "run"),
                        "shard_size": 4,
                    },
                }
            ],
            "ray": {"address": c.address},
        }
    )
    thread, killed = kill_busy_node_when(c, workers, tmp_path / "markers", after=6)
    (outcome,) = jobs.run_spec(spec)
    thread.join(timeout=5)
    n_shards = 50
    assert killed, "no worker node was killed during the job"
    assert killed["done_before"] < n_shards, "the node died after the job had finished"
    rows = parquet.read_table(str(tmp_path / "run" / "manifest.parquet")).to_pylist()
    assert [r["rel_path"] for r in rows] == rels  # every file exactly once, in order
    assert all(r["status"] == "ok" for r in rows)
    assert outcome.failed == 0 and outcome.result.files_ok == 200


def test_enhance_job_survives_node_death(cluster, tmp_path, monkeypatch):
    models = pytest.importorskip("batchsep.models")
    from batchsep.distributed import data as data_mod
    from batchsep.io.checkpoint import write_checkpoint

    if "lstm" not in models.MODELS:
        pytest.skip("no 'lstm' model registered")
    c, workers = cluster
    write_checkpoint(
        str(tmp_path / "model"),
        models.serialize(models.build_model("lstm", {"n_layers": 1, "hidden": 8})),
    )
    rels = tone_corpus(tmp_path / "in", 40, 0.25)
    monkeypatch.setenv("BATCHSEP_TEST_TASK_DELAY", "0.4")
    monkeypatch.setattr(
        data_mod, "_ShardBatchWorker", slow_batch_worker(data_mod._ShardBatchWorker)
    )
    out = tmp_path / "out"
    spec = jobspec.parse_spec(
        {
            "name": "enhance-multinode",
            "stages": [
                {
                    "stage": "enhance",
                    "params": {
                        "in_uri": str(tmp_path / "in"),
                        "out_uri": str(out),
                        "model": str(tmp_path / "model"),
                        "emotion": False,  # enhancement only: no emotion model needed
                        "shard_size": 2,
                    },
                }
            ],
            "ray": {"address": c.address, "workers": 2},
        }
    )
    thread, killed = kill_busy_node_when(c, workers, tmp_path / "markers", after=3)
    (outcome,) = jobs.run_spec(spec)
    thread.join(timeout=5)
    assert killed and killed["done_before"] < 20, killed
    rows = read_parts(str(out / "results")).to_pylist()
    assert sorted(r["rel_path"] for r in rows) == rels  # one committed row per file, no duplicate
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    written = sorted(
        e.rel_path
        for e in storage.list_files(str(out))
        if e.rel_path.endswith(".wav") and storage.TMP_PREFIX not in e.rel_path
    )
    assert written == rels
    for rel in rels[:3]:  # same length as the input
        assert sf.info(str(out / rel)).frames == sf.info(str(tmp_path / "in" / rel)).frames
    assert outcome.failed == 0 and outcome.result.files_ok == 40
