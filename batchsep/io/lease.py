"""One writer per output folder: a lease on ``OUT`` that a run takes before it touches the folder.

The lease is the file ``OUT/.batchsep-lease`` (JSON: run id, host, pid, start time, heartbeat). A daemon
thread rewrites its heartbeat every ``ttl / 4`` seconds; a lease whose heartbeat is older than the TTL
(``BATCHSEP_LEASE_TTL_S``, default :data:`DEFAULT_TTL_S`), or that names a process of this host that no
longer exists, is expired and may be taken over. A live lease makes :func:`acquire` raise
:class:`~batchsep.errors.OutputBusyError` naming its holder.

Locally the lease is created with ``O_CREAT | O_EXCL`` (exactly one of two runs gets it), and an expired one
is taken over by renaming it aside and checking that what was renamed is the expired lease (a fresh lease
renamed by mistake is put back with an exclusive ``link``). On S3 :class:`pyarrow.fs.S3FileSystem` cannot
send a conditional PUT (``If-None-Match: *``; its ``open_output_stream`` passes only a few metadata keys), so
the lease is written, then read back after :data:`SETTLE_S` seconds: the run whose lease is read back holds
it, the other is refused. Two runs whose "is there a lease?" look precedes the other's write and whose own
write reaches the store more than :data:`SETTLE_S` after the other's read-back could both proceed; that
needs two runs started within about a second of each other.

Plain I/O; no Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from batchsep.errors import OutputBusyError, StorageError
from batchsep.io import storage

LEASE_NAME = ".batchsep-lease"
DEFAULT_TTL_S = 120.0
"""Seconds after its last heartbeat that a lease expires (``BATCHSEP_LEASE_TTL_S`` overrides)."""
SETTLE_S = 1.0
"""S3: seconds between writing the lease and reading it back (``BATCHSEP_LEASE_SETTLE_S`` overrides)."""


def lease_ttl_s() -> float:
    """The lease TTL in seconds: ``BATCHSEP_LEASE_TTL_S`` or :data:`DEFAULT_TTL_S`."""
    text = os.environ.get("BATCHSEP_LEASE_TTL_S", "").strip()
    try:
        ttl = float(text) if text else DEFAULT_TTL_S
    except ValueError:
        ttl = DEFAULT_TTL_S
    return ttl if ttl > 0 else DEFAULT_TTL_S


def _settle_s() -> float:
    text = os.environ.get("BATCHSEP_LEASE_SETTLE_S", "").strip()
    try:
        return max(0.0, float(text)) if text else SETTLE_S
    except ValueError:
        return SETTLE_S


def new_run_id() -> str:
    """A run id that sorts by start time: ``20261205T094012Z-3f9a1c``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def lease_uri(out_uri: str) -> str:
    return storage.join(out_uri, LEASE_NAME)


