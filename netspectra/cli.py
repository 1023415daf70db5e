"""Command-line entry points (thin: parse, call, print one-line errors)."""

from __future__ import annotations

import json
import os
import sys

# gRPC's C core logs to stderr on its own (bind failures, TLS handshakes); every
# failure here is reported once, as one line, by the code that sees it.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import click

from .config import Config, ConfigError, check_interfaces, defaults_yaml, load_config, parse_epoch
from .configkit import fmt_time


def _fail(msg: str) -> None:
    raise click.ClickException(msg)


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        _fail(str(e))


class Epoch(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        try:
            return parse_epoch(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netspectra", prog_name="netspectra-sensor", message="%(prog)s %(version)s")
def sensor():
    """netspectra live sensor: XDP exact flows, sketches, heavy hitters, spreaders."""


@sensor.command()
@click.argument("ifaces", metavar="[IFACE]...", nargs=-1)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default=None, help="XDP mode [config; auto].")
@click.option("--epoch", type=Epoch(), default=None, help="Epoch length, e.g. 5s or 100ms [config; 5s].")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per epoch and interface on stdout (docs/json.md)."
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help='Serve Prometheus metrics here ("" for none) [config sensor.metrics_address; 127.0.0.1:9781].',
)
@click.option("--api-address", metavar="HOST:PORT",
              help='Serve the gRPC query API here ("" for none) [config api.address; 127.0.0.1:9782].')  # fmt: skip
def attach(ifaces, config_path, mode, epoch, as_json, metrics_address, api_address):
    """Attach to each IFACE (default: the config's sensor.interfaces) and report
    every epoch until Ctrl-C or SIGTERM: one XDP program per interface, one
    metrics endpoint and one query API for them all."""
    from .sensor import Interrupted, SensorError, Stopped
    from .sensor import attach as do_attach

    cfg = _load(config_path)
    try:
        names = check_interfaces(ifaces) if ifaces else cfg.sensor.interfaces
    except ValueError as e:
        _fail(f"IFACE: {e}")
    if not names:
        _fail("no interface to attach to: name one (netspectra-sensor attach eth0) or list them in sensor.interfaces")
    cfg = _override_addresses(cfg, metrics_address, api_address)
    try:
        do_attach(list(names), cfg, mode or cfg.sensor.mode, epoch or cfg.sensor.epoch_s, as_json)
    except SensorError as e:
        _fail(str(e))
    except Stopped as e:
        click.echo(f"netspectra: {e}", err=True)
        sys.exit(e.status)
    except Interrupted as e:
        click.echo(f"netspectra: {e}", err=True)
        if e.compiling:  # LLVM still runs in a worker thread: an interpreter exit could crash under it
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.status)
        sys.exit(e.status)
    except KeyboardInterrupt:  # before the programs load (after, SIGINT stops the sensor's loop)
        click.echo("netspectra: interrupted; nothing attached", err=True)
        sys.exit(130)


def _override_addresses(cfg: Config, metrics: str | None, api: str | None) -> Config:
    """cfg with --metrics-address / --api-address in place of the config's ("" turns one off)."""
    import dataclasses

    from .configkit import parse_address

    for opt, value in (("--metrics-address", metrics), ("--api-address", api)):
        if value:
            try:
                parse_address(value)
            except ValueError as e:
                _fail(f"{opt}: {e}")
    if metrics is not None:
        cfg = dataclasses.replace(cfg, sensor=dataclasses.replace(cfg.sensor, metrics_address=metrics.strip()))
    if api is not None:
        cfg = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, address=api.strip()))
    return cfg


@sensor.command()
@click.argument("iface")
def detach(iface):
    """Stop the sensor attached to IFACE (its XDP program goes with it)."""
    from .sensor import SensorError
    from .sensor import detach as do_detach

    try:
        click.echo(do_detach(iface))
    except SensorError as e:
        _fail(str(e))


