"""The plain reference for `netspectra analyze --json`: the document as it was
made before it was streamed -- every epoch kept, the whole Report.to_json()
built in memory, one json.dumps -- and the CLI's streamed text to compare."""

from __future__ import annotations

import json

from click.testing import CliRunner

from netspectra.cli import main
from netspectra.config import load_config
from netspectra.offline import OfflineError, analyze


def reference(paths: list[str], epoch_s: float | None = None, top: int | None = None) -> str | None:
    """The whole-document text, or None if a file cannot be read at all."""
    try:
        rep = analyze(paths, load_config(None), epoch_s=epoch_s, keep_epochs=True)
    except OfflineError:
        return None
    return json.dumps(rep.to_json(top)) + "\n"


def streamed(paths: list[str], *options: str) -> tuple[int, str]:
    """(exit code, stdout) of `netspectra analyze --json OPTIONS PATHS`."""
    r = CliRunner().invoke(main, ["analyze", "--json", *options, *paths])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout
