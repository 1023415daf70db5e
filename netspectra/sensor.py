"""`netspectra-sensor attach`: preflight checks, load, attach, loop, detach.

Every refusal is a SensorError with a one-line reason; the CLI prints it.
A state file per attached interface (in /run/netspectra) lets `status` and
`detach` find the sensor process; the XDP attachment itself is a bpf_link
held only by that process, so it disappears with it, however it dies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from .config import Config
from .tasks import layout

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39


class SensorError(Exception):
    pass


def run_dir() -> Path:
    return Path(os.environ.get("NETSPECTRA_RUN_DIR", "/run/netspectra"))


def capabilities(status: str = "/proc/self/status") -> int:
    for line in Path(status).read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges(caps: int | None = None) -> None:
    caps = capabilities() if caps is None else caps

    def has(c: int) -> bool:
        return bool(caps >> c & 1)

    if has(CAP_SYS_ADMIN) and has(CAP_NET_ADMIN):
        return
    if has(CAP_BPF) and has(CAP_PERFMON) and has(CAP_NET_ADMIN):
        return
    raise SensorError(
        "attaching XDP needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN): run with sudo"
    )  # fmt: skip


def netns_id() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def state_path(iface: str) -> Path:
    return run_dir() / f"{netns_id()}.{iface}.json"


def ifindex_of(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise SensorError(f"no such interface: {iface}") from None


def pid_alive(pid: int) -> bool:
    """True while the process runs (a zombie, exited but not yet reaped by
    its parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_free(iface: str, ifindex: int) -> None:
    from .kernel import libbpf

    st = read_state(state_path(iface))
    if st and pid_alive(st.get("pid", -1)):
        raise SensorError(f"a netspectra sensor (pid {st['pid']}) is already attached to {iface}")
    prog_id = libbpf.xdp_query_id(ifindex)
    if prog_id:
        raise SensorError(
            f"another XDP program (id {prog_id}) is already attached to {iface}; "
            f"remove it first (e.g. `ip link set dev {iface} xdp off`)"
        )


def attach(iface: str, cfg: Config, mode: str, epoch_s: float, as_json: bool, out=sys.stdout, err=sys.stderr) -> None:
    from .kernel.program import possible_cpus

    check_privileges()
    ifindex = ifindex_of(iface)
    check_free(iface, ifindex)
    ncpus = possible_cpus()
    lay = layout(cfg.tasks, ncpus)
    collector, _, server = start_metrics(iface, cfg, lay)
    history = SensorHistory(cfg, iface, lay, err)
    api = None
    try:
        api = start_api(cfg, lay, {"interface": iface, "ifindex": ifindex, "epoch_s": epoch_s}, err, history)
        if api is not None:
            collector.serving_api(api.stats, api.history.open_streams)
        _attach(iface, ifindex, cfg, lay, ncpus, mode, epoch_s, as_json, collector, api, history, out, err)
    finally:
        if api is not None:
            api.stop()
        if server is not None:
            server.shutdown()
            server.server_close()


def start_metrics(iface: str, cfg: Config, lay, extra=()):
    """The sensor's metrics collector, its registry (its own, not the global
    one, with the `extra` collectors too) and, unless sensor.metrics_address
    is "", the HTTP server exposing it."""
    from .metrics import SensorCollector, registry_for, serve

    collector = SensorCollector(iface, lay, cfg.sensor.top, cfg.sensor.flow_capacity, sensor=cfg.sensor.sensor_id)
    registry = registry_for(collector)
    for c in extra:
        registry.register(c)
    address = cfg.sensor.metrics_address
    if not address:
        return collector, registry, None
    try:
        server, _ = serve(address, registry)
    except OSError as e:
        raise SensorError(f"cannot serve metrics on {address} (sensor.metrics_address): {e.strerror or e}") from None
    return collector, registry, server


class SensorHistory:
    """The sensor's history (store.url, docs/history.md): the store sink, fed
    through a bounded spool, and the source the query API reads time ranges
    from.  Off (no sink, no source) with store.url: off."""

    def __init__(self, cfg: Config, iface: str, lay, err=sys.stderr):
        from .snapshot import layout_fingerprint
        from .store import Series, describe, open_store

        self.url = "" if cfg.store.url == "off" else describe(cfg.store.url)
        self.sink = self.queued = self.source = None
        if cfg.store.url == "off":
            return
        from .source import StoreSource
        from .store.sink import StoreHandle, StoreSink

        retention = dict(cfg.store.retention)
        self.handle = StoreHandle(lambda: open_store(cfg.store.url, retention), self.url)
        self.series = Series(cfg.sensor.sensor_id, iface, layout_fingerprint(lay))
        self.sink = StoreSink(self.handle, log=err)
        self.source = StoreSource(self.handle, self.series, retention)
        self.spool = cfg.store.spool
        self.err = err
        self._oldest: tuple[float, float | None] = (-1e18, None)  # (when listed, the oldest epoch kept)

    def start(self):
        """The store sink behind its spool (sinks.Queued), or None when off."""
        if self.sink is None:
            return None
        from .sinks import Queued
        from .store import StoreError

        try:
            self.handle.get()
        except StoreError as e:
            print(f"netspectra: warning: {e}; epochs wait in the spool (store.spool = {self.spool})", file=self.err)
        self.queued = Queued(self.sink, "store", max_epochs=self.spool, max_bytes=SPOOL_BYTES, log=self.err)
        return self.queued

    def status(self) -> dict:
        """What GetStatus reports of the history (api HistoryStatus)."""
        out = {"store": self.url}
        if self.queued is None:
            return out
        st = self.queued.stats()
        out |= {
            "up": st.up,
            "epochs_written": self.sink.results["written"],
            "epochs_lost": st.dropped + st.failed,
            "epochs_waiting": st.queued,
        }
        now = time.monotonic()
        if now - self._oldest[0] >= OLDEST_TTL_S:  # listing the series reads every raw row's times: not per call
            try:
                first = [i.first for i in self.handle.get().series() if i.series == self.series]
                if first:  # none yet: ask again next time
                    self._oldest = (now, first[0])
            except Exception:  # status must answer while the store is away
                pass
        if self._oldest[1] is not None:
            out["oldest"] = self._oldest[1]
        return out


SPOOL_BYTES = 2 << 30  # memory the spool may hold, whatever store.spool says
OLDEST_TTL_S = 60.0  # GetStatus lists the store's series at most this often


def start_api(cfg: Config, lay, info: dict, err=sys.stderr, history: SensorHistory | None = None):
    """The query API (docs/api.md) over the epochs the sensor keeps (and its
    history, for time ranges), or None when both api.address and
    api.http_address are ""."""
    if not cfg.api.enabled:
        return None
    from .api.history import History as Kept
    from .api.queries import Queries
    from .api.server import ApiServer, ApiServerError

    kept = Kept(cfg.api.keep_epochs, lay, cfg.api.max_streams)
    info = {"pid": os.getpid(), "started": time.time(), "config": cfg, **info}
    source = None
    if history is not None and history.source is not None:
        source = history.source
        info["history"] = history.status
    try:
        api = ApiServer(cfg.api, Queries(kept, info, source), kept, log=err).start()
    except ApiServerError as e:
        raise SensorError(str(e)) from None
    from .api.settings import host_port

    for addr in (cfg.api.address, cfg.api.http_address):
        if addr and host_port(addr)[0] not in ("127.0.0.1", "::1", "localhost") and not (cfg.api.token or cfg.api.tls):
            print(f"netspectra: warning: the query API on {addr} has neither a token nor TLS", file=err, flush=True)
    return api


def start_alerts(iface: str, cfg: Config, collector, err=sys.stderr, flow_capacity: int | None = None):
    """The alert engine of cfg.alerts and its notification dispatcher (started).
    flow_capacity: the flow table the rules see (default sensor.flow_capacity)."""
    from .alerts.engine import Engine
    from .alerts.notify import Dispatcher, make_notifier

    al = cfg.alerts
    cap = cfg.sensor.flow_capacity if flow_capacity is None else flow_capacity
    engine = Engine(al, interface=iface, sensor=cfg.sensor.sensor_id, flow_capacity=cap)
    notifiers = [make_notifier(spec, al.repeat_interval) for spec in al.notifiers]
    collector.alerting([(r.name, r.severity) for r in al.rules], [n.name for n in notifiers])
    dispatcher = Dispatcher(notifiers, on_failure=collector.notification_failed, log=err)
    return engine, dispatcher.start()


def _attach(iface, ifindex, cfg, lay, ncpus, mode, epoch_s, as_json, collector, api, history, out, err) -> None:
    from .agent import Agent
    from .fleet.config import servers_text
    from .kernel import libbpf
    from .kernel.program import KernelError, Program
    from .snapshot import Origin, boot_id, layout_fingerprint
    from .view import human_bytes

    try:
        prog = Program(
            lay,
            cfg.sensor.flow_capacity,
            cfg.sensor.ringbuf_pages,
            ncpus,
            timestamps=cfg.sensor.timestamps,
            every_packet=cfg.sensor.sketch_mode == "every_packet",
        )
    except KernelError as e:
        raise SensorError(str(e)) from None
    mem = prog.sizes.memory()
    collector.kernel_memory = dict(mem)
    if api is not None:
        api.queries.info["kernel_memory"] = dict(mem)
    try:
        link = libbpf.xdp_link(prog.prog_fd, ifindex, mode)
    except OSError as e:
        prog.close()
        if e.errno == 16:  # EBUSY: attached between our check and now
            raise SensorError(f"another XDP program is already attached to {iface}") from None
        if e.errno == 95 and mode == "native":  # EOPNOTSUPP
            raise SensorError(f"{iface} does not support native XDP; use --mode generic or auto") from None
        raise SensorError(f"cannot attach XDP to {iface} ({mode} mode): {e.strerror}") from None

    if mode == "auto":
        mode = libbpf.xdp_attach_mode(ifindex)  # what the kernel chose
    if api is not None:
        api.queries.info["xdp_mode"] = mode
    state = state_path(iface)
    state.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "pid": os.getpid(),
        "iface": iface,
        "ifindex": ifindex,
        "mode": mode,
        "epoch_s": epoch_s,
        "started": time.time(),
        "kernel_memory": mem,
        "tasks": [t.name for t in cfg.tasks],
        "config": cfg.source,
        "api": cfg.api.address,
    }
    state.write_text(json.dumps(info))
    print(
        f"netspectra: attached to {iface} (ifindex {ifindex}, {mode} mode, bpf_link), epoch {epoch_s:g}s, "
        f"kernel memory {human_bytes(sum(mem.values()))} "
        f"({', '.join(f'{k} {human_bytes(v)}' for k, v in mem.items())}), "
        f"metrics {f'http://{cfg.sensor.metrics_address}/metrics' if cfg.sensor.metrics_address else 'off'}, "
        f"query API {api_text(cfg) if api is not None else 'off'}, "
        f"history {history.url or 'off'}, "
        f"fleet {servers_text(cfg.fleet) if cfg.fleet.enabled else 'off'}; "
        "Ctrl-C to stop",
        file=err,
        flush=True,
    )

    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    origin = Origin(cfg.sensor.sensor_id, boot_id(), iface, layout_fingerprint(lay))
    agent = Agent(prog, lay, origin=origin)
    engine, dispatcher = start_alerts(iface, cfg, collector, err)
    fanout = epoch_sinks(cfg, iface, mem, as_json, collector, engine, dispatcher, api, state, info, stop, out, err)
    store = history.start()
    if store is not None:
        fanout.sinks.append(store)
    publisher = start_fleet(cfg, collector, err)
    if publisher is not None:
        from .sinks import Queued

        fanout.sinks.append(Queued(publisher, "fleet", max_epochs=64, log=err))
    collector.watching_sinks(fanout.queued())
    try:
        agent.run(epoch_s, fanout.on_epoch, stop)
    finally:
        fanout.close()
        os.close(link)
        prog.close()
        state.unlink(missing_ok=True)
        for s, h in handlers.items():
            signal.signal(s, h)
    print(f"netspectra: detached from {iface} after {agent.seq} epochs", file=err, flush=True)