@sensor.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json):
    """List running sensors."""
    from .sensor import status as do_status

    damaged: list[str] = []
    rows = do_status(damaged)
    for line in damaged:
        click.echo(f"netspectra: warning: {line}, skipped", err=True)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no netspectra sensor is running")
        return
    for r in rows:
        since = fmt_time(r["started"], local=True)
        state = "running" if r["alive"] else "stale (process gone; XDP detached with it)"
        where = "" if r["here"] else " (other netns)"
        epochs = f", {r['last_epoch'] + 1} epochs, {r['last_packets']} packets last epoch" if "last_epoch" in r else ""
        api = f", query API {r['api']}" if r.get("api") else ""
        click.echo(f"{r['iface']}{where}: {state}, pid {r['pid']}, {r['mode']} mode, since {since}{epochs}{api}")


@sensor.command()
@click.option("--print-defaults", is_flag=True, help="Print the default configuration as YAML.")
@click.option("--check", "check_path", type=click.Path(dir_okay=False), help="Validate a config file.")
def config(print_defaults, check_path):
    """Show the default configuration or validate a file."""
    if print_defaults:
        click.echo(defaults_yaml(), nl=False)
    elif check_path:
        cfg = _load(check_path)
        click.echo(f"{check_path}: ok ({len(cfg.tasks)} tasks, epoch {cfg.sensor.epoch_s:g}s)")
    else:
        _fail("give --print-defaults or --check FILE")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netspectra", prog_name="netspectra", message="%(prog)s %(version)s")
def main():
    """netspectra tools (the live sensor is `netspectra-sensor`)."""


@main.command()
def version():
    """Print the version."""
    from importlib.metadata import version as v

    click.echo(f"netspectra {v('netspectra')}")


def _files_title(files) -> str:
    import os

    first = os.path.basename(files[0])
    return first if len(files) == 1 else f"{first} +{len(files) - 1} more"


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--epoch", type=Epoch(), default=None, help="Also report per epoch of capture time, e.g. 5s.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout (docs/offline.md).")
@click.option("--top", type=click.IntRange(1, 10000), default=None, help="Rows per table [config; 10].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (sketch tasks).")
@click.option("--save-sketch", type=click.Path(dir_okay=False), help="Write the overall sketches to this .npz.")
@click.option("--store", "store_url", metavar="URL",
              help="Also load the epochs into this history store (a SQLite path, sqlite://, clickhouse://, chdb://); "
                   "query them with `netspectra query --store URL`.")  # fmt: skip
def analyze(files, epoch, as_json, top, config_path, save_sketch, store_url):
    """Analyse pcap/pcapng FILES as one stream: the live sensor's report, no root needed.

    Exit status: 0 ok, 1 a file was damaged (the report covers the records
    before the damage), 2 a file could not be read at all."""

    from .offline import JsonReport, OfflineError
    from .offline import analyze as do_analyze
    from .view import render

    cfg = _load(config_path)
    rows = top or cfg.sensor.top
    title = _files_title(files)
    out = JsonReport(sys.stdout, top) if as_json else None  # streamed: memory does not grow with the flows
    loader = None
    epoch_view = epoch is not None  # --epoch: report each epoch (with --store, only then)
    if store_url:
        epoch = epoch or cfg.sensor.epoch_s  # a store holds epochs: cut the capture like a sensor would
        loader = _StoreLoader(store_url, cfg, title)

    def on_epoch(snap):
        if loader is not None:
            loader.write(snap)
        if not epoch_view:
            return
        if out is not None:
            try:
                out.epoch(snap)
            except OSError as e:
                _fail(f"cannot spool the per-epoch JSON to a temporary file ($TMPDIR): {e.strerror or e}")
        else:
            click.echo(render(snap, f"{title} (capture time)", top=rows) + "\n")

    try:
        rep = do_analyze(
            list(files),
            cfg,
            epoch_s=epoch,
            progress=sys.stderr.isatty(),
            on_epoch=on_epoch if epoch else None,
            keep_epochs=False,
        )
    except OfflineError as e:
        click.echo(f"netspectra: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("netspectra: interrupted", err=True)
        sys.exit(130)
    finally:
        if loader is not None:
            loader.close()
    if out is not None:
        out.finish(rep)
    else:
        click.echo(render(rep.overall, f"{title} (all)", top=rows).replace("  epoch 0  ", "  overall  ", 1))
        if rep.skipped:
            parts = [f"linktype {lt} ({pk} packets, {by} bytes)" for lt, (pk, by) in sorted(rep.skipped.items())]
            click.echo("skipped (unsupported link type): " + ", ".join(parts))
    if save_sketch:
        try:
            rep.overall.sketch.save(save_sketch)
        except OSError as e:
            click.echo(f"netspectra: {save_sketch}: cannot write: {e.strerror or e}", err=True)
            sys.exit(2)
    for line in rep.errors:
        click.echo(f"netspectra: {line}", err=True)
    if rep.errors:
        sys.exit(1)


class _StoreLoader:
    """analyze --store: each epoch of the capture into a history store, as
    the series (sensor.id, capture file name).  Idempotent: loading a capture
    again adds nothing.  The store's clock is the capture's, so retention
    keeps what was captured long ago (until a sensor prunes the same store)."""

    def __init__(self, url: str, cfg, title: str):
        from .store import StoreError, describe, open_store

        self.url, self.title, self.sensor = describe(url), title, cfg.sensor.sensor_id
        self.now = 0.0
        self.counts = {"written": 0, "duplicate": 0, "expired": 0}
        self.first = self.last = None
        try:
            self.store = open_store(url, dict(cfg.store.retention), clock=lambda: self.now)
        except StoreError as e:
            _fail(str(e))

    def write(self, snap) -> None:
        from .snapshot import Origin
        from .store import StoreError

        snap.origin = Origin(self.sensor, "", self.title, snap.origin.layout)
        self.now = max(self.now, snap.end)
        try:
            self.counts[self.store.write(snap)] += 1
        except StoreError as e:
            _fail(f"{e} (epochs before {fmt_time(snap.start)} are stored)")
        self.first = snap.start if self.first is None else min(self.first, snap.start)
        self.last = snap.end if self.last is None else max(self.last, snap.end)

    def close(self) -> None:
        self.store.close()
        c = self.counts
        if self.first is None:
            click.echo(f"netspectra: no epoch to store in {self.url}", err=True)
            return
        again = f", {c['duplicate']} already there" if c["duplicate"] else ""
        old = f", {c['expired']} older than the raw retention (not stored)" if c["expired"] else ""
        click.echo(
            f"netspectra: stored {c['written']} epoch{'s' * (c['written'] != 1)} of {self.title} in {self.url}"
            f"{again}{old}; ask with "
            f"`netspectra query --store {self.url} --interface {self.title} top --since {fmt_time(self.first)} "
            f"--until {fmt_time(self.last)}`",
            err=True,
        )


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (its fleet: section).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per merged window on stdout (docs/json.md).")
def collector(config_path, as_json):
    """Merge the epochs the sensors publish to NATS JetStream, network-wide,
    until Ctrl-C or SIGTERM: the same metrics, alerts, query API and history
    as a sensor, over every sensor's traffic (docs/fleet.md)."""
    from .fleet.collector import CollectorError, run_collector

    cfg = _load(config_path)
    try:
        run_collector(cfg, as_json)
    except CollectorError as e:
        _fail(str(e))


@main.command("merge-sketch")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Merged .npz to write.")
def merge_sketch(inputs, output):
    """Merge saved sketch files (analyze --save-sketch, or a live sensor's) into one.

    Count-Min counters add, SuperSpread registers take the maximum; every
    input must have the same task layout."""
    from .sketch import SketchSet

    merged = None
    for path in inputs:
        try:
            sk = SketchSet.load(path)
        except FileNotFoundError:
            _fail(f"{path}: no such file")
        except ValueError as e:
            msg = str(e)
            _fail(msg if msg.startswith(str(path)) else f"{path}: not a netspectra sketch file ({msg})")
        except Exception as e:  # zip/npz damage of any kind: one line, no traceback
            _fail(f"{path}: not a netspectra sketch file ({type(e).__name__}: {e})")
        if merged is None:
            merged = sk
        elif sk.layout != merged.layout:
            _fail(f"{path}: sketch layout differs from {inputs[0]} (tasks: {_task_names(sk)} vs {_task_names(merged)})")
        else:
            merged.merge(sk)
    try:
        merged.save(output)
    except OSError as e:
        _fail(f"{output}: cannot write: {e.strerror or e}")
    click.echo(f"{output}: merged {len(inputs)} sketch files")


def _task_names(sk) -> str:
    return ", ".join(f"{t.spec.name}:{t.spec.kind}:{t.spec.width}x{t.spec.depth}" for t in sk.layout.tasks) or "none"


# --- netspectra query ------------------------------------------------------------


@main.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server", envvar="NETSPECTRA_SERVER", default="127.0.0.1:9782", show_default=True,
    help="Sensor (or collector) gRPC address host:port [env NETSPECTRA_SERVER].",
)  # fmt: skip
@click.option(
    "--iface", help="Ask the sensor attached to this interface (its address from `netspectra-sensor status`)."
)
@click.option("--tls", is_flag=True, help="Use TLS (implied by --ca, --cert).")
@click.option("--ca", type=click.Path(dir_okay=False), help="CA certificate(s) to verify the sensor (PEM).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Client certificate for mutual TLS (PEM).")
@click.option("--key", type=click.Path(dir_okay=False), help="Private key of --cert (PEM).")
@click.option("--server-name", default="", help="Expected name in the sensor's certificate (default: from --server).")
@click.option("--token", envvar="NETSPECTRA_TOKEN", default="", help="Bearer token [env NETSPECTRA_TOKEN].")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=5.0, show_default=True, help="Seconds per request.")
@click.option("--json", "as_json", is_flag=True, help="JSON (protobuf JSON mapping) instead of tables.")
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Ask a history store instead of a sensor (a SQLite path, sqlite://, clickhouse://, chdb://).",
)
@click.option("--sensor", "sensor_id", metavar="ID",
              help="Asking a collector: over this sensor's own epochs in the collector's store instead of the "
                   "network-wide windows (with --since). With --store: the series of this sensor id.")  # fmt: skip
