"""`netspectra collector`: the sensors' epochs from NATS JetStream, merged network-wide.

    fetch (durable pull consumer, explicit acks)
      -> wire.parse + Reassembly -> codec.decode            bad bytes: counted, acked
      -> refuse another layout, subject or clock            counted per sensor, acked
      -> Windows.add (the window the epoch's start falls in) duplicates acked, late stored then acked
      -> Windows.close_ready -> snapshot.merge of the window's epochs
      -> sinks: metrics, alerts, query API (the merged window),
                store (the merged window and every sensor epoch, each its own series)
      -> ack the window's messages once the store wrote them (at once when history is off)

Delivery is at-least-once and applying idempotent (contract 9): a message is
acked only after what it carried was applied, so a collector that dies (or a
store that is down) leaves the messages in the stream and they come again;
a window rebuilt from them is the same window (its record is known by the
window's start, store writes are idempotent), and an epoch that comes again
after its window closed is late or a duplicate, never merged twice.  Held
messages (open windows, epochs being reassembled, writes queued for the
store) are kept alive with in_progress(); at a clean stop the open windows'
messages are given back (nak) for the next collector.

Grace runs on the stream's clock: the time JetStream stored the newest
message read, or the wall clock once nothing is pending.  A backlog read
after a restart therefore closes its windows as they would have closed live,
instead of closing each on its first epoch.  docs/fleet-collector.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import queue
import socket
import sys
import threading
import time
from types import SimpleNamespace
from typing import NamedTuple

from .. import codec
from ..snapshot import EpochSnapshot, Origin, layout_fingerprint, merge, rebind
from ..tasks import layout
from . import wire
from .config import FleetConfig, servers_text
from .windows import DUPLICATE, LATE, Closed, Windows

FETCH_BATCH = 64
FETCH_S = 1.0  # longest wait for a message (also how often acks, grace and stop are looked at)
MAX_ACK_PENDING = 20_000  # messages the server lets one collector hold unacked
MIN_ACK_WAIT_S = 30.0
CONNECT_TRIES = 2  # reconnect attempts per server at start, before giving up with an error
FUTURE_MIN_S = 600.0  # an epoch starting later than now + max(this, 10 windows) is refused (sensor clock)
MAX_SAID = 10_000  # distinct one-time messages (per sensor and reason) before going quiet


class CollectorError(Exception):
    """The collector cannot start or run: one line naming what and why."""


def ack_wait_for(window_s: float, grace_s: float) -> float:
    """The consumer's ack_wait: comfortably longer than a window and its
    grace (messages held longer are kept alive with in_progress(); ack_wait
    is how soon the messages of a collector that died come back)."""
    return max(MIN_ACK_WAIT_S, 3 * (window_s + grace_s))


def collector_id(fleet: FleetConfig) -> str:
    return fleet.collector.id or f"collector@{socket.gethostname()}"


# --- what is applied, then acked ----------------------------------------------------


class _Held(NamedTuple):
    """What a window holds of each epoch besides its snapshot (its token)."""

    msgs: list  # the messages that carried it: acked once it is applied
    record: bytes  # its codec record as received: stored as it is, not encoded again


def _msgs(held: list[_Held]) -> list:
    return [m for h in held for m in h.msgs]


class _Batch:
    """A closed window (every sensor epoch, then the merged record: a merged
    window in the store means its parts are there too) or one late epoch:
    what the store writes before the messages that carried it are acked."""

    def __init__(self, seq: int, snaps: list[EpochSnapshot], msgs: list, records: list | None = None):
        self.seq = seq
        self.snaps = snaps
        self.msgs = msgs
        self.records = records or [None] * len(snaps)  # each epoch's codec record as received, None: encode
        self.flows = SimpleNamespace(nbytes=sum(s.flows.nbytes for s in snaps))  # for sinks.snapshot_bytes
        self.sketch = None


class _BatchWriter:
    """The store sink for batches: writes each record (idempotent), then hands
    the batch back to be acked.  Behind sinks.Queued: a failed write is
    retried, the batch waiting (and its messages unacked) meanwhile."""

    name = "store"

    def __init__(self, sink, done):
        self.sink = sink  # store.sink.StoreSink
        self.done = done

    def on_epoch(self, batch: _Batch) -> None:
        for snap, record in zip(batch.snaps, batch.records):
            self.sink.write(snap, record)
        self.done(batch)

    def close(self) -> None:
        self.sink.close()


class _JsonSink:
    """--json: one line per merged window (docs/json.md record, plus its sensors)."""

    name = "json"

    def __init__(self, out, meta: dict):
        self.out = out
        self.meta = meta  # seq -> {"sensors": [...], "missing": [...], "closed": how}

    def on_epoch(self, snap) -> None:
        rec = snap.to_json() | {"window": self.meta.pop(snap.seq, {})}
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


# --- the collector -------------------------------------------------------------------


class Collector:
    """Consumes the fleet's epochs and applies merged windows to its sinks.

        c = Collector(cfg, log).start()     # sinks, query API, metrics (raises CollectorError)
        c.run(stop)                         # until stop (a threading.Event) is set
        c.close()

    cfg.fleet says where and how (docs/fleet.md); ack_wait_s: the consumer's
    ack_wait (default ack_wait_for(window, grace)); clock: the wall clock."""

    def __init__(
        self,
        cfg,
        log=sys.stderr,
        as_json: bool = False,
        out=sys.stdout,
        ack_wait_s: float | None = None,
        clock=time.time,
    ):
        self.cfg = cfg
        self.fleet: FleetConfig = cfg.fleet
        self.log = log
        self.as_json = as_json
        self.out = out
        self.clock = clock
        cc = self.fleet.collector
        self.id = collector_id(self.fleet)
        self.layout = layout(cfg.tasks)  # the fingerprint does not depend on the CPU count
        self.fingerprint = layout_fingerprint(self.layout)
        self.origin = Origin(self.id, "", "network", self.fingerprint)
        self.windows = Windows(cc.window_s, cc.grace_s, tuple(cc.sensors))
        self.ack_wait_s = ack_wait_s or ack_wait_for(cc.window_s, cc.grace_s)
        prefix = self.fleet.subject_prefix
        self.filters = wire.filters(prefix, cc.source, cc.subjects)  # the consumer's filter subjects
        self.subjects = ", ".join(self.filters)
        self.root = wire.partials(prefix) if cc.source == "partials" else wire.subjects(prefix)
        self.partial_subject = wire.partial_subject(prefix, self.id) if cc.publish else ""
        self.publisher = None
        self._lock = threading.Lock()  # the counters and windows, read by metrics scrapes
        self.decode_errors = 0
        self.refused: dict[tuple[str, str], int] = {}
        self.pending: int | None = None  # the consumer's num_pending, last seen
        self.applied = 0  # merged windows handed to the sinks
        self.acked = 0  # messages acked
        self._said: set = set()
        self._connecting = False
        self._closing = False
        self._last_alive = time.monotonic()
        self._last_nats_error: BaseException | None = None
        self._missing_said: tuple = ()
        self._stream_t = -math.inf  # newest stream time read
        self._caught_up = False
        self._reconnected = False
        self._reassembly = wire.Reassembly(max_pending=4096)
        self._partial: dict[str, tuple[float, list]] = {}  # epoch id -> (stream time of its first chunk, msgs)
        self._writing: dict[int, _Batch] = {}  # batches queued to the store, not yet acked
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # batches written, to ack (from the store's thread)
        self._meta: dict = {}
        self.fanout = self.store = self.history = self.api = self.metrics = None
        self._metrics_server = None
        self.ready = threading.Event()  # consuming

    # --- lifecycle

    def start(self) -> Collector:
        """Sinks, query API and metrics server; CollectorError when one cannot start."""
        from ..sensor import SPOOL_BYTES, SensorError, SensorHistory, live_sinks, start_alerts, start_api, start_metrics
        from ..sinks import Fanout, Queued

        cfg = self.cfg
        if not self.fleet.servers:
            raise CollectorError("fleet.servers is empty: set it to the NATS servers the sensors publish to")
        as_collector = dataclasses.replace(cfg, sensor=dataclasses.replace(cfg.sensor, id=self.id))
        try:
            self.metrics, self.registry, self._metrics_server = start_metrics(
                "network", as_collector, self.layout, extra=[FleetMetrics(self)]
            )
        except SensorError as e:
            raise CollectorError(str(e)) from None
        self.history = SensorHistory(as_collector, "network", self.layout, self.log)
        info = {"interface": "network", "ifindex": 0, "epoch_s": self.fleet.collector.window_s, "collector": self.id}
        try:
            self.api = start_api(as_collector, self.layout, info, self.log, self.history)
            if self.api is not None:  # the kept windows' union is ranked when asked, not per window
                self.api.queries.warm_union = False
        except SensorError as e:
            self.close()
            raise CollectorError(str(e)) from None
        engine, dispatcher = start_alerts("network", as_collector, self.metrics, self.log, flow_capacity=0)
        if self.api is not None:
            self.metrics.serving_api(self.api.stats, self.api.history.open_streams, [("network", self.api.history)])
        sinks, _ = live_sinks(self.metrics, engine, dispatcher, self.api)
        if self.as_json:
            sinks.append(Queued(_JsonSink(self.out, self._meta), "json", max_epochs=64, log=self.log))
        if self.partial_subject:  # a shard: each merged window, spooled on disk before its messages are acked
            from .publisher import Publisher
            from .spool import SpoolError, default_dir

            spool = f"{self.fleet.spool_dir or default_dir()}-partials-{wire.token(self.id)}"
            try:
                self.publisher = Publisher(self.fleet, self.id, self.log, subject=self.partial_subject, spool_dir=spool)
            except SpoolError as e:
                self.close()
                raise CollectorError(str(e)) from None
            sinks.append(self.publisher)
            self.metrics.watching_publisher(self.publisher)  # netspectra_fleet_*{interface="network"}
        self.fanout = Fanout(sinks, log=self.log)
        if self.history.sink is not None:
            writer = _BatchWriter(self.history.sink, self._done.put)
            self.store = Queued(writer, "store", max_epochs=self.history.spool, max_bytes=SPOOL_BYTES, log=self.log)
            self.history.queued = self.store
            self.metrics.watching_sinks([*self.fanout.queued(), self.store])
        else:
            self.metrics.watching_sinks(self.fanout.queued())
        return self

    def status_line(self) -> str:
        from ..sensor import api_text

        f = self.fleet
        cc = f.collector
        metrics = f"http://{self.cfg.sensor.metrics_address}/metrics" if self.cfg.sensor.metrics_address else "off"
        sensors = ", ".join(cc.sensors) if cc.sensors else "whoever reports"
        return (
            f"netspectra: collector {self.id} on {servers_text(f)}: stream {f.stream}, "
            f"subjects {self.subjects}, consumer {cc.durable} (ack wait {self.ack_wait_s:g}s); "
            f"{f'partials to {self.partial_subject}; ' if self.partial_subject else ''}"
            f"windows {cc.window_s:g}s + grace {cc.grace_s:g}s, sensors: {sensors}; layout {self.fingerprint}; "
            f"query API {api_text(self.cfg) if self.api is not None else 'off'}, metrics {metrics}, "
            f"history {self.history.url if self.history and self.history.url else 'off'}; Ctrl-C to stop"
        )

    def run(self, stop: threading.Event, on_ready=None) -> None:
        """Consume until `stop` is set; CollectorError when NATS cannot be used.
        on_ready() is called once the stream and consumer are there (and
        self.ready is set)."""
        asyncio.run(self._main(stop, on_ready))

    def close(self) -> None:
        """Close the sinks (the store gets what is queued, within its timeout;
        what it did not write was not acked and comes again), API and metrics."""
        if self.fanout is not None:
            self.fanout.close()  # the publisher (a shard's partials) among them
        elif self.publisher is not None:
            self.publisher.close()
        if self.store is not None:
            self.store.close()
        if self.api is not None:
            self.api.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    # --- NATS

    async def _connect(self):
        import nats

        f = self.fleet
        opts: dict = {
            "servers": list(f.servers),
            "name": self.id,
            "connect_timeout": 5,
            # the first connect gives up after a few tries (one clear line); later reconnects never do
            "max_reconnect_attempts": CONNECT_TRIES,
            "reconnect_time_wait": 1,
            "error_cb": self._nats_error,
            "disconnected_cb": self._nats_down,
            "reconnected_cb": self._nats_up,
        }
        if f.token:
            opts["token"] = f.token
        if f.credentials:
            opts["user_credentials"] = f.credentials
        if f.tls is not None:
            import ssl

            try:
                ctx = ssl.create_default_context(cafile=f.tls.ca or None)
                if f.tls.cert:
                    ctx.load_cert_chain(f.tls.cert, f.tls.key or None)
            except (OSError, ssl.SSLError) as e:
                raise CollectorError(f"cannot read fleet.tls files: {e}") from None
            opts["tls"] = ctx
        self._connecting = True
        try:
            nc = await nats.connect(**opts)
        except Exception as e:
            why = _err(self._last_nats_error or e)
            raise CollectorError(f"cannot connect to NATS at {servers_text(f)}: {why}") from None
        finally:
            self._connecting = False
        nc.options["max_reconnect_attempts"] = -1
        return nc

    async def _nats_error(self, e) -> None:
        self._last_nats_error = e
        if self._connecting:
            return
        self._say_once(("nats-error", type(e)), f"NATS: {_err(e)}")

    async def _nats_down(self) -> None:
        self._caught_up = False  # time stands still for grace while nothing can arrive
        if not self._closing:
            self._say("NATS disconnected; reconnecting (unacked messages come again)")

    async def _nats_up(self) -> None:
        # what the outage held up comes now: open windows get their grace from here (and again
        # from the first message read, on the stream's clock)
        with self._lock:
            self.windows.restart_grace(max(self._stream_t, self.clock()))
        self._reconnected = True
        self._say("NATS reconnected")

    async def _ensure_stream(self, js) -> None:
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        f = self.fleet
        both = [wire.subjects(f.subject_prefix), wire.partials(f.subject_prefix)]
        want = StreamConfig(
            name=f.stream,
            subjects=both,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=f.max_age_s,
            duplicate_window=f.duplicate_window_s,
        )
        try:
            info = await js.stream_info(f.stream)
        except NotFoundError:
            await js.add_stream(want)
            self._say(f"created stream {f.stream} ({', '.join(both)}, file storage, max age {f.max_age_s:g}s)")
            return
        have = info.config
        part = both[1]
        needs_partials = bool(self.partial_subject) or self.root == part
        if not needs_partials and not any(covers(p, self.root) for p in have.subjects or []):
            raise CollectorError(
                f"stream {f.stream} exists without the subjects {self.root} (it holds {have.subjects}): "
                "set fleet.stream or fleet.subject_prefix"
            )
        if needs_partials and not any(covers(p, part) for p in have.subjects or []):
            # a stream made before shards: partials go to the same stream (a subject added, nothing else changes)
            have.subjects = [*(have.subjects or []), part]
            try:
                await js.update_stream(have)
            except Exception as e:
                raise CollectorError(
                    f"stream {f.stream} lacks the subjects {part} and cannot take them ({_err(e)}): "
                    f"add them (nats stream edit {f.stream} --subjects ...) or set fleet.stream"
                ) from None
            self._say(f"stream {f.stream}: added the subjects {part} (shards' partial windows)")
        diff = [
            f"{name} {a!r} (not {b!r})"
            for name, a, b in (
                ("storage", _name(have.storage), "file"),
                ("retention", _name(have.retention), "limits"),
                ("max_age", have.max_age, f.max_age_s),
                ("duplicate_window", have.duplicate_window, f.duplicate_window_s),
            )
            if not _same(a, b)
        ]
        if diff:
            self._say(f"stream {f.stream} exists with other settings: {', '.join(diff)}; using it as it is")

    async def _consumer(self, js):
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import Error as JsError
        from nats.js.errors import NotFoundError

        f = self.fleet
        durable = f.collector.durable
        want = ConsumerConfig(
            name=durable,
            durable_name=durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=MAX_ACK_PENDING,
        )
        if len(self.filters) == 1:
            want.filter_subject = self.filters[0]
        else:
            want.filter_subjects = list(self.filters)  # nats-server 2.10 or later
        try:
            info = await js.consumer_info(f.stream, durable)
        except NotFoundError:
            info = None
        c = info.config if info is not None else None
        other = c is not None and set(c.filter_subjects or ()) | ({c.filter_subject} - {None, ""}) != set(self.filters)
        if c is None or other or c.ack_wait != self.ack_wait_s or c.max_ack_pending != MAX_ACK_PENDING:
            try:
                await js.add_consumer(f.stream, want)
            except JsError as e:
                if info is None:
                    raise CollectorError(f"cannot create consumer {durable} on stream {f.stream}: {_err(e)}") from None
                if other:  # reading other subjects than configured would merge the wrong sensors
                    raise CollectorError(
                        f"consumer {durable} reads other subjects than {self.subjects} and cannot change ({_err(e)}): "
                        "set another fleet.collector.durable (one per collector) or delete the consumer"
                    ) from None
                self._say(f"consumer {durable} exists with other settings that cannot change ({_err(e)}); using it")
        return await js.pull_subscribe_bind(durable=durable, stream=f.stream)

    async def _main(self, stop: threading.Event, on_ready) -> None:
        import nats.errors
        from nats.js.errors import Error as JsError

        nc = await self._connect()
        try:
            js = nc.jetstream()
            try:
                await self._ensure_stream(js)
                sub = await self._consumer(js)
            except (JsError, nats.errors.Error) as e:
                raise CollectorError(f"NATS JetStream at {servers_text(self.fleet)}: {_err(e)}") from None
            self.ready.set()
            if on_ready is not None:
                on_ready()
            while not stop.is_set():
                if self._store_full():
                    self._say_once(("store-full",), "the store's spool is full: not fetching until it drains")
                    await asyncio.sleep(FETCH_S)
                    await self._ack_done()
                    await self._keep_alive()
                    continue
                try:
                    msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_S)
                except nats.errors.TimeoutError:
                    msgs = []
                except (TimeoutError, nats.errors.Error, JsError) as e:
                    self._say_once(("fetch", type(e)), f"fetch failed ({_err(e)}); retrying")
                    await asyncio.sleep(FETCH_S)
                    msgs = []
                for m in msgs:
                    await self._on_message(m)
                if not msgs:
                    await self._refresh_pending(sub)
                await self._close_windows()
                await self._ack_done()
                await self._keep_alive()
            await self._stop_consuming()
        finally:
            try:
                await nc.flush(timeout=2)  # the acks and naks sent last
            except Exception:
                pass
            self._closing = True
            await nc.close()

    async def _stop_consuming(self) -> None:
        """Give back what was not applied (open windows, partial epochs) and
        ack what the store finishes writing now."""
        with self._lock:
            held = _msgs(self.windows.held())
        held += [m for _, msgs in self._partial.values() for m in msgs]
        self._partial.clear()
        for m in held:
            await _quietly(m.nak())
        if self.store is not None:
            self.store.flush(timeout=10.0)
        await self._ack_done()
        for b in list(self._writing.values()):  # still queued: the store is down; they come again
            for m in b.msgs:
                await _quietly(m.nak())

    async def _refresh_pending(self, sub) -> None:
        try:
            info = await sub.consumer_info()
        except Exception:
            self._caught_up = False
            return
        self.pending = info.num_pending
        self._caught_up = info.num_pending == 0
        if not self._caught_up and (info.num_ack_pending or 0) >= MAX_ACK_PENDING:
            # the server delivers nothing more until something is acked: close the oldest window
            with self._lock:
                closed = self.windows.close_oldest()
            for w in closed:
                await self._apply(w)

    # --- a message

    async def _on_message(self, msg) -> None:
        md = msg.metadata
        self._stream_t = max(self._stream_t, md.timestamp.timestamp())
        self.pending = md.num_pending
        self._caught_up = md.num_pending == 0
        if self._reconnected:
            self._reconnected = False
            with self._lock:
                self.windows.restart_grace(self._stream_t)
        sensor = msg.subject.rsplit(".", 1)[-1]
        try:
            chunk = wire.parse(msg.headers, msg.data)
        except wire.WireError as e:
            return await self._bad([msg], sensor, str(e))
        if chunk.codec > codec.VERSION:  # counted once per epoch (its first chunk), every chunk acked
            why = f"codec version {chunk.codec} is newer than this collector's ({codec.VERSION}): upgrade the collector"
            return await self._refuse([msg], sensor, "codec_version", why, count=chunk.index == 0)
        first, msgs = self._partial.get(chunk.epoch, (self._stream_t, []))
        msgs.append(msg)
        self._partial[chunk.epoch] = (first, msgs)
        data = self._reassembly.add(chunk)
        if data is None:
            return
        del self._partial[chunk.epoch]
        try:
            snap = await asyncio.to_thread(codec.decode, data)
        except codec.CodecError as e:
            return await self._bad(msgs, sensor, str(e))
        except Exception as e:  # whatever a record does to the decoder, it must not stop the consumer
            return await self._bad(msgs, sensor, f"cannot decode ({type(e).__name__}: {_err(e)})")
        o = snap.origin
        if wire.token(o.sensor) != sensor:
            why = f"its epoch names sensor {o.sensor!r} but came on the subject of {sensor!r}"
            return await self._refuse(msgs, sensor, "subject", why)
        fp = o.layout or layout_fingerprint(snap.sketch.layout)
        if fp != self.fingerprint:
            why = (
                f"sketch layout {fp} differs from this collector's {self.fingerprint} "
                "(tasks, seeds and sizes must be the same everywhere)"
            )
            return await self._refuse(msgs, o.sensor, "layout", why)
        ahead = snap.start - self.clock()
        if ahead > max(FUTURE_MIN_S, 10 * self.windows.window_s):
            why = f"epoch starts {ahead:.0f}s in the future (check the sensor's clock)"
            return await self._refuse(msgs, o.sensor, "clock", why)
        with self._lock:
            v = self.windows.add(snap, _Held(msgs, data), self.now())
        if v.kind == DUPLICATE:
            await self._ack(msgs)
        elif v.kind == LATE:
            self._say_once(("late", o.sensor), f"sensor {o.sensor}: an epoch came after its window closed; "
                           "stored as the sensor's own epoch, not merged (see fleet.collector.grace)")  # fmt: skip
            await self._write(_Batch(-1, [snap], msgs, [data]))

    async def _bad(self, msgs, sensor: str, why: str) -> None:
        with self._lock:
            self.decode_errors += 1
        self._say_once(("bad", sensor), f"sensor {sensor}: message dropped: {why} (said once per sensor)")
        await self._ack(msgs)

    async def _refuse(self, msgs, sensor: str, reason: str, why: str, count: bool = True) -> None:
        with self._lock:
            self.refused[(sensor, reason)] = self.refused.get((sensor, reason), 0) + count
        self._say_once(("refused", sensor, reason), f"sensor {sensor}: epoch refused: {why}")
        await self._ack(msgs)

    # --- windows

    def now(self) -> float:
        """The clock grace runs on: stream time, or the wall clock when caught up."""
        return max(self._stream_t, self.clock()) if self._caught_up else self._stream_t

    async def _close_windows(self) -> None:
        self._expire_partial()
        with self._lock:
            closed = self.windows.close_ready(self.now())
        for w in closed:
            await self._apply(w)

    def _expire_partial(self) -> None:
        """Epochs whose chunks stopped coming (within a window and its grace)
        are dropped as decode errors and their messages acked."""
        limit = self.windows.window_s + self.windows.grace_s
        for eid, (first, msgs) in list(self._partial.items()):
            if self._stream_t - first > limit:
                del self._partial[eid]
                self._reassembly.discard(eid)
                with self._lock:
                    self.decode_errors += 1
                self._say_once(("partial",), f"epoch {eid}: chunks missing after {limit:g}s; dropped")
                self._done.put(_Batch(-1, [], msgs))

    async def _apply(self, w: Closed) -> None:
        try:
            parts = [rebind(s, self.layout) for s in w.epochs]
            snap = await asyncio.to_thread(merge, parts, w.index, self.origin)
        except Exception as e:  # not with one fingerprint; but never poison the consumer: keep the parts
            self._say(f"window {w.index}: cannot merge ({type(e).__name__}: {_err(e)}); its epochs are stored apart")
            await self._write(_Batch(w.index, list(w.epochs), _msgs(w.tokens), [t.record for t in w.tokens]))
            return
        snap.start, snap.end = w.start, w.end  # the window's record, known by its start wherever it is stored
        if w.missing and w.missing != self._missing_said:
            self._say(f"window {w.index} closed ({w.how}) without sensor(s) {', '.join(w.missing)}")
        self._missing_said = w.missing
        if self.as_json:
            self._meta[w.index] = {"sensors": list(w.sensors), "missing": list(w.missing), "closed": w.how}
        self.fanout.on_epoch(snap)
        self.applied += 1
        keep = self.fleet.collector.store_sensors
        parts, records = (list(w.epochs), [t.record for t in w.tokens]) if keep else ([], [])
        await self._write(_Batch(w.index, [*parts, snap], _msgs(w.tokens), [*records, None]))

    async def _write(self, batch: _Batch) -> None:
        """Store the batch, then ack it (at once when history is off)."""
        if self.store is None:
            await self._ack(batch.msgs)
            return
        self._writing[id(batch)] = batch
        dropped = self.store.stats().dropped
        self.store.on_epoch(batch)
        if self.store.stats().dropped != dropped:  # no room (by bytes): give it back, it comes again later
            del self._writing[id(batch)]
            for m in batch.msgs:
                await _quietly(m.nak(delay=self.windows.window_s))

    def _store_full(self) -> bool:
        """The store's spool is full (the store is down or slow): fetch
        nothing more; the stream holds the epochs meanwhile."""
        return self.store is not None and self.store.stats().queued >= self.store.max_epochs

    async def _ack_done(self) -> None:
        while True:
            try:
                b = self._done.get_nowait()
            except queue.Empty:
                return
            self._writing.pop(id(b), None)
            await self._ack(b.msgs)

    async def _ack(self, msgs) -> None:
        for m in msgs:
            await _quietly(m.ack())
        self.acked += len(msgs)

    async def _keep_alive(self) -> None:
        """in_progress() for every message held, every ack_wait / 3."""
        if time.monotonic() - self._last_alive < self.ack_wait_s / 3:
            return
        self._last_alive = time.monotonic()
        with self._lock:
            held = _msgs(self.windows.held())
        held += [m for _, msgs in self._partial.values() for m in msgs]
        held += [m for b in self._writing.values() for m in b.msgs]
        for m in held:
            await _quietly(m.in_progress())

    # --- reporting

    def stats(self) -> dict:
        """Counters for metrics and tests (any thread)."""
        with self._lock:
            w = self.windows
            return {
                "received": {s: st.received for s, st in w.sensors.items()},
                "duplicates": {s: st.duplicates for s, st in w.sensors.items()},
                "late": {s: st.late for s, st in w.sensors.items()},
                "last_epoch": {s: st.last_epoch for s, st in w.sensors.items() if st.last_epoch > -math.inf},
                "decode_errors": self.decode_errors,
                "refused": dict(self.refused),
                "windows": dict(w.closed_by),
                "open_windows": w.open_windows(),
                "sensors": len(w.sensors),
                "pending": self.pending,
                "applied": self.applied,
                "acked": self.acked,
            }

    def _say(self, text: str) -> None:
        print(f"netspectra: collector: {text}", file=self.log, flush=True)

    def _say_once(self, what, text: str) -> None:
        """Say it the first time only (keys name a sensor and a reason: bounded)."""
        if what not in self._said and len(self._said) < MAX_SAID:
            self._said.add(what)
            self._say(text)


def run_collector(cfg, as_json: bool = False, out=sys.stdout, err=sys.stderr) -> None:
    """`netspectra collector`: start, say where, consume until SIGINT or
    SIGTERM, stop cleanly (what was not applied is not acked: it comes again)."""
    import signal

    from .. import malloc

    malloc.keep_large_blocks_mapped()  # merged windows' arrays go back to the system when freed
    c = Collector(cfg, log=err, as_json=as_json, out=out).start()
    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        c.run(stop, on_ready=lambda: print(c.status_line(), file=err, flush=True))
    finally:
        c.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    print(f"netspectra: collector {c.id} stopped after {c.applied} windows", file=err, flush=True)


async def _quietly(coro) -> None:
    """An ack, nak or in_progress: when it cannot be sent (NATS away), the
    message simply comes again."""
    try:
        await coro
    except Exception:
        pass


def covers(pattern: str, subject: str) -> bool:
    """Whether the NATS subject pattern takes every subject of `subject`
    (itself a pattern, e.g. netspectra.v1.epochs.>)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return i < len(s)
        if i >= len(s) or s[i] == ">" or (tok != "*" and tok != s[i]) or (tok == "*" and s[i] == ">"):
            return False
    return len(p) == len(s)


