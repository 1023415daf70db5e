"""Damaged state files in the run directory (NETSPECTRA_RUN_DIR): `status` and
`query --iface` say so in one line instead of a traceback."""

import json
import os

import pytest
from click.testing import CliRunner

from netspectra.cli import main, sensor
from netspectra.sensor import netns_id

GOOD = {"pid": os.getpid(), "iface": "eth9", "ifindex": 9, "mode": "native", "started": 1.7e9, "api": ""}
DAMAGED = {
    "not-json": b"{",
    "binary": b"\xff\xfe\x00garbage",
    "a-list": b"[1, 2]",
    "a-string": b'"pid"',
    "no-pid": json.dumps({"iface": "x"}).encode(),
    "pid-text": json.dumps(GOOD | {"pid": "12"}).encode(),
    "pid-bool": json.dumps(GOOD | {"pid": True}).encode(),
    "pid-huge": json.dumps(GOOD | {"pid": 10**30}).encode(),
    "started-text": json.dumps(GOOD | {"started": "yesterday"}).encode(),
    "started-inf": b'{"pid": 1, "iface": "x", "mode": "native", "started": 1e999}',
    "last-epoch-text": json.dumps(GOOD | {"last_epoch": "7", "last_packets": 1}).encode(),
    "started-far": json.dumps(GOOD | {"started": 1e300}).encode(),
    "iface-number": json.dumps(GOOD | {"iface": 7}).encode(),
}


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPECTRA_RUN_DIR", str(tmp_path))
    return tmp_path


def state(run_dir, iface: str):
    return run_dir / f"{netns_id()}.{iface}.json"


def test_status_names_each_damaged_file_and_lists_the_good_ones(run_dir):
    for name, data in DAMAGED.items():
        state(run_dir, name).write_bytes(data)
    state(run_dir, "eth9").write_text(json.dumps(GOOD))
    r = CliRunner().invoke(sensor, ["status"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and r.exception is None, r.output
    lines = r.output.strip().splitlines()
    assert lines[-1].startswith("eth9: running, pid")  # the good one, listed as ever
    damaged = [line for line in lines if "damaged state file" in line]
    assert len(damaged) == len(DAMAGED) == len(lines) - 1, r.output
    for name in DAMAGED:
        assert sum(f".{name}.json" in line for line in damaged) == 1, (name, r.output)
    r = CliRunner().invoke(sensor, ["status", "--json"])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert [row["iface"] for row in json.loads(r.stdout)] == ["eth9"]


@pytest.mark.parametrize("name", DAMAGED)
def test_query_iface_with_a_damaged_state_file_is_one_line(run_dir, name):
    state(run_dir, name).write_bytes(DAMAGED[name])
    r = CliRunner().invoke(main, ["query", "--iface", name, "status"])
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert "damaged state file" in r.output and f".{name}.json" in r.output, r.output