@click.option("--interface", "store_iface", metavar="NAME",
              help="Asking a sensor on several interfaces: over this interface's epochs only (default: every "
                   "interface's, merged). With --sensor, asking a collector: that sensor's interface. "
                   "With --store: the series of this interface (or capture file).")  # fmt: skip
@click.pass_context
def query(ctx, server, iface, tls, ca, cert, key, server_name, token, timeout, as_json, store_url, sensor_id,
          store_iface):  # fmt: skip
    """Ask a running sensor or collector (gRPC, docs/api.md), or a history store (--store): top keys, estimates,
    flows, live epochs and alerts.

    \b
      netspectra query --server collector:9782 top src --since 1h                 # the whole network
      netspectra query --server collector:9782 --sensor edge-1 top src --since 1h # one sensor's own traffic"""
    from .api.client import Client, QueryError, StoreClient

    if iface:
        server = _server_of(iface, ctx.get_parameter_source("server"))

    try:
        if store_url:
            if iface or ctx.get_parameter_source("server") == click.core.ParameterSource.COMMANDLINE:
                _fail("give --store or a sensor (--server, --iface), not both")
            ctx.obj = StoreClient(store_url, sensor_id, store_iface)
        else:  # --interface alone: that interface of the sensor asked ("/eth0")
            ctx.obj = Client(
                server, token=token, tls=tls, ca=ca or "", cert=cert or "", key=key or "",
                server_name=server_name, timeout=timeout,
                sensor=f"{sensor_id or ''}/{store_iface}" if store_iface else sensor_id or "",
            )  # fmt: skip
    except QueryError as e:
        _fail(str(e))
    ctx.obj.as_json = as_json
    ctx.call_on_close(ctx.obj.close)