def _err(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__


def _name(v) -> str:
    return str(getattr(v, "value", v))


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


# --- metrics ------------------------------------------------------------------------


class FleetMetrics:
    """The collector's own metrics (docs/fleet-collector.md), computed at
    scrape time from Collector.stats().  Label sets are bounded by the fleet:
    one series per sensor (and refusal reason)."""

    def __init__(self, collector: Collector):
        self.c = collector

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.c.stats()
        p = "netspectra_collector_"

        def family(kind, name, doc, values, labels=()):
            """`values`: a number (no labels), or {label value (or tuple of them): number}, in key order."""
            m = kind(p + name, doc, labels=list(labels))
            rows = sorted(values.items()) if labels else [((), values)]
            for k, n in rows:
                m.add_metric(list(k) if isinstance(k, tuple) else [k], n)
            return m

        C, G, sensor = CounterMetricFamily, GaugeMetricFamily, ["sensor"]
        yield family(C, "epochs_received", "Sensor epochs decoded and put into windows (with duplicates and late ones).", st["received"], sensor)  # fmt: skip
        yield family(C, "duplicates", "Sensor epochs received again while their window was open (acked, not merged twice).", st["duplicates"], sensor)  # fmt: skip
        yield family(C, "late", "Sensor epochs received after their window closed (stored as the sensor's own, not merged).", st["late"], sensor)  # fmt: skip
        yield family(C, "decode_errors", "Messages that were not a readable epoch record (acked, dropped).", st["decode_errors"])  # fmt: skip
        yield family(C, "refused", "Sensor epochs refused (acked, dropped) by reason: layout, codec_version, subject, clock.", st["refused"], ["sensor", "reason"])  # fmt: skip
        yield family(C, "windows", "Network-wide windows merged, by how they closed: complete, grace, forced.", st["windows"], ["closed"])  # fmt: skip
        yield family(G, "sensors", "Sensors seen since the collector started.", st["sensors"])
        yield family(G, "open_windows", "Windows waiting for their sensors or their grace.", st["open_windows"])
        yield family(G, "sensor_last_epoch_timestamp_seconds", "End of the newest epoch received from each sensor.", st["last_epoch"], sensor)  # fmt: skip
        if st["pending"] is not None:
            yield family(
                G, "consumer_pending", "Messages in the stream the collector has not fetched yet.", st["pending"]
            )