class AlertSink:
    """Evaluates the alert rules on each epoch (in the epoch loop: cheap) and
    hands what fired to the notifiers' own queue.  Later sinks (the view,
    the API) read the outcome of an epoch with of(snap)."""

    name = "alerts"
    KEEP = 1024  # outcomes kept for sinks that run behind

    def __init__(self, engine, dispatcher, collector):
        self.engine = engine
        self.dispatcher = dispatcher
        self.collector = collector
        self._by_seq: dict = {}
        self._lock = threading.Lock()

    def on_epoch(self, snap) -> None:
        events = self.engine.evaluate(snap, time.time())
        self.dispatcher.submit(events)
        active = self.engine.active()
        self.collector.observe_alerts(events, active)
        with self._lock:
            self._by_seq[snap.seq] = (events, active)
            while len(self._by_seq) > self.KEEP:
                del self._by_seq[next(iter(self._by_seq))]

    def of(self, snap) -> tuple[list, list]:
        with self._lock:
            return self._by_seq.get(snap.seq, ([], []))

    def close(self) -> None:
        self.dispatcher.close()


class ViewSink:
    """The terminal view (or --json lines) and the state file that `status`
    reads.  Behind its own queue: a stalled terminal or pipe reader cannot
    hold the epoch loop.  A reader that goes away stops the sensor quietly."""

    name = "view"

    def __init__(self, iface, cfg, mem, as_json, alerts: AlertSink, state: Path, info: dict, stop, out):
        self.iface, self.cfg, self.mem, self.as_json = iface, cfg, mem, as_json
        self.alerts, self.state, self.info, self.stop, self.out = alerts, state, info, stop, out
        self.tty = out.isatty()

    def on_epoch(self, snap) -> None:
        from .alerts.engine import render_active
        from .sinks import SinkRefused
        from .view import render

        _, active = self.alerts.of(snap)
        try:
            if self.as_json:
                rec = snap.to_json() | {"alerts": [ev.to_json() for ev in active]}
                self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
            else:
                top = self.cfg.sensor.top
                text = render(snap, self.iface, self.mem, top) + "\n" + render_active(active, top)
                self.out.write(("\x1b[H\x1b[2J" if self.tty else "\n") + text + "\n")
            self.out.flush()
        except BrokenPipeError:  # the reader of --json went away: detach quietly
            self.stop.set()
            raise SinkRefused("output closed") from None
        self.info.update(last_epoch=snap.seq, last_epoch_end=snap.end, last_packets=snap.counter("all")[0])
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info))
        tmp.replace(self.state)

    def close(self) -> None:
        pass