def _server_of(iface: str, source) -> str:
    """The query API address of the sensor attached to iface in this network namespace."""
    from .sensor import DamagedState, load_state, pid_alive, state_path

    if source == click.core.ParameterSource.COMMANDLINE:
        _fail("give --iface or --server, not both")
    try:
        st = load_state(state_path(iface))
    except DamagedState as e:
        _fail(f"{e}: cannot tell which sensor is attached to {iface}; give --server")
    if not st or not pid_alive(st.get("pid", -1)):
        _fail(f"no netspectra sensor is attached to {iface} in this network namespace (see netspectra-sensor status)")
    if not st.get("api"):
        _fail(f"the sensor on {iface} (pid {st['pid']}) serves no gRPC query API (api.address is off)")
    return st["api"]


def _ask(c, method: str, request):
    from .api.client import QueryError

    try:
        return c.call(method, request)
    except QueryError as e:
        _fail(str(e))


def _print(c, msg, text: str | None = None) -> None:
    if c.as_json:
        from .api.http import to_json

        click.echo(json.dumps(to_json(msg), indent=1))
    else:
        click.echo(text)


def _task_of(c, name: str | None, kind: str):
    """The task named, or the first of `kind` (checked by the sensor)."""
    from .api.v1 import sensor_pb2 as pb

    tasks = _ask(c, "ListTasks", pb.ListTasksRequest()).tasks
    if name is None:
        fit = [t for t in tasks if t.kind == kind]
        if not fit:
            _fail(f"the sensor has no {kind} task")
        return fit[0]
    for t in tasks:
        if t.name == name:
            return t
    _fail(f"task: no task named {name!r} (tasks: {', '.join(t.name for t in tasks)})")


def _key_args(args: tuple[str, ...], fields: list[str], what: str):
    """FIELD=VALUE arguments (or one bare VALUE for a one-field key) -> Key."""
    from .api.http import key_from_params
    from .api.queries import KEY_FIELDS, ApiError
    from .api.v1 import sensor_pb2 as pb

    if len(args) == 1 and "=" not in args[0] and len(fields) == 1:
        args = (f"{fields[0]}={args[0]}",)
    params = {}
    for a in args:
        name, sep, value = a.partition("=")
        if not sep:
            _fail(f"{a!r}: give keys as FIELD=VALUE ({what}: {', '.join(fields)})")
        if name not in KEY_FIELDS:
            _fail(f"{a!r}: unknown field {name!r} ({what}: {', '.join(fields)})")
        params[name] = value
    k = pb.Key()
    try:
        key_from_params(params, k)
    except ApiError as e:
        _fail(str(e))
    return k


@query.command("status")
@click.option("--since", metavar="TIME", help="Also the totals of the epochs since TIME (2h, 2026-12-01T10:00Z).")
@click.option("--until", metavar="TIME", help="End of that range (default: now).")
@click.pass_obj
def query_status(c, since, until):
    """What the sensor watches, its configuration, history and losses."""
    from .api.client import render_status
    from .api.v1 import sensor_pb2 as pb

    req = pb.GetStatusRequest()
    _set_window(req, None, since, until, has_epochs=False)
    r = _ask(c, "GetStatus", req)
    _print(c, r, None if c.as_json else render_status(r))


@query.command("tasks")
@click.pass_obj
def query_tasks(c):
    """The sketch tasks of the running configuration."""
    from .api.client import render_tasks
    from .api.v1 import sensor_pb2 as pb

    r = _ask(c, "ListTasks", pb.ListTasksRequest())
    _print(c, r, None if c.as_json else render_tasks(r))


def _window(f):
    """--epochs N, or a time range --since/--until (from history when the sensor no longer keeps it)."""
    f = click.option("--until", metavar="TIME", help="End of the range (default: now).")(f)
    f = click.option("--since", metavar="TIME",
                     help="Over the epochs since TIME: 2h (ago), 2026-12-01T10:00Z, 2026-12-01.")(f)  # fmt: skip
    return click.option("--epochs", type=click.IntRange(1, 1000), help="Over the last N kept epochs [default: 1].")(f)


