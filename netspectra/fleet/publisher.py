"""The sensor's side of the fleet: a sink that publishes every epoch to NATS
JetStream (docs/fleet.md, "Publishing").

on_epoch() encodes the epoch (codec.encode) and appends it to the disk spool
(fleet/spool.py), and that is all: it never waits on NATS.  A thread of its
own runs an asyncio loop with nats-py that connects (reconnecting forever),
takes the oldest record from the spool, publishes it in chunks (wire.chunks)
to the stream, waits for each chunk's PubAck, and only then removes it from
the spool.  So delivery is at-least-once: a record sent again (after a lost
ack, a crash, a restart) carries the same message ids and JetStream drops it
as a duplicate within its window (contract 9).  While NATS or the stream is
away the records wait on disk; when the spool is full new epochs are dropped
and counted (contract 10).  The publisher never creates the stream: the
collector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import threading
import time
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.errors import APIError, NoStreamResponseError

from .. import codec
from ..configkit import fmt_bytes
from . import wire
from .config import FleetConfig
from .spool import MAX_BYTES, Spool, default_dir

RETRY_FIRST_S = 0.2  # after a failed publish or connection: doubling up to RETRY_MAX_S
RETRY_MAX_S = 10.0
RECONNECT_WAIT_S = 2.0  # nats-py: between attempts at one server
ACK_TIMEOUT_S = 10.0  # a chunk not acknowledged by then is sent again (same message id)
CLOSE_TIMEOUT_S = 5.0
TOO_LARGE = 10054  # JetStream: message size exceeds the stream's max_msg_size


@dataclass
class PublisherStats:
    spooled: int = 0  # epochs taken into the spool
    published: int = 0  # epochs whose every chunk the stream acknowledged (duplicates included)
    duplicates: int = 0  # chunks acknowledged as duplicates: the stream had them already
    dropped: int = 0  # epochs lost: spool full, damaged on disk, refused by the stream, or after close
    chunks: int = 0  # chunks acknowledged
    bytes_sent: int = 0  # payload bytes of those chunks
    connected: bool = False
    spool_depth: int = 0  # epochs waiting on disk now
    spool_bytes: int = 0
    last_error: str = ""


class Publisher:
    """A sink (name "fleet") that publishes each epoch to cfg.stream on
    <cfg.subject_prefix>.epochs.<sensor_id>, or on `subject` (a shard
    collector: its merged windows on wire.partial_subject), spooled in
    `spool_dir` (default: cfg.spool_dir, else fleet-spool in the data directory)."""

    name = "fleet"

    def __init__(
        self,
        cfg: FleetConfig,
        sensor_id: str,
        log=sys.stderr,
        reconnect_wait: float = RECONNECT_WAIT_S,
        ack_timeout: float = ACK_TIMEOUT_S,
        subject: str = "",
        spool_dir: str = "",
    ):
        self.cfg = cfg
        self.sensor_id = sensor_id
        self.log = log
        self.reconnect_wait = reconnect_wait
        self.ack_timeout = ack_timeout
        self.subject = subject or wire.subject(cfg.subject_prefix, sensor_id)
        # spool 0: no backlog, but the epoch being sent is still on disk
        self.spool = Spool(spool_dir or cfg.spool_dir or default_dir(), max(1, cfg.spool), MAX_BYTES)
        self._st = PublisherStats()
        self._lost = 0  # epochs refused by the stream or given after close
        self._lock = threading.Lock()
        self._said: set[str] = set()  # one-line messages said once per episode
        self._closing = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-publisher", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    # --- the sensor's side (any thread)

    def on_epoch(self, snap) -> None:
        if self._closing:
            with self._lock:
                self._lost += 1
            return
        o = snap.origin
        eid = wire.epoch_id(o.sensor or self.sensor_id, o.interface, snap.start)
        if self.spool.append(eid, codec.encode(snap)):
            with self._lock:
                self._st.spooled += 1
            self._forget("full")
        else:
            self._say_once(
                "full",
                f"spool full ({len(self.spool)} epochs, {fmt_bytes(self.spool.nbytes)} in {self.spool.path}): "
                "new epochs are dropped and counted until NATS takes the waiting ones",
            )
        self._kick()

    def stats(self) -> PublisherStats:
        with self._lock:
            st = PublisherStats(**vars(self._st))
            st.dropped = self.spool.dropped + self.spool.damaged + self._lost
        st.spool_depth, st.spool_bytes = len(self.spool), self.spool.nbytes
        return st

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop taking epochs, publish what waits for at most `timeout` seconds,
        and leave the rest on disk for the next start."""
        if self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        while len(self.spool) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=10)
        if len(self.spool):
            self._say(f"{len(self.spool)} epochs left in the spool ({self.spool.path}); published at the next start")
        self.spool.close()

    def _kick(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake.set)

    def _say(self, text: str) -> None:
        print(f"netspectra: fleet: {text}", file=self.log, flush=True)

    def _say_once(self, key: str, text: str) -> None:
        with self._lock:
            new = key not in self._said
            self._said.add(key)
        if new:
            self._say(text)

    def _forget(self, *prefixes: str) -> None:
        """The episodes these messages were about ended: say them again next time."""
        with self._lock:
            self._said = {k for k in self._said if not k.startswith(prefixes)}

    def _error(self, e: BaseException | str) -> str:
        """Keep e as stats().last_error; its text."""
        text = e if isinstance(e, str) else f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        with self._lock:
            self._st.last_error = text
        return text

    # --- the publishing thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass  # close()
        except Exception as e:  # a bug: say it rather than die silently
            self._say(f"stopped publishing: {type(e).__name__}: {e}")

    async def _main(self) -> None:
        self._loop, self._task, self._wake = asyncio.get_running_loop(), asyncio.current_task(), asyncio.Event()
        self._ready.set()
        delay = RETRY_FIRST_S
        while True:
            nc = Client()
            try:
                await nc.connect(**self._options(nc))  # retries forever (max_reconnect_attempts -1)
                delay = RETRY_FIRST_S
                self._up(nc)
                await self._drain(nc)  # returns when the client closed for good (e.g. refused auth)
            except Exception as e:  # nothing goes back to the sensor: say it, wait, connect again
                self._down(self._error(e))
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 2.0)
            self._down(self._st.last_error or "connection closed")
            await self._nap(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _options(self, nc) -> dict:
        cfg = self.cfg

        async def on_error(e):
            text = self._error(e)
            if not self._st.connected:
                self._down(text)

        async def on_disconnect():
            self._down(self._st.last_error or "disconnected")

        async def on_reconnect():
            self._up(nc)
            self._wake.set()

        opts = dict(
            servers=list(cfg.servers),
            name=f"netspectra {self.sensor_id}",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        if cfg.token:
            opts["token"] = cfg.token
        if cfg.credentials:
            opts["user_credentials"] = cfg.credentials
        if cfg.tls is not None:
            ctx = ssl.create_default_context(cafile=cfg.tls.ca or None)
            if cfg.tls.cert:
                ctx.load_cert_chain(cfg.tls.cert, cfg.tls.key)
            opts["tls"] = ctx
        return opts

    def _up(self, nc) -> None:
        with self._lock:
            self._st.connected = True
            news = "down" in self._said or "connected" not in self._said
            self._said.discard("down")
            self._said.add("connected")
        if news:
            u = nc.connected_url  # without user:password@
            url = f"{u.scheme}://{u.netloc.rpartition('@')[2]}" if u else "NATS"
            waiting = f"; {len(self.spool)} epochs waiting" if len(self.spool) else ""
            self._say(f"publishing to {url}, stream {self.cfg.stream}, subject {self.subject}{waiting}")

    def _down(self, why: str) -> None:
        with self._lock:
            self._st.connected = False
        if self._closing:  # close() closes the connection: no news
            return
        self._say_once(
            "down",
            f"NATS unreachable ({why}); epochs wait in the spool ({self.spool.path}, "
            f"at most {self.spool.max_records}) and are published when it is back",
        )

    async def _nap(self, secs: float) -> None:
        """Sleep, or less when an epoch arrives or the connection is back."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), secs)

    async def _drain(self, nc) -> None:
        js = nc.jetstream(timeout=self.ack_timeout)
        delay = RETRY_FIRST_S
        while not nc.is_closed:
            self._wake.clear()
            if not nc.is_connected:  # nats-py reconnects; publishing now would only buffer copies
                await self._nap(1.0)
                continue
            head = self.spool.peek()
            if head is None:
                await self._nap(1.0)
                continue
            try:
                await self._publish(js, nc.max_payload, *head)
            except NoStreamResponseError:
                self._error(f"stream {self.cfg.stream} does not exist")
                self._say_once(
                    "stream",
                    f"stream {self.cfg.stream} does not exist yet (a collector creates it); epochs wait in the spool",
                )
            except APIError as e:
                why = self._error(e)
                if e.err_code == TOO_LARGE:  # never fits this stream: give it up rather than block the rest
                    self.spool.remove()
                    with self._lock:
                        self._lost += 1
                    self._say(f"epoch {head[0]} refused by stream {self.cfg.stream} ({e.description}); dropped")
                    continue
                self._say_once(f"api{e.err_code}", f"stream {self.cfg.stream} refused an epoch ({why}); retrying")
            except Exception as e:  # an ack lost or late, a connection gone: the same record again
                self._error(e)
            else:
                self.spool.remove()
                self._forget("stream", "api")
                delay = RETRY_FIRST_S
                continue
            await self._nap(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _publish(self, js, max_payload: int, eid: str, record: bytes) -> None:
        parts = wire.chunks(record, max_payload)
        for i, data in enumerate(parts):
            hdrs = wire.headers(eid, i, len(parts), codec.VERSION)
            ack = await js.publish(self.subject, data, stream=self.cfg.stream, headers=hdrs)
            with self._lock:
                self._st.chunks += 1
                self._st.bytes_sent += len(data)
                self._st.duplicates += bool(ack.duplicate)
        with self._lock:
            self._st.published += 1


def start_publisher(cfg: FleetConfig, sensor_id: str, log=sys.stderr) -> Publisher | None:
    """The fleet sink, or None when fleet is off (no servers).  Raises
    spool.SpoolError (one line) when the spool directory cannot be used."""
    if not cfg.enabled:
        return None
    return Publisher(cfg, sensor_id, log)
