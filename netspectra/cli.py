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