def live_sinks(collector, engine, dispatcher, api) -> tuple[list, AlertSink]:
    """The sinks a sensor and a collector share, in this order: the metrics and
    the alert rules (in the epoch loop: both cheap folds), then the query API
    (which queues for itself) with each epoch's alerts."""
    from .sinks import FuncSink

    alerts = AlertSink(engine, dispatcher, collector)
    sinks = [FuncSink("metrics", collector.observe), alerts]
    if api is not None:
        sinks.append(FuncSink("api", lambda snap: api.publish(snap, *alerts.of(snap))))
    return sinks, alerts


def epoch_sinks(cfg, iface, mem, as_json, collector, engine, dispatcher, api, state, info, stop, out, err):
    """Where each closed epoch goes: live_sinks(), then the view (and, added by
    the caller, the store and the fleet publisher), each behind a bounded
    queue of its own."""
    from .sinks import Fanout, Queued

    sinks, alerts = live_sinks(collector, engine, dispatcher, api)
    view = ViewSink(iface, cfg, mem, as_json, alerts, state, info, stop, out)
    sinks.append(Queued(view, "view", max_epochs=64, log=err))
    return Fanout(sinks, log=err)


def start_fleet(cfg: Config, collector, err=sys.stderr):
    """The fleet publisher (docs/fleet.md), or None when fleet.servers is empty."""
    from .fleet.publisher import start_publisher
    from .fleet.spool import SpoolError

    try:
        pub = start_publisher(cfg.fleet, cfg.sensor.sensor_id, err)
    except SpoolError as e:
        raise SensorError(str(e)) from None
    if pub is not None:
        collector.watching_publisher(pub)
    return pub


