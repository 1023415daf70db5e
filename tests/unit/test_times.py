"""Every time shown to a person says its zone (configkit.fmt_time, the one
helper): UTC with Z, or the host's local time with its offset.  The zone here
is a POSIX TZ string, so no tzdata is needed."""

import json
import os
import time

import pytest
from click.testing import CliRunner
from google.protobuf.timestamp_pb2 import Timestamp

from netspectra.api import client
from netspectra.cli import sensor
from netspectra.configkit import fmt_time, parse_time
from netspectra.sensor import netns_id

T = 1_796_119_200.25  # 2026-12-01T10:00:00.25Z


@pytest.fixture
def paris(monkeypatch):
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_utc_says_z_and_local_says_its_offset(paris):
    assert fmt_time(T) == "2026-12-01T10:00:00Z"
    assert fmt_time(T, local=True) == "2026-12-01T11:00:00+01:00"
    assert fmt_time(T, local=True, ms=True, date=False) == "11:00:00.250+01:00"
    assert fmt_time(T, ms=True) == "2026-12-01T10:00:00.250Z"
    for text in (fmt_time(T, local=True), fmt_time(T)):  # what is shown can be pasted into --since
        assert parse_time(text, now=0.0) == int(T)


def test_local_time_in_utc_keeps_its_offset(monkeypatch):
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    try:
        assert fmt_time(T, local=True) == "2026-12-01T10:00:00+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_sensor_status_says_the_zone(paris, tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPECTRA_RUN_DIR", str(tmp_path))
    state = {"pid": os.getpid(), "iface": "eth0", "mode": "native", "started": T, "api": ""}
    (tmp_path / f"{netns_id()}.eth0.json").write_text(json.dumps(state))
    r = CliRunner().invoke(sensor, ["status"])
    assert r.exit_code == 0, r.output
    assert "eth0: running, pid" in r.output and "since 2026-12-01T11:00:00+01:00" in r.output
    r = CliRunner().invoke(sensor, ["status", "--json"])
    assert json.loads(r.output)[0]["started"] == T  # machines get Unix seconds


def test_query_tables_say_the_zone(paris):
    ts = Timestamp()
    ts.FromNanoseconds(int(T * 1e9))
    assert client._time(ts) == "11:00:00.250+01:00"
    assert client._date_time(ts) == "2026-12-01T11:00:00+01:00"
    r = client.pb.EpochRange(first=3, last=4, start=ts, end=ts)
    assert client._epochs(r) == "epochs 3..4 (11:00:00.250+01:00 - 11:00:00.250+01:00)"
