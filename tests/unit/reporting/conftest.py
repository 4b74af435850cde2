"""Fixtures for the reporting tests: fake runs, and headless Debian chromium over DevTools (stdlib).

The DevTools client is a minimal RFC 6455 websocket (masked client frames, fragmented and 64-bit
length server frames) on ``socket``, so no extra package is needed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


# ------------------------------------------------------------------------------- fake data


def fake_runs(n: int = 96, seed: int = 0) -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """Two runs over the same files; the first is better by ~2 dB everywhere."""
    rng = np.random.default_rng(seed)
    classes = ["air_conditioner", "babble", "car_horn", "dog_bark", "street_music"]
    base = pd.DataFrame(
        {
            "file": [f"utt{i:04d}.flac" for i in range(n)],
            "input_snr": rng.uniform(-7.5, 17.5, n),
            "noise_class": rng.choice(classes, n),
            "speaker": rng.choice([f"spk{i:02d}" for i in range(8)], n),
            "duration_s": rng.uniform(2.0, 8.0, n),
            "split": "test",
        }
    )
    runs = []
    for name, model, gain, speed in (
        ("drnmf-k5", "drnmf", 8.0, 40.0),
        ("blstm", "blstm", 6.0, 90.0),
    ):
        df = base.copy()
        df["model"] = model
        df["sdr_i"] = gain - 0.25 * df["input_snr"] + rng.normal(0, 1.5, n)
        df["si_sdr_i"] = df["sdr_i"] - 0.4 + rng.normal(0, 0.3, n)
        df["pesq"] = np.clip(
            1.6 + 0.06 * df["input_snr"] + gain / 20 + rng.normal(0, 0.2, n), 1, 4.5
        )
        df["stoi"] = np.clip(0.78 + 0.01 * df["input_snr"] + rng.normal(0, 0.03, n), 0, 1)
        df["seconds"] = df["duration_s"] / speed
        df.loc[3, "pesq"] = np.nan  # a failed metric
        job = {
            "job": {"name": name, "stage": "evaluate", "model": {"name": model, "k": 5}},
            "git_revision": "40bd2b5",
            "config_hash": "sha256:" + "ab" * 16,
            "versions": {"batchsep": "0.1.0", "torch": "2.13.0", "ray": "2.60.0"},
            "inputs": ["s3://corpus/test/", "/data/noise"],
        }
        runs.append((name, df, job))
    return runs


def fake_example(sr: int = 16000, seconds: float = 2.0, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(130 + 25 * np.sin(2 * np.pi * 0.8 * t)) / sr
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2
    clean = 0.2 * env * sum(np.sin(k * phase) / k for k in range(1, 25))
    noise = 0.05 * rng.standard_normal(t.size)
    return {
        "noisy": clean + noise,
        "enhanced": clean + 0.15 * noise,
        "clean": clean,
        "sr": sr,
        "title": f"utt{seed:04d} · babble · 5 dB",
    }


FAKE_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def fake_emotion() -> tuple[list[str], list[str], None]:
    """64 labels, 8 per emotion; every 5th prediction is shifted to the next emotion."""
    y_true = [FAKE_LABELS[i % 8] for i in range(64)]
    y_pred = [FAKE_LABELS[(i + (i % 5 == 0)) % 8] for i in range(64)]
    return y_true, y_pred, None


@pytest.fixture
def runs() -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    return fake_runs()


@pytest.fixture(scope="session")
def full_report() -> dict[str, bytes]:
    """One full report (2 runs, 2 one-second examples, emotion), rendered once per session."""
    from batchsep.reporting import render_report

    examples = [fake_example(seconds=1.0, seed=0), fake_example(seconds=1.0, seed=1)]
    return render_report(fake_runs(), examples, fake_emotion(), generated_at="2026-01-01 00:00 UTC")


@pytest.fixture
def example() -> Callable[..., dict[str, Any]]:
    return fake_example


# ------------------------------------------------------------------------------- DevTools


class WebSocket:
    """Just enough of a websocket client for the DevTools protocol."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        if not url.startswith("ws://"):
            raise ValueError(f"not a ws:// URL: {url}")
        host_port, _, path = url[5:].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return bytes(buf)

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._recv_exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            mask = self._recv_exact(4) if b1 & 0x80 else None
            data = self._recv_exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by peer")
            if opcode == 0x9:  # ping -> ignore (chromium does not require pongs here)
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """A page target: send commands, collect events."""

    def __init__(self, ws_url: str) -> None:
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 120.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def wait_event(self, method: str, timeout: float = 120.0) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise TimeoutError(method)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(
                    "console: " + " ".join(str(a.get("value", a)) for a in p.get("args", []))
                )
            elif ev["method"] == "Runtime.exceptionThrown":
                out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
            elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append(f"log: {e.get('text')} {e.get('url', '')}")
        return out


def find_chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], DevTools]]:
    """Start headless chromium; yields a factory returning a DevTools client of a fresh page.

    Skips when chromium is missing and BATCHSEP_REQUIRE_BROWSER is unset; fails when it is set.
    """
    exe = find_chromium()
    if exe is None:
        if "BATCHSEP_REQUIRE_BROWSER" in os.environ:
            pytest.fail("chromium not found but BATCHSEP_REQUIRE_BROWSER is set")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    proc = subprocess.Popen(
        [
            exe,
            *CHROMIUM_FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients: list[DevTools] = []
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 120
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with code {proc.returncode} before DevTools was up")
            if time.monotonic() > deadline:
                pytest.fail("chromium did not write DevToolsActivePort within 120 s")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])

        def open_page() -> DevTools:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=120) as r:
                targets = json.load(r)
            page = next(t for t in targets if t.get("type") == "page")
            client = DevTools(page["webSocketDebuggerUrl"])
            clients.append(client)
            return client

        yield open_page
    finally:
        for c in clients:
            c.ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
