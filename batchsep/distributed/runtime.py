"""Ray runtime: start an embedded local Ray or connect to a cluster, and run stage shards as Ray tasks.

This module (with the rest of ``batchsep.distributed``) is the only place that imports ray; it imports it
when Ray is used (a small job that runs in this process never does, see :func:`placement`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from batchsep.errors import BatchsepError, ParameterError

if TYPE_CHECKING:
    from batchsep.pipeline.runner import Runner

T = TypeVar("T")
R = TypeVar("R")

FORWARDED_ENV_PREFIXES = ("AWS_", "BATCHSEP_")
"""Environment variables copied to the workers of a Ray cluster the driver connects to (object-store
endpoint and region, batchsep settings), secrets excepted (see :func:`forwarded_env`)."""

_DEFAULT_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Ray starts workers at nice 15 by default: beside any busy process of the caller's, an embedded run's
    # model workers got a sliver of the CPU (61 files beside two busy processes: 139.5 s at nice 15, 31.3 s at
    # 0). 0 is relative to the raylet, which an embedded Ray starts at the caller's niceness. A cluster keeps
    # its own setting (its raylets were started without this), and a user's value wins.
    "RAY_worker_niceness": "0",
}

GCS_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
"""Tries Ray gives its GCS to answer (one a second while starting; each try to reach an existing cluster
waits ~35 s). A user's value wins; otherwise batchsep sets one for the call: ``GCS_WAIT_START_S`` for an
embedded Ray (its GCS is coming up on a possibly busy host) and ``GCS_WAIT_CONNECT_S`` to reach a cluster (an
unreachable address fails in about a minute, not after Ray's default 20 tries, ~12 minutes)."""
GCS_WAIT_START_S = 90
GCS_WAIT_CONNECT_S = 2
_USER_GCS_WAIT = GCS_WAIT_ENV in os.environ


class ClusterError(BatchsepError):
    """The Ray cluster given by an address could not be reached."""


QUIET_LOGGERS = {
    # Ray Train's detached placement-group cleaner polls the State API every second and warns each time
    # the API is not served (an embedded Ray without the dashboard): thousands of identical lines per
    # training run. It goes on polling (and cleaning up); only the repeated warning is dropped.
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
}
"""Loggers of Ray's own worker processes set to a higher level (see :func:`setup_worker`)."""


AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
"""Ray's logger for "Token authentication is enabled for this Ray cluster ...", printed each time a new local
cluster starts with the auth mode unset. Quiet only while batchsep starts its embedded Ray (token auth stays
on); connecting to a cluster keeps Ray's warnings about its auth settings."""


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise logger ``name`` to ERROR for the duration of the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def setup_worker() -> None:
    """Run in every Ray worker process of a batchsep job at its start (``worker_process_setup_hook``)."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _gcs_wait(seconds: int) -> Iterator[None]:
    """Set ``GCS_WAIT_ENV`` for the block unless the user set it."""
    if _USER_GCS_WAIT:
        yield
        return
    before = os.environ.get(GCS_WAIT_ENV)
    os.environ[GCS_WAIT_ENV] = str(seconds)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(GCS_WAIT_ENV, None)
        else:
            os.environ[GCS_WAIT_ENV] = before


def check_address(address: str | None) -> None:
    """Refuse an address that cannot be a Ray cluster's (before any work): the Jobs API's ``http://HOST:8265``
    is the commonest mix-up."""
    if address and address.lower().startswith(("http://", "https://")):
        raise ParameterError(
            f"--address {address!r} is a Jobs API URL (what submit, status, logs and cancel take); "
            "commands that run here take the Ray cluster address: HOST:6379, ray://HOST:10001 or 'auto'"
        )


def forwarded_env() -> dict[str, str]:
    """The driver's variables that the workers of a cluster are sent through Ray's ``runtime_env``.

    Never a credential (``AWS_SECRET_ACCESS_KEY``, ``AWS_ACCESS_KEY_ID``, ``AWS_SESSION_TOKEN``, anything
    that looks like one): Ray writes a runtime env in plain text to its logs (``runtime_env_agent.log``) and
    keeps it with the job. Workers of the embedded Ray inherit the driver's whole environment instead (their
    processes are started from it), and a cluster's workers get credentials from the cluster itself (instance
    role, Kubernetes secret; see cluster/README.md).
    """
    from batchsep.io.credentials import looks_like_secret

    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_ENV_PREFIXES) and not looks_like_secret(k)
    }


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    include_dashboard: bool = False,
    object_store_memory: int | None = None,
) -> dict[str, Any]:
    """Start (or connect to) Ray once per process; return the cluster's resources.

    Parameters
    ----------
    address : str, optional
        ``None``: connect to ``$RAY_ADDRESS`` when set (as inside a Ray Job), else start an embedded local
        Ray listening on 127.0.0.1. ``"auto"`` or ``"ray://host:10001"`` / ``"host:6379"``: connect.
    num_cpus, num_gpus : int, optional
        Resources of the embedded Ray (ignored when connecting).
    include_dashboard : bool
        Start the dashboard with the embedded Ray (off by default).
    object_store_memory : int, optional
        Bytes for the embedded object store (default: 1 GiB, plenty for shard metadata).
    """
    import ray

    if ray.is_initialized():
        return dict(ray.cluster_resources())
    for k, v in _DEFAULT_ENV.items():
        os.environ.setdefault(k, v)
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_address(address)
    runtime_env: dict[str, Any] = {
        "worker_process_setup_hook": f"{__name__}.{setup_worker.__name__}",
    }
    if address and address != "local":
        runtime_env["env_vars"] = forwarded_env()  # the embedded Ray's workers inherit os.environ
        try:
            with _gcs_wait(GCS_WAIT_CONNECT_S):
                ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        except (ConnectionError, RuntimeError, TimeoutError) as e:
            ray.shutdown()
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address}: {str(e).strip().splitlines()[0]} "
                "(is its head running and reachable from here? A head started with "
                "--node-ip-address=127.0.0.1 is reachable only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                "in the environment, as in the README's walk-through)"
            ) from e
    else:
        for attempt in range(3):  # on a loaded host Ray's agents can miss their start-up window
            try:
                with (
                    _quiet(AUTH_NOTICE_LOGGER),
                    _gcs_wait(GCS_WAIT_START_S),
                ):  # see AUTH_NOTICE_LOGGER
                    ray.init(
                        address="local",
                        num_cpus=num_cpus,
                        num_gpus=num_gpus,
                        include_dashboard=include_dashboard,
                        object_store_memory=object_store_memory or (1 << 30),
                        runtime_env=runtime_env,
                        _node_ip_address="127.0.0.1",
                        log_to_driver=True,
                    )
                break
            except Exception:  # Ray raises plain exceptions for start-up failures
                ray.shutdown()
                if attempt == 2:
                    raise
    return dict(ray.cluster_resources())


def shutdown() -> None:
    """Disconnect from (and, if embedded, stop) the Ray this process started."""
    if ray_running():
        import ray

        ray.shutdown()


class RayRunner:
    """The :class:`~batchsep.pipeline.runner.Runner` on Ray: runs a stage function over shards as Ray
    tasks, with bounded tasks in flight and retries.

    Parameters
    ----------
    max_in_flight : int, optional
        Most tasks submitted and not yet collected (default: twice the cluster's CPUs).
    max_retries : int
        Retries of a task whose worker or node died (Ray re-executes it elsewhere).
    num_cpus, num_gpus : float
        Resources each task reserves.
    address, cluster_cpus : optional
        Passed to :func:`init`, which runs lazily on first use: a stage can check its inputs and
        outputs before any Ray process starts.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        cluster_cpus: int | None = None,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> None:
        self.address, self.cluster_cpus = address, cluster_cpus
        self.max_in_flight = max_in_flight
        self.options = {"max_retries": max_retries, "num_cpus": num_cpus, "num_gpus": num_gpus}

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not items:
            return
        import ray

        init(self.address, num_cpus=self.cluster_cpus)
        limit = self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(fn).options(**self.options)
        pending: dict[Any, int] = {}
        next_i = 0
        while next_i < len(items) or pending:
            while next_i < len(items) and len(pending) < limit:
                pending[remote.remote(items[next_i])] = next_i
                next_i += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)