def _set_window(req, epochs, since, until, has_epochs: bool = True) -> None:
    """Fill a request's epochs or range from the options (times from this host's clock)."""
    import time as _t

    from .configkit import parse_time

    if until is not None and since is None:
        _fail("--until needs --since")
    if since is None:
        if epochs and has_epochs:
            req.epochs = epochs
        return
    if epochs:
        _fail("give --epochs or --since, not both")
    now = _t.time()
    for opt, text, field in (("--since", since, "since"), ("--until", until, "until")):
        if text is not None:
            try:
                getattr(req.range, field).FromNanoseconds(int(parse_time(text, now) * 1e9))
            except ValueError as e:
                _fail(f"{opt}: {e}")


@query.command("top")
@click.argument("task", required=False)
@click.option("--by", type=click.Choice(["bytes", "packets"]), default="bytes", show_default=True)
@click.option("-n", "--limit", type=click.IntRange(1, 10000), default=10, show_default=True)
@_window
@click.pass_obj
def query_top(c, task, by, limit, epochs, since, until):
    """Top talkers: the largest keys of a Count-Min TASK (default: the first)."""
    from .api.client import render_top
    from .api.v1 import sensor_pb2 as pb

    t = _task_of(c, task, "countmin")
    metric = pb.METRIC_PACKETS if by == "packets" else pb.METRIC_BYTES
    req = pb.TopKeysRequest(task=t.name, metric=metric, limit=limit)
    _set_window(req, epochs, since, until)
    r = _ask(c, "TopKeys", req)
    _print(c, r, None if c.as_json else render_top(r, list(t.key)))


@query.command("estimate")
@click.argument("task")
@click.argument("key", nargs=-1, required=True)
@_window
@click.pass_obj
def query_estimate(c, task, key, epochs, since, until):
    """Any key's estimate in TASK: KEY is FIELD=VALUE ... (or just VALUE for a one-field key).

    \b
      netspectra query estimate src 10.0.0.1
      netspectra query estimate flow src_ip=10.0.0.1 dst_ip=10.0.0.2 src_port=1234 dst_port=80 proto=tcp"""
    from .api.client import render_estimate
    from .api.v1 import sensor_pb2 as pb

    t = _task_of(c, task, "")
    req = pb.EstimateKeyRequest(task=t.name, key=_key_args(key, list(t.key), f"task {t.name}"))
    _set_window(req, epochs, since, until)
    r = _ask(c, "EstimateKey", req)
    _print(c, r, None if c.as_json else render_estimate(r))


@query.command("spreaders")
@click.argument("task", required=False)
@click.option("-n", "--limit", type=click.IntRange(1, 10000), default=10, show_default=True)
@_window
@click.pass_obj
def query_spreaders(c, task, limit, epochs, since, until):
    """Keys of a SuperSpread TASK (default: the first) with the most distinct elements."""
    from .api.client import render_spreaders
    from .api.v1 import sensor_pb2 as pb

    t = _task_of(c, task, "superspread")
    req = pb.TopSpreadersRequest(task=t.name, limit=limit)
    _set_window(req, epochs, since, until)
    r = _ask(c, "TopSpreaders", req)
    _print(c, r, None if c.as_json else render_spreaders(r, list(t.key)))


_ORDERS = {"bytes": 1, "packets": 2, "first": 3, "last": 4}


