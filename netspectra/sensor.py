"""`netspectra-sensor attach`: preflight checks, load, attach, loop, detach.

Every refusal is a SensorError with a one-line reason; the CLI prints it.
A state file per attached interface (in /run/netspectra) lets `status` and
`detach` find the sensor process; the XDP attachment itself is a bpf_link
held only by that process, so it disappears with it, however it dies.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import malloc
from .config import Config
from .sinks import SinkRefused
from .tasks import layout

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39


class SensorError(Exception):
    pass


class Stopped(Exception):
    """The sensor stopped (everything detached) for a reason that must show in
    its exit status: `status` (non-zero, for systemd's Restart=on-failure) and
    one line saying why."""

    def __init__(self, status: int, msg: str):
        super().__init__(msg)
        self.status = status


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM while compiling) during start-up, after everything
    attached so far was detached.  `compiling`: a compilation may still run in
    a worker thread (see compile_program).  `status`: the exit status."""

    def __init__(self, msg: str, compiling: bool = False, status: int = 130):
        super().__init__(msg)
        self.compiling = compiling
        self.status = status


class _Terminated(KeyboardInterrupt):
    """SIGTERM while compiling: a stop request, raised in the main thread."""


def _raise_terminated(_signum, _frame) -> None:
    raise _Terminated


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


class DamagedState(Exception):
    """A state file that is not what attach writes: "PATH: damaged state file (why)"."""


# What attach writes and status, detach and query --iface read: the fields they need, by type.
STATE_FIELDS = {"pid": int, "iface": str, "mode": str, "started": float}
STATE_OPTIONAL = {"last_epoch": int, "last_packets": int, "api": str, "epoch_s": float}
PID_MAX = 1 << 22  # the kernel's pid_max limit


def load_state(path: Path) -> dict | None:
    """The state file at path, None when there is none; DamagedState when it
    cannot be read or lacks what the readers need (truncated, edited, another
    program's)."""

    def damaged(why: str):
        return DamagedState(f"{path}: damaged state file ({why})")

    try:
        st = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as e:
        raise damaged(e.strerror or str(e)) from None
    except (ValueError, RecursionError):
        raise damaged("not JSON") from None
    if not isinstance(st, dict):
        raise damaged(f"a JSON {type(st).__name__}, not an object")
    for key, kind in (STATE_FIELDS | STATE_OPTIONAL).items():
        if key not in st:
            if key in STATE_FIELDS:
                raise damaged(f"no {key}")
            continue
        v = st[key]
        ok = isinstance(v, (int, float) if kind is float else kind) and not isinstance(v, bool)
        if kind is float and ok:
            ok = math.isfinite(v)
        if not ok:
            raise damaged(f"{key} is {json.dumps(v)[:20]}")
    if not 0 < st["pid"] < PID_MAX:
        raise damaged(f"pid {str(st['pid'])[:20]}")
    if not 0 <= st["started"] < 1e11:  # a time that can be shown
        raise damaged(f"started {str(st['started'])[:20]}")
    return st


def read_state(path: Path) -> dict | None:
    """The state file at path, or None when there is none or it is damaged."""
    try:
        return load_state(path)
    except DamagedState:
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


def all_name(ifaces) -> str:
    """What names every interface of a sensor together ("eth0+eth1"): the
    interface of its merged epochs and of its process-wide series (the query
    API's, the fleet's, the view's).  '+' is no character of a name that
    check_interfaces() would take alone in practice, and it reads as a sum."""
    return "+".join(ifaces)


def attach(ifaces, cfg: Config, mode: str, epoch_s: float, as_json: bool, out=sys.stdout, err=sys.stderr) -> None:
    """Attach to every interface of `ifaces` (a name or a list): one XDP
    program each, one metrics endpoint and one query API for them all."""
    from .kernel.program import KernelError, check_headers, import_bcc, possible_cpus

    ifaces = [ifaces] if isinstance(ifaces, str) else list(ifaces)
    check_privileges()
    ifindexes = {i: ifindex_of(i) for i in ifaces}
    for i in ifaces:
        check_free(i, ifindexes[i])
    try:  # what Program checks too, here before any "compiling" line: a refusal stays one line
        check_headers()
        import_bcc()
    except KernelError as e:
        raise SensorError(str(e)) from None
    ncpus = possible_cpus()
    lay = layout(cfg.tasks, ncpus)
    malloc.keep_large_blocks_mapped()  # epochs' arrays go back to the system when freed
    collectors, _, server = start_metrics(ifaces, cfg, lay)
    taps = [Tap(i, ifindexes[i], c, SensorHistory(cfg, i, lay, err)) for i, c in zip(ifaces, collectors)]
    api = None
    try:
        api = start_apis(cfg, lay, taps, epoch_s, err)
        if api is not None:
            kept = [(t.iface, t.api.history) for t in taps if t.api is not api]
            collectors[0].serving_api(api.stats, api.history.open_streams, [*kept, (all_name(ifaces), api.history)])
        _attach(taps, cfg, lay, ncpus, mode, epoch_s, as_json, api, out, err)
    finally:
        for t in taps:
            if t.api is not None and t.api is not api:
                t.api.stop()
        if api is not None:
            api.stop()
        if server is not None:
            server.shutdown()
            server.server_close()


class Tap:
    """One interface of a sensor: its program, epochs and what they feed (its
    metrics collector, alert engine, kept epochs for the API, history)."""

    def __init__(self, iface: str, ifindex: int, collector, history):
        self.iface, self.ifindex, self.collector, self.history = iface, ifindex, collector, history
        self.api = None  # api.server.ApiServer publishing this interface's epochs (not listening when several)
        self.prog = self.link = self.agent = self.fanout = self.alerts = None
        self.mode = ""
        self.ready_s = 0.0  # compiling, loading and attaching took this long
        self.mem: dict = {}
        self.state = state_path(iface)
        self.info: dict = {}


def start_metrics(iface, cfg: Config, lay, extra=()):
    """The sensor's metrics collector, its registry (its own, not the global
    one, with the `extra` collectors too) and, unless sensor.metrics_address
    is "", the HTTP server exposing it.  `iface` a list of interfaces: a
    collector for each, returned as a list, exposed together (metrics.Combined)."""
    from .metrics import Combined, SensorCollector, registry_for, serve

    names = [iface] if isinstance(iface, str) else list(iface)
    collectors = [
        SensorCollector(i, lay, cfg.sensor.top, cfg.sensor.flow_capacity, sensor=cfg.sensor.sensor_id) for i in names
    ]
    if len(collectors) > 1:
        for c in collectors:
            c.process_interface = all_name(names)
    registry = registry_for(collectors[0] if len(collectors) == 1 else Combined(collectors))
    for c in extra:
        registry.register(c)
    out = collectors[0] if isinstance(iface, str) else collectors
    address = cfg.sensor.metrics_address
    if not address:
        return out, registry, None
    try:
        server, _ = serve(address, registry)
    except OSError as e:
        raise SensorError(f"cannot serve metrics on {address} (sensor.metrics_address): {e.strerror or e}") from None
    return out, registry, server


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
    return _serve_api(cfg, *_queries(cfg, lay, info, history), err)


def _queries(cfg: Config, lay, info: dict, history: SensorHistory | None, share: int = 1):
    """(Queries, History): the answers over the epochs kept of one interface
    (or of a merge), with 1/share of api.max_memory."""
    from .api.history import History as Kept
    from .api.queries import Queries

    kept = Kept(cfg.api.keep_epochs, lay, cfg.api.max_streams, cfg.api.max_memory // share)
    info = {"pid": os.getpid(), "started": time.time(), "config": cfg, **info}
    source = None
    if history is not None and history.source is not None:
        source = history.source
        info["history"] = history.status
    return Queries(kept, info, source), kept


def _serve_api(cfg: Config, queries, kept, err):
    from .api.server import ApiServer, ApiServerError

    try:
        api = ApiServer(cfg.api, queries, kept, log=err).start()
    except ApiServerError as e:
        raise SensorError(str(e)) from None
    from .api.settings import host_port

    for addr in (cfg.api.address, cfg.api.http_address):
        if addr and host_port(addr)[0] not in ("127.0.0.1", "::1", "localhost") and not (cfg.api.token or cfg.api.tls):
            print(f"netspectra: warning: the query API on {addr} has neither a token nor TLS", file=err, flush=True)
    return api


def start_apis(cfg: Config, lay, taps: list, epoch_s: float, err=sys.stderr):
    """The query API of a sensor's interfaces.  One interface: start_api() as
    ever.  Several: each interface's epochs are kept and answered by Queries
    of their own (an ApiServer that does not listen: its thread makes epochs
    visible), and the one listening server routes each request by its
    `sensor` field (api.queries.Interfaces): "<sensor id>/<interface>" or
    "/<interface>" for one interface, else the epochs of every interface
    merged.  Returns the listening server, or None when the API is off."""
    if not cfg.api.enabled:
        return None
    if len(taps) == 1:
        t = taps[0]
        t.api = start_api(cfg, lay, {"interface": t.iface, "ifindex": t.ifindex, "epoch_s": epoch_s}, err, t.history)
        return t.api
    from .api.queries import Interfaces
    from .api.server import ApiServer

    names = [t.iface for t in taps]
    by_iface = {}
    for t in taps:
        info = {"interface": t.iface, "interfaces": names, "ifindex": t.ifindex, "epoch_s": epoch_s}
        q, kept = _queries(cfg, lay, info, t.history, share=len(taps) + 1)  # each interface and the merge
        t.api = ApiServer(cfg.api, q, kept, log=err)
        by_iface[t.iface] = q
    info = {"interface": all_name(names), "interfaces": names, "ifindex": 0, "epoch_s": epoch_s, "merged": True}
    q, kept = _queries(cfg, lay, info, None, share=len(taps) + 1)
    return _serve_api(cfg, Interfaces(q, by_iface), kept, err)


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


def compile_program(iface: str, build, err=sys.stderr, poll_s: float = 0.1):
    """build() (the bcc compilation and load: 1-13 s of LLVM) in a worker
    thread, saying so on err first; its result, or its exception raised here.

    Why a thread: LLVM runs in C and only returns to Python when done, so the
    main thread could not see Ctrl-C until then.  Waiting on the worker in
    short joins lets KeyboardInterrupt through at once; it becomes
    Interrupted(compiling=True), and the worker (a daemon) is left running;
    SIGTERM does the same (status 0, a stop request).  The caller must
    leave with os._exit(), as a normal interpreter exit would
    run C++ destructors under the live LLVM thread."""
    print(f"netspectra: compiling the XDP program for {iface} (bcc, a few seconds)...", file=err, flush=True)
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = build()
        except BaseException as e:  # handed to the main thread
            result["error"] = e

    worker = threading.Thread(target=run, name=f"netspectra-compile-{iface}", daemon=True)
    main = threading.current_thread() is threading.main_thread()  # only there can signal handlers be set
    # SIGTERM (systemctl stop) would otherwise kill the process without a word
    before = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
    worker.start()
    try:
        while worker.is_alive():
            worker.join(poll_s)
    except _Terminated:  # a stop request: a clean stop (exit 0), as SIGTERM is once attached
        raise Interrupted("SIGTERM while compiling; nothing attached", compiling=True, status=0) from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted while compiling; nothing attached", compiling=True) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, before)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _load_program(t: Tap, cfg, lay, ncpus, mode, epoch_s, err=sys.stderr) -> None:
    """Compile and load the program for one interface and attach it (a bpf_link)."""
    from .kernel import libbpf
    from .kernel.program import KernelError, Program

    began = time.monotonic()
    try:
        t.prog = compile_program(
            t.iface,
            lambda: Program(
                lay,
                cfg.sensor.flow_capacity,
                cfg.sensor.ringbuf_pages,
                ncpus,
                timestamps=cfg.sensor.timestamps,
                every_packet=cfg.sensor.sketch_mode == "every_packet",
            ),
            err,
        )
    except KernelError as e:
        raise SensorError(str(e)) from None
    t.mem = t.prog.sizes.memory()
    t.collector.kernel_memory = dict(t.mem)
    iface = t.iface
    try:
        t.link = libbpf.xdp_link(t.prog.prog_fd, t.ifindex, mode)
    except OSError as e:
        t.prog.close()
        t.prog = None
        if e.errno == 16:  # EBUSY: attached between our check and now
            raise SensorError(f"another XDP program is already attached to {iface}") from None
        if e.errno == 95 and mode == "native":  # EOPNOTSUPP
            raise SensorError(f"{iface} does not support native XDP; use --mode generic or auto") from None
        raise SensorError(f"cannot attach XDP to {iface} ({mode} mode): {e.strerror}") from None
    t.mode = libbpf.xdp_attach_mode(t.ifindex) if mode == "auto" else mode  # what the kernel chose
    t.ready_s = time.monotonic() - began
    if t.api is not None:
        t.api.queries.info["kernel_memory"] = dict(t.mem)
        t.api.queries.info["xdp_mode"] = t.mode


def _detach_all(taps: list) -> None:
    for t in taps:
        if t.link is not None:
            os.close(t.link)
            t.link = None
        if t.prog is not None:
            t.prog.close()
            t.prog = None
        t.state.unlink(missing_ok=True)


def _attach(taps, cfg, lay, ncpus, mode, epoch_s, as_json, api, out, err) -> None:
    from .agent import Agent, run_all
    from .fleet.config import servers_text
    from .sinks import Fanout, Queued
    from .snapshot import Origin, boot_id, layout_fingerprint
    from .view import human_bytes

    names = [t.iface for t in taps]
    try:
        for t in taps:
            _load_program(t, cfg, lay, ncpus, mode, epoch_s, err)
    except KeyboardInterrupt:  # between compilations, or while attaching
        _detach_all(taps)
        raise Interrupted("interrupted while attaching; nothing attached") from None
    except BaseException:
        _detach_all(taps)
        raise
    malloc.trim()  # what compiling took (LLVM), about 40 MiB
    if api is not None and len(taps) > 1:  # the merged answers: every interface's
        mem = {k: sum(t.mem.get(k, 0) for t in taps) for k in taps[0].mem}
        api.queries.info.update(kernel_memory=mem, xdp_mode=",".join(sorted({t.mode for t in taps})))
    started = time.time()
    for t in taps:
        t.state.parent.mkdir(parents=True, exist_ok=True)
        t.info = {
            "pid": os.getpid(),
            "iface": t.iface,
            "ifindex": t.ifindex,
            "interfaces": names,  # every interface of this process: detaching one stops them all
            "mode": t.mode,
            "epoch_s": epoch_s,
            "started": started,
            "kernel_memory": t.mem,
            "tasks": [x.name for x in cfg.tasks],
            "config": cfg.source,
            "api": cfg.api.address,
        }
        t.state.write_text(json.dumps(t.info))
        mem = t.mem
        print(
            f"netspectra: attached to {t.iface} (ifindex {t.ifindex}, {t.mode} mode, bpf_link) in {t.ready_s:.1f} s, "
            f"kernel memory {human_bytes(sum(mem.values()))} "
            f"({', '.join(f'{k} {human_bytes(v)}' for k, v in mem.items())})",
            file=err,
            flush=True,
        )
    print(
        f"netspectra: {', '.join(names)}: epoch {epoch_s:g}s, "
        f"metrics {f'http://{cfg.sensor.metrics_address}/metrics' if cfg.sensor.metrics_address else 'off'}, "
        f"query API {api_text(cfg) if api is not None else 'off'}, "
        f"history {taps[0].history.url or 'off'}, "
        f"fleet {servers_text(cfg.fleet) if cfg.fleet.enabled else 'off'}; "
        "Ctrl-C to stop",
        file=err,
        flush=True,
    )

    stop = threading.Event()
    why: list = []  # what stopped the loop when it was not SIGINT/SIGTERM: (exit status, one line)

    def on_signal(signum, _frame) -> None:
        if signum == signal.SIGHUP:  # no reload: exit non-zero so that Restart=on-failure starts it anew
            why.append((128 + signum, "SIGHUP: stopping (no config reload; restart the sensor to reload)"))
        stop.set()

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    fp = layout_fingerprint(lay)
    boot = boot_id()
    shared = []  # sinks of every interface's epochs: the fleet publisher, the merged API epochs
    fanouts = []
    try:
        for t in taps:
            t.agent = Agent(t.prog, lay, origin=Origin(cfg.sensor.sensor_id, boot, t.iface, fp))
            engine, dispatcher = start_alerts(t.iface, cfg, t.collector, err)
            sinks, t.alerts = live_sinks(t.collector, engine, dispatcher, t.api)
            store = t.history.start()
            if store is not None:
                sinks.append(store)
            t.fanout = Fanout(sinks, log=err)
            fanouts.append(t.fanout)
            t.collector.watching_sinks(t.fanout.queued())
        view = Queued(ViewSink(taps, cfg, as_json, stop, out), "view", max_epochs=64, log=err)
        rounds = [view]  # sinks of each round: every interface's epoch of one epoch time
        if api is not None and len(taps) > 1:
            rounds.append(Queued(MergeSink(taps, api, Origin(cfg.sensor.sensor_id, boot, api.queries.info["interface"], fp)), "api-all", max_epochs=8, log=err))  # fmt: skip
        publisher = start_fleet(cfg, taps[0].collector, err)
        if publisher is not None:
            shared.append(Queued(publisher, "fleet", max_epochs=64 * len(taps), log=err))
        taps[0].collector.watching_sinks(taps[0].fanout.queued(), shared=[*rounds, *shared])
        each = Fanout(shared, log=err)
        per_round = Fanout(rounds, log=err)

        def on_epochs(snaps) -> None:
            for t, snap in zip(taps, snaps):
                t.fanout.on_epoch(snap)
                each.on_epoch(snap)
            per_round.on_epoch(snaps)
            gone = [t.iface for t in taps if not link_exists(t.ifindex)]
            if gone and not stop.is_set():  # its XDP link went with it: every later epoch would be empty
                why.append((1, f"{', '.join(gone)}: the interface is gone (deleted); detached"))
                stop.set()

        run_all([t.agent for t in taps], epoch_s, on_epochs, stop)
    finally:
        for f in fanouts:
            f.close()
        if "per_round" in locals():
            per_round.close()
            each.close()
        _detach_all(taps)
        for s, h in handlers.items():
            signal.signal(s, h)
    n = taps[0].agent.seq if taps[0].agent is not None else 0
    if why:
        raise Stopped(why[0][0], f"{why[0][1]} after {n} epochs")
    print(f"netspectra: detached from {', '.join(names)} after {n} epochs", file=err, flush=True)


def link_exists(ifindex: int) -> bool:
    """Whether the interface is still there (by index: a rename leaves the XDP link in place)."""
    try:
        socket.if_indextoname(ifindex)
    except OSError:
        return False
    return True


class MergeSink:
    """The epochs of every interface of one epoch time, merged (snapshot.merge:
    flows summed, Count-Min added, registers maxed) into the epoch of all of
    them, for the query API's answers over every interface, with the alerts
    of every interface.  Behind its own queue: merging costs what deriving
    an epoch costs, never in the epoch loop."""

    name = "api-all"

    def __init__(self, taps, api, origin):
        self.taps, self.api, self.origin = taps, api, origin

    def on_epoch(self, snaps) -> None:
        from .snapshot import merge

        merged = merge(list(snaps), origin=self.origin)
        merged.table_fill = max(s.table_fill for s in snaps)
        merged.processing_s = sum(s.processing_s for s in snaps)
        events, active = [], []
        for t, snap in zip(self.taps, snaps):
            ev, ac = t.alerts.of(snap)
            events += ev
            active += ac
        self.api.publish(merged, events, active)

    def close(self) -> None:
        pass


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
    """The terminal view (or --json lines: one per interface and epoch) and
    the state files that `status` reads, for the epochs of one round (one per
    interface).  Behind its own queue: a stalled terminal or pipe reader
    cannot hold the epoch loop.  A reader that goes away stops the sensor
    quietly."""

    name = "view"

    STALL_AT_EXIT_S = 1.0  # how long a reader that takes nothing may hold the exit

    def __init__(self, taps, cfg, as_json, stop, out):
        self.taps, self.cfg, self.as_json, self.stop, self.out = taps, cfg, as_json, stop, out
        self.tty = out.isatty()
        try:
            self.fd = out.fileno()
        except (AttributeError, OSError, ValueError):  # io.StringIO and the like: plain writes
            self.fd = None
        self.stalled = False

    def _write(self, text: str) -> None:
        """text to out, a page at a time when the output is a file descriptor:
        a page fits once select() says writable, so this thread never sits in
        a write() it cannot leave.  While the sensor runs, a reader that takes
        nothing only fills this sink's queue (the epochs that do not fit are
        dropped and counted); once it stops, such a reader gets
        STALL_AT_EXIT_S, then the rest is given up."""
        if self.fd is None:
            self.out.write(text)
            self.out.flush()
            return
        self.out.flush()
        data = memoryview(text.encode())
        stalled_since = None
        while data:
            if self.stalled and self.stop.is_set():
                raise SinkRefused("output stalled: the reader takes nothing")
            if not select.select([], [self.fd], [], 0.2)[1]:
                if self.stop.is_set():
                    stalled_since = stalled_since or time.monotonic()
                    self.stalled = time.monotonic() - stalled_since >= self.STALL_AT_EXIT_S
                continue
            data = data[os.write(self.fd, data[: select.PIPE_BUF]) :]

    def on_epoch(self, snaps) -> None:
        from .alerts.engine import render_active
        from .view import render

        try:
            if self.as_json:
                for t, snap in zip(self.taps, snaps):
                    _, active = t.alerts.of(snap)
                    rec = {"interface": t.iface} | snap.to_json() | {"alerts": [ev.to_json() for ev in active]}
                    self._write(json.dumps(rec, separators=(",", ":")) + "\n")
            else:
                top = self.cfg.sensor.top
                parts = []
                for t, snap in zip(self.taps, snaps):
                    _, active = t.alerts.of(snap)
                    parts.append(render(snap, t.iface, t.mem, top) + "\n" + render_active(active, top))
                self._write(("\x1b[H\x1b[2J" if self.tty else "\n") + "\n".join(parts) + "\n")
        except BrokenPipeError:  # the reader of --json went away: detach quietly
            self.stop.set()
            raise SinkRefused("output closed") from None
        for t, snap in zip(self.taps, snaps):
            t.info.update(last_epoch=snap.seq, last_epoch_end=snap.end, last_packets=snap.counter("all")[0])
            tmp = t.state.with_suffix(".tmp")
            tmp.write_text(json.dumps(t.info))
            tmp.replace(t.state)

    def close(self) -> None:
        pass


def live_sinks(collector, engine, dispatcher, api) -> tuple[list, AlertSink]:
    """The sinks a sensor (each of its interfaces) and a collector share, in
    this order: the metrics and the alert rules (in the epoch loop: both cheap
    folds), then the query API (which queues for itself) with each epoch's
    alerts."""
    from .sinks import FuncSink

    alerts = AlertSink(engine, dispatcher, collector)
    sinks = [FuncSink("metrics", collector.observe), alerts]
    if api is not None:
        sinks.append(FuncSink("api", lambda snap: api.publish(snap, *alerts.of(snap))))
    return sinks, alerts


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
        every = ", ".join(st.get("interfaces") or [iface])  # one process: its interfaces stop together
        if pid_alive(st["pid"]):
            raise SensorError(f"sensor pid {st['pid']} on {every} did not stop within {timeout:g}s")
        return f"stopped sensor pid {st['pid']} on {every}; XDP detached"
    if st:
        path.unlink(missing_ok=True)
    prog_id = libbpf.xdp_query_id(ifindex)
    if prog_id:
        raise SensorError(f"XDP program id {prog_id} on {iface} was not attached by netspectra; not touching it")
    raise SensorError(f"no netspectra sensor is attached to {iface}")


def status(damaged: list | None = None) -> list[dict]:
    """State of every sensor recorded in the run directory; stale entries
    (process gone) are reported once and removed.  Damaged files are left
    alone (whose they are cannot be told) and their DamagedState lines added
    to `damaged`."""
    out = []
    d = run_dir()
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            st = load_state(path)
        except DamagedState as e:
            if damaged is not None:
                damaged.append(str(e))
            continue
        if not st:
            continue
        st["alive"] = pid_alive(st["pid"])
        st["here"] = path.name.startswith(f"{netns_id()}.")
        if not st["alive"]:
            path.unlink(missing_ok=True)
        out.append(st)
    return out
