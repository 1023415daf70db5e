"""Command-line entry points (thin: parse, call, print one-line errors)."""

from __future__ import annotations

import datetime
import json

import click

from .config import Config, ConfigError, defaults_yaml, load_config, parse_epoch


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
def sensor():
    """netspectra live sensor: XDP exact flows, sketches, heavy hitters, spreaders."""


@sensor.command()
@click.argument("iface")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default=None, help="XDP mode [config; auto].")
@click.option("--epoch", type=Epoch(), default=None, help="Epoch length, e.g. 5s or 100ms [config; 5s].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per epoch on stdout (docs/json.md).")
def attach(iface, config_path, mode, epoch, as_json):
    """Attach to IFACE and report every epoch until Ctrl-C or SIGTERM."""
    from .sensor import SensorError
    from .sensor import attach as do_attach

    cfg = _load(config_path)
    try:
        do_attach(iface, cfg, mode or cfg.sensor.mode, epoch or cfg.sensor.epoch_s, as_json)
    except SensorError as e:
        _fail(str(e))


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

    rows = do_status()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no netspectra sensor is running")
        return
    for r in rows:
        since = datetime.datetime.fromtimestamp(r["started"]).isoformat(timespec="seconds")
        state = "running" if r["alive"] else "stale (process gone; XDP detached with it)"
        where = "" if r["here"] else " (other netns)"
        epochs = f", {r['last_epoch'] + 1} epochs, {r['last_packets']} packets last epoch" if "last_epoch" in r else ""
        click.echo(f"{r['iface']}{where}: {state}, pid {r['pid']}, {r['mode']} mode, since {since}{epochs}")


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
def analyze(files, epoch, as_json, top, config_path, save_sketch):
    """Analyse pcap/pcapng FILES as one stream: the live sensor's report, no root needed.

    Exit status: 0 ok, 1 a file was damaged (the report covers the records
    before the damage), 2 a file could not be read at all."""
    import sys

    from .offline import OfflineError
    from .offline import analyze as do_analyze
    from .view import render

    cfg = _load(config_path)
    rows = top or cfg.sensor.top
    title = _files_title(files)
    epochs_json = []

    def on_epoch(snap):
        if as_json:
            epochs_json.append(snap.to_json() if top is None else _top_json(snap, rows))
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
    if as_json:
        doc = rep.to_json(top)
        doc["epochs"] = epochs_json
        click.echo(json.dumps(doc))
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


def _top_json(snap, rows):
    from .offline import _snapshot_json

    return _snapshot_json(snap, rows)


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
