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
    collector, server = start_metrics(iface, cfg, lay)
    api = None
    try:
        api = start_api(cfg, lay, {"interface": iface, "ifindex": ifindex, "epoch_s": epoch_s}, err)
        if api is not None:
            collector.serving_api(api.stats, api.history.open_streams)
        _attach(iface, ifindex, cfg, lay, ncpus, mode, epoch_s, as_json, collector, api, out, err)
    finally:
        if api is not None:
            api.stop()
        if server is not None:
            server.shutdown()
            server.server_close()


def start_metrics(iface: str, cfg: Config, lay):
    """The sensor's metrics collector and, unless sensor.metrics_address is
    "", the HTTP server exposing it (a registry of its own, not the global one)."""
    from .metrics import SensorCollector, registry_for, serve

    collector = SensorCollector(iface, lay, cfg.sensor.top, cfg.sensor.flow_capacity)
    address = cfg.sensor.metrics_address
    if not address:
        return collector, None
    try:
        server, _ = serve(address, registry_for(collector))
    except OSError as e:
        raise SensorError(f"cannot serve metrics on {address} (sensor.metrics_address): {e.strerror or e}") from None
    return collector, server


def start_api(cfg: Config, lay, info: dict, err=sys.stderr):
    """The query API (docs/api.md) over the epochs the sensor keeps, or None
    when both api.address and api.http_address are ""."""
    if not cfg.api.enabled:
        return None
    from .api.history import History
    from .api.queries import Queries
    from .api.server import ApiServer, ApiServerError

    history = History(cfg.api.keep_epochs, lay, cfg.api.max_streams)
    info = {"pid": os.getpid(), "started": time.time(), "config": cfg, **info}
    try:
        api = ApiServer(cfg.api, Queries(history, info), history, log=err).start()
    except ApiServerError as e:
        raise SensorError(str(e)) from None
    from .api.settings import host_port

    for addr in (cfg.api.address, cfg.api.http_address):
        if addr and host_port(addr)[0] not in ("127.0.0.1", "::1", "localhost") and not (cfg.api.token or cfg.api.tls):
            print(f"netspectra: warning: the query API on {addr} has neither a token nor TLS", file=err, flush=True)
    return api


def start_alerts(iface: str, cfg: Config, collector, err=sys.stderr):
    """The alert engine of cfg.alerts and its notification dispatcher (started)."""
    from .alerts.engine import Engine
    from .alerts.notify import Dispatcher, make_notifier

    al = cfg.alerts
    engine = Engine(al, interface=iface, sensor=cfg.sensor.sensor_id, flow_capacity=cfg.sensor.flow_capacity)
    notifiers = [make_notifier(spec, al.repeat_interval) for spec in al.notifiers]
    collector.alerting([(r.name, r.severity) for r in al.rules], [n.name for n in notifiers])
    dispatcher = Dispatcher(notifiers, on_failure=collector.notification_failed, log=err)
    return engine, dispatcher.start()


def _attach(iface, ifindex, cfg, lay, ncpus, mode, epoch_s, as_json, collector, api, out, err) -> None:
    from .agent import Agent
    from .alerts.engine import render_active
    from .kernel import libbpf
    from .kernel.program import KernelError, Program
    from .snapshot import Origin, boot_id, layout_fingerprint
    from .view import human_bytes, render

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
        f"query API {api_text(cfg) if api is not None else 'off'}; "
        "Ctrl-C to stop",
        file=err,
        flush=True,
    )

    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    origin = Origin(cfg.sensor.sensor_id, boot_id(), iface, layout_fingerprint(lay))
    agent = Agent(prog, lay, origin=origin)
    tty = out.isatty()
    engine, dispatcher = start_alerts(iface, cfg, collector, err)

    def show(snap) -> None:
        collector.observe(snap)
        events = engine.evaluate(snap, time.time())
        dispatcher.submit(events)
        active = engine.active()
        collector.observe_alerts(events, active)
        if api is not None:
            api.publish(snap, events, active)
        if as_json:
            rec = snap.to_json() | {"alerts": [ev.to_json() for ev in active]}
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        else:
            text = render(snap, iface, mem, cfg.sensor.top) + "\n" + render_active(active, cfg.sensor.top)
            out.write(("\x1b[H\x1b[2J" if tty else "\n") + text + "\n")
        out.flush()
        info.update(last_epoch=snap.seq, last_epoch_end=snap.end, last_packets=snap.counter("all")[0])
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(state)

    try:
        agent.run(epoch_s, show, stop)
    except BrokenPipeError:
        pass  # reader of --json went away: detach quietly
    finally:
        dispatcher.close()
        os.close(link)
        prog.close()
        state.unlink(missing_ok=True)
        for s, h in handlers.items():
            signal.signal(s, h)
    print(f"netspectra: detached from {iface} after {agent.seq} epochs", file=err, flush=True)


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