@dataclass(frozen=True)
class Holder:
    """What a lease file says about the run holding it."""

    run_id: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self) -> str:
        started = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        age = max(0.0, time.time() - self.heartbeat)
        return (
            f"run {self.run_id} on host {self.host}, pid {self.pid}, started {started}, "
            f"last heartbeat {age:.0f} s ago"
        )

    def expired(self, ttl_s: float, *, now: float | None = None) -> bool:
        """True when its heartbeat is older than ``ttl_s``, or its process is gone from this host."""
        now = time.time() if now is None else now
        if now - self.heartbeat > ttl_s:
            return True
        return self.host == socket.gethostname() and self.pid > 0 and not _pid_alive(self.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def _parse(data: bytes, fallback_time: float) -> Holder:
    """The holder a lease file names; an unreadable one (a writer that died mid-write) is anonymous
    with its file time as heartbeat."""
    try:
        d = json.loads(data.decode("utf-8"))
        return Holder(
            str(d["run_id"]),
            str(d["host"]),
            int(d["pid"]),
            float(d["started"]),
            float(d["heartbeat"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return Holder("unknown", "unknown", -1, fallback_time, fallback_time)


def read_holder(out_uri: str) -> Holder | None:
    """The holder of ``out_uri``'s lease, or None when there is no lease."""
    uri = lease_uri(out_uri)
    if not storage.is_s3(uri):
        path = storage.normalize(uri)
        try:
            with open(path, "rb") as f:
                data = f.read()
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read the lease {uri}: {e.strerror or e}") from e
        return _parse(data, mtime)
    try:
        data = storage.read_bytes(uri)
    except StorageError:
        if not storage.exists(uri):
            return None
        raise
    return _parse(data, time.time())


class Lease:
    """The lease of one run on one output folder; use :func:`acquire` (or the context manager)."""

    def __init__(self, out_uri: str, run_id: str, *, ttl_s: float | None = None) -> None:
        self.out_uri = out_uri
        self.uri = lease_uri(out_uri)
        self.run_id = run_id
        self.ttl_s = lease_ttl_s() if ttl_s is None else ttl_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self.lost: str | None = None
        """Why the lease was lost while held (another run took it over), or None."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = time.monotonic()

    def _payload(self) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "run_id": self.run_id,
                "host": self.host,
                "pid": self.pid,
                "started": self.started,
                "started_utc": datetime.fromtimestamp(self.started, UTC).isoformat(),
                "heartbeat": now,
                "heartbeat_utc": datetime.fromtimestamp(now, UTC).isoformat(),
                "ttl_s": self.ttl_s,
            },
            indent=1,
        ).encode("utf-8")

    # ------------------------------------------------------------------ taking it

    def acquire(self) -> Lease:
        """Take the lease, or raise :class:`OutputBusyError` naming the live holder."""
        storage.makedirs(self.out_uri)
        take = self._acquire_s3 if storage.is_s3(self.uri) else self._acquire_local
        found: Holder | None = None
        for _ in range(3):  # a takeover that lost a race looks again
            found = take()
            if found is None:
                self._start_heartbeat()
                return self
            if not found.expired(self.ttl_s):
                raise self._busy(found)
            self._take_over(found)
        assert found is not None
        raise self._busy(read_holder(self.out_uri) or found)

    def _busy(self, holder: Holder) -> OutputBusyError:
        return OutputBusyError(
            f"{self.out_uri} is in use by another run ({holder.describe()}): one run at a time may "
            f"write an output folder. Wait for that run to end; if it is dead, its lease expires "
            f"{self.ttl_s:.0f} s after its last heartbeat (at once when its process is gone from this "
            f"host), or remove {self.uri} once you are sure it no longer runs"
        )

    def _acquire_local(self) -> Holder | None:
        """None when the lease was created; else the holder found."""
        path = storage.normalize(self.uri)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(self.out_uri)
            if holder is None:  # released meanwhile: look again
                return Holder("unknown", "unknown", -1, 0.0, 0.0)
            return holder
        except OSError as e:
            raise StorageError(f"cannot create the lease {self.uri}: {e.strerror or e}") from e
        try:
            os.write(fd, self._payload())
            os.fsync(fd)
        finally:
            os.close(fd)
        return None

    def _acquire_s3(self) -> Holder | None:
        holder = read_holder(self.out_uri)
        if holder is not None:
            return holder
        storage.write_bytes(self.uri, self._payload())
        time.sleep(_settle_s())
        holder = read_holder(self.out_uri)
        if holder is not None and holder.run_id == self.run_id:
            return None
        if holder is None:  # removed at once: by whom? look again
            return Holder("unknown", "unknown", -1, 0.0, 0.0)
        # another run wrote after us: its lease stands, as if it had come first
        return Holder(holder.run_id, holder.host, holder.pid, holder.started, time.time())

    def _take_over(self, expired: Holder) -> None:
        """Remove the expired lease of ``expired`` (and only that one)."""
        if storage.is_s3(self.uri):
            storage.delete(self.uri)  # S3: the read-back in _acquire_s3 settles a race
            return
        path = storage.normalize(self.uri)
        aside = f"{path}.expired-{self.run_id}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        with open(aside, "rb") as f:
            moved = _parse(f.read(), os.stat(aside).st_mtime)
        if moved.run_id != expired.run_id or moved.heartbeat > expired.heartbeat:
            # another run took over first and this was its fresh lease: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)

    # ------------------------------------------------------------------ holding it

    def _start_heartbeat(self) -> None:
        self._last_beat = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name="batchsep-lease-heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        interval = max(0.05, self.ttl_s / 4)
        while not self._stop.wait(interval):
            with contextlib.suppress(StorageError, OSError):
                self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh the heartbeat; sets :attr:`lost` when the lease is no longer this run's."""
        if self.lost:
            return
        holder = read_holder(self.out_uri)
        if holder is None or holder.run_id != self.run_id:
            self.lost = (
                f"the lease on {self.out_uri} was taken over by "
                f"{holder.describe() if holder else 'another run (it is gone)'}"
            )
            return
        storage.write_bytes(self.uri, self._payload())  # atomic: temp + rename, or one PUT
        self._last_beat = time.monotonic()

    def check(self) -> None:
        """Raise :class:`OutputBusyError` when another run has taken the lease over. When the last
        heartbeat is late (this process was stopped, the store was slow), the lease is looked at now."""
        if not self.lost and time.monotonic() - self._last_beat > self.ttl_s / 2:
            with contextlib.suppress(StorageError, OSError):
                self.heartbeat()
        if self.lost:
            raise OutputBusyError(
                f"{self.lost} (this run's heartbeat was late by more than {self.ttl_s:.0f} s): "
                "stopped before committing more; re-run once the other run has ended"
            )

    def stop(self) -> bool:
        """Stop the heartbeat (the lease stays until :meth:`release`); returns whether the lease is still
        this run's (False: another run took it over, or it cannot be read)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            holder = read_holder(self.out_uri)
        except (StorageError, OSError):
            return False
        return holder is not None and holder.run_id == self.run_id

    def release(self) -> bool:
        """Stop the heartbeat and remove the lease if it is still this run's; returns whether it was."""
        if not self.stop():
            return False
        try:
            storage.delete(self.uri)
        except StorageError:
            return False
        return True

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire(out_uri: str, run_id: str | None = None, *, ttl_s: float | None = None) -> Lease:
    """Take the lease on ``out_uri`` for ``run_id`` (a new one by default) and keep it alive.

    Raises
    ------
    OutputBusyError
        Another live run holds it.
    StorageError
        The lease cannot be written.
    """
    return Lease(out_uri, run_id or new_run_id(), ttl_s=ttl_s).acquire()