def api_text(cfg: Config) -> str:
    a = cfg.api
    parts = [f"grpc{'s' if a.tls else ''}://{a.address}"] if a.address else []
    if a.http_address:
        parts.append(f"http{'s' if a.tls else ''}://{a.http_address}/v1/")
    auth = ["token"] if a.token else []
    if a.tls and a.tls.client_ca:
        auth.append("client certificates")
    return " and ".join(parts) + (f" ({', '.join(auth)})" if auth else "") + f", {a.keep_epochs} epochs kept"


def detach(iface: str, timeout: float = 10.0) -> str:
    from .kernel import libbpf

    check_privileges()
    ifindex = ifindex_of(iface)
    path = state_path(iface)
    st = read_state(path)
    if st and pid_alive(st["pid"]):
        os.kill(st["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(st["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(st["pid"]):
            raise SensorError(f"sensor pid {st['pid']} on {iface} did not stop within {timeout:g}s")
        return f"stopped sensor pid {st['pid']} on {iface}; XDP detached"
    if st:
        path.unlink(missing_ok=True)
    prog_id = libbpf.xdp_query_id(ifindex)
    if prog_id:
        raise SensorError(f"XDP program id {prog_id} on {iface} was not attached by netspectra; not touching it")
    raise SensorError(f"no netspectra sensor is attached to {iface}")


def status() -> list[dict]:
    """State of every sensor recorded in the run directory; stale entries
    (process gone) are reported once and removed."""
    out = []
    d = run_dir()
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        st = read_state(path)
        if not st:
            continue
        st["alive"] = pid_alive(st["pid"])
        st["here"] = path.name.startswith(f"{netns_id()}.")
        if not st["alive"]:
            path.unlink(missing_ok=True)
        out.append(st)
    return out