@query.command("flows")
@click.option("--src", help="Source IP or CIDR.")
@click.option("--dst", help="Destination IP or CIDR.")
@click.option("--host", help="Source or destination IP or CIDR.")
@click.option("--sport", help="Source port or range (1024-65535).")
@click.option("--dport", help="Destination port or range.")
@click.option("--port", help="Source or destination port or range.")
@click.option("--proto", help="tcp, udp, icmp, icmpv6 or a number.")
@click.option("--sort", type=click.Choice(list(_ORDERS)), default="bytes", show_default=True)
@click.option("--asc", is_flag=True, help="Smallest / earliest first.")
@click.option("-n", "--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Flows per page.")
@click.option("--page-token", default="", help="Continue after a previous page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow every page.")
@_window
@click.pass_obj
def query_flows(c, src, dst, host, sport, dport, port, proto, sort, asc, limit, page_token, all_pages, epochs, since,
                until):  # fmt: skip
    """Exact flows, filtered and sorted (largest first)."""
    from .api.client import render_flows
    from .api.http import parse_ports, parse_proto, to_json
    from .api.queries import ApiError
    from .api.v1 import sensor_pb2 as pb

    req = pb.ListFlowsRequest(order_by=_ORDERS[sort], ascending=asc, page_size=limit, page_token=page_token)
    _set_window(req, epochs, since, until)
    try:
        for name, value in (("src", src), ("dst", dst), ("host", host)):
            if value:
                setattr(req.filter, name, value)
        for name, opt, value in (("src_port", "sport", sport), ("dst_port", "dport", dport), ("port", "port", port)):
            if value:
                getattr(req.filter, name).CopyFrom(parse_ports(opt, value))
        if proto:
            req.filter.proto = parse_proto("proto", proto)
    except ApiError as e:
        _fail(f"--{e}")
    flows = []
    while True:
        r = _ask(c, "ListFlows", req)
        flows.extend(r.flows)
        if not (all_pages and r.next_page_token):
            break
        req.page_token = r.next_page_token
    if c.as_json:
        d = to_json(r)
        d["flows"] = [to_json(f) for f in flows]
        click.echo(json.dumps(d, indent=1))
    else:
        click.echo(render_flows(r, len(flows), flows))


@query.command("trace")
@click.argument("key", nargs=-1, required=True)
@click.option("--since", metavar="TIME", help="Over the epochs since TIME (default: every kept epoch).")
@click.option("--until", metavar="TIME", help="End of the range (default: now).")
@click.pass_obj
def query_trace(c, key, since, until):
    """One exact flow in every kept epoch (or range): KEY is src_ip=.. dst_ip=.. proto=.. [src_port=.. dst_port=..]."""
    from .api.client import render_trace
    from .api.v1 import sensor_pb2 as pb

    fields = ["src_ip", "dst_ip", "src_port", "dst_port", "proto"]
    req = pb.TraceFlowRequest(key=_key_args(key, fields, "a flow"))
    _set_window(req, None, since, until, has_epochs=False)
    r = _ask(c, "TraceFlow", req)
    _print(c, r, None if c.as_json else render_trace(r))


def _watch(c, method: str, request, render, count: int) -> None:
    from .api.client import QueryError
    from .api.http import to_json

    n = 0
    try:
        for msg in c.stream(method, request):
            line = json.dumps(to_json(msg), separators=(",", ":")) if c.as_json else render(msg)
            click.echo(line)
            n += 1
            if count and n >= count:
                return
    except QueryError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        return
    _fail(f"the sensor at {c.server} closed the stream (stopped?)")


@query.command("watch-epochs")
@click.option("--replay", is_flag=True, help="First show the epochs the sensor keeps.")
@click.option("--max-keys", type=click.IntRange(1, 1000), default=5, show_default=True, help="Keys per task.")
@click.option("--count", type=click.IntRange(0), default=0, help="Stop after N epochs (0: until Ctrl-C).")
@click.pass_obj
def query_watch_epochs(c, replay, max_keys, count):
    """Each epoch as the sensor completes it."""
    from .api.client import render_epoch
    from .api.v1 import sensor_pb2 as pb

    _watch(c, "StreamEpochs", pb.StreamEpochsRequest(replay=replay, max_keys=max_keys), render_epoch, count)


@query.command("watch-alerts")
@click.option("--replay", is_flag=True, help="First show the alerts firing now.")
@click.option("--count", type=click.IntRange(0), default=0, help="Stop after N alerts (0: until Ctrl-C).")
@click.pass_obj
def query_watch_alerts(c, replay, count):
    """Alert notifications (firing, repeat, resolved) as the sensor raises them."""
    from .api.client import render_alert
    from .api.v1 import sensor_pb2 as pb

    _watch(c, "StreamAlerts", pb.StreamAlertsRequest(replay=replay), render_alert, count)
