"""Write a man page per command (netspectra-sensor.1, netspectra.1) from the
click definitions, so the pages never drift from --help.  Run by the build
(`make man`), never committed.

    python scripts/gen_man.py OUTDIR
"""

from __future__ import annotations

import datetime
import os
import sys
from importlib.metadata import version
from pathlib import Path

import click

from netspectra import cli

PAGES = {"netspectra-sensor": cli.sensor, "netspectra": cli.main}


def esc(text: str) -> str:
    """Roff-safe text: backslashes, and a leading dot or quote would be a request."""
    lines = text.replace("\\", "\\e").replace("-", "\\-").splitlines()
    return "\n".join(("\\&" + ln if ln[:1] in (".", "'") else ln) for ln in lines)


def options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for p in cmd.get_params(ctx):
        rec = p.get_help_record(ctx) if isinstance(p, click.Option) else None  # arguments are in the usage line
        if rec:
            out += [".TP", f"\\fB{esc(rec[0])}\\fR", esc(rec[1] or "")]
    return out


def section(cmd: click.Command, path: list[str], parent: click.Context | None) -> list[str]:
    ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    out = [f'.SS "{esc(" ".join(path))}"' if parent else ".SH DESCRIPTION"]
    out += [".nf", f"\\fB{esc(' '.join(path))}\\fR {esc(usage)}", ".fi", ".PP", esc(cmd.help or ""), *options(cmd, ctx)]
    if isinstance(cmd, click.Group):
        if not parent:
            out.append(".SH COMMANDS")
        for name in cmd.list_commands(ctx):
            out += section(cmd.get_command(ctx, name), [*path, name], ctx)
    return out


def page(name: str, group: click.Group) -> str:
    # SOURCE_DATE_EPOCH: reproducible pages (the date of the last commit in packages)
    stamp = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(stamp) if stamp else datetime.datetime.now().timestamp(), datetime.UTC)
    summary = (group.help or "").splitlines()[0]
    lines = [
        f'.TH {name.upper()} 1 "{when:%Y-%m-%d}" "netspectra {version("netspectra")}" "netspectra"',
        ".SH NAME",
        f"{esc(name)} \\- {esc(summary)}",
        *section(group, [name], None),
        ".SH SEE ALSO",
        ", ".join(f"\\fB{esc(n)}\\fR(1)" for n in PAGES if n != name) + ", /usr/share/doc/netspectra",
    ]
    return "\n".join(lines) + "\n"


def main(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, group in PAGES.items():
        (out / f"{name}.1").write_text(page(name, group))


if __name__ == "__main__":
    main(sys.argv[1])