def ray_running() -> bool:
    """Whether this process has started (or connected to) Ray; never imports it."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


Where = Literal["here", "ray", "auto"]


PLACEMENT_ENV = "BATCHSEP_PLACEMENT"
"""``local`` or ``ray``: the default of ``--local/--ray`` when neither is given (``auto`` or unset: the
small-job rule of :func:`placement`). The test suite sets ``ray`` for its tests marked ``ray``."""


def placement(
    *, local: bool | None = None, workers: int | None = None, address: str | None = None
) -> Where:
    """Where a stage runs: ``"here"`` (in this process), ``"ray"`` or ``"auto"`` (here when its work is
    small, see :class:`batchsep.pipeline.runner.Placement`, else Ray).

    ``local`` True: here; False (``--ray``): Ray. None (the default): ``$BATCHSEP_PLACEMENT`` when set
    to ``local`` or ``ray``; else Ray when a cluster is named (``address``, or ``$RAY_ADDRESS`` as inside
    a Ray Job), when ``workers`` > 1 asks for parallel workers, or when Ray already runs in this
    process; otherwise ``"auto"``.
    """
    if local is None:
        env = os.environ.get(PLACEMENT_ENV, "auto").strip().lower() or "auto"
        if env not in ("auto", "local", "ray"):
            raise ParameterError(f"{PLACEMENT_ENV}={env!r} must be auto, local or ray")
        local = None if env == "auto" else env == "local"
    if local is not None:
        return "here" if local else "ray"
    if address or os.environ.get("RAY_ADDRESS") or (workers or 1) > 1 or ray_running():
        return "ray"
    return "auto"


def make_runner(
    *, workers: int | None = None, address: str | None = None, local: bool | None = None
) -> Runner:
    """The runner a stage uses, by :func:`placement`: in-process, Ray tasks on ``address``, or the one
    of the two that fits each call's work (:class:`~batchsep.pipeline.runner.AutoRunner`).

    ``workers`` bounds concurrency: the embedded Ray gets that many CPUs; on a cluster at most ``2 × workers``
    tasks are in flight.
    """
    from batchsep.pipeline.runner import AutoRunner, SerialRunner

    where = placement(local=local, workers=workers, address=address)
    if where == "here":
        return SerialRunner()

    def ray_runner() -> RayRunner:
        return RayRunner(
            address=address, cluster_cpus=workers, max_in_flight=2 * workers if workers else None
        )

    return ray_runner() if where == "ray" else AutoRunner(ray_runner, ray_running)
