"""History, live: the real sensor on a veth pair writes every epoch to its
SQLite store; after a restart, `netspectra query flows --since 10m` returns
exactly the planted flows (memory no longer holds them: the store does), and
a SIGKILL loses no epoch the sensor had reported written."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pytest

from .test_api_live import PLANTED, query, query_json, send_planted, wait_counted
from .test_cli import finish, start, wait_attached

pytestmark = pytest.mark.root


def sensor(veth, tmp_path, db):
    cfg = tmp_path / "history.yaml"
    cfg.write_text(f"sensor:\n  metrics_address: ''\napi:\n  keep_epochs: 5\nstore:\n  url: {db}\n")
    proc = start(veth, "--epoch", "200ms", "--json", "--config", str(cfg))
    wait_attached(veth, proc)
    return proc


def flows(v, *window) -> dict:
    doc = query_json(v, "flows", "--all", "-n", "1000", *window)
    return {
        (f["key"]["src_ip"], f["key"]["dst_ip"], f["key"]["proto"], f["key"]["src_port"], f["key"]["dst_port"]): (
            int(f["packets"]),
            int(f["bytes"]),
        )
        for f in doc.get("flows", [])
    }, doc["epochs"]


def wait_written(v, n: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = query_json(v, "status")
        if int(st.get("history", {}).get("epochs_written", 0)) >= n:
            return st
        time.sleep(0.2)
    raise AssertionError(f"the sensor wrote {st.get('history')} epochs, not {n}")


def test_history_survives_a_restart(veth, tmp_path):
    db = tmp_path / "history.db"
    want = {(s, d, pr, sp, dp): (n, n * size) for s, d, pr, sp, dp, n, size in PLANTED}
    proc = sensor(veth, tmp_path, db)
    try:
        sent = send_planted(veth)
        wait_counted(veth, sent)
        st = wait_written(veth, 2)
        h = st["history"]
        assert h["store"] == f"sqlite://{db}" and h["up"] is True and int(h.get("epochs_lost", 0)) == 0
    finally:
        proc.terminate()
        _, err = finish(proc)
    assert f"history sqlite://{db}" in err

    proc = sensor(veth, tmp_path, db)
    try:
        got, epochs = flows(veth, "--since", "10m")
        assert epochs["source"].startswith("store:")  # memory holds only epochs since the restart
        assert got == want
        # the same range over HTTP-free totals: GetStatus sums the range's totals from the store
        st = query_json(veth, "status", "--since", "10m")
        assert int(st["range"]["total"]["packets"]) == sum(p[5] for p in PLANTED)
        # the kept epochs alone no longer have them
        assert flows(veth, "--epochs", "5")[0] == {}
    finally:
        proc.terminate()
        finish(proc)


def test_sigkill_loses_no_committed_epoch(veth, tmp_path):
    db = tmp_path / "history.db"
    proc = sensor(veth, tmp_path, db)
    try:
        send_planted(veth)
        st = wait_written(veth, 10)
        written = int(st["history"]["epochs_written"])
    finally:
        proc.send_signal(signal.SIGKILL)
        finish(proc)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = con.execute("SELECT count(*) FROM records WHERE resolution = 'raw'").fetchone()[0]
    con.close()
    assert stored >= written >= 10
    # and it opens cleanly for the next sensor, which goes on writing
    proc = sensor(veth, tmp_path, db)
    try:
        got, _ = flows(veth, "--since", "10m")
        assert got == {(s, d, pr, sp, dp): (n, n * size) for s, d, pr, sp, dp, n, size in PLANTED}
        r = query(veth, "status")
        assert "history    sqlite://" in r.stdout
    finally:
        proc.terminate()
        finish(proc)


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs: a store on it can be filled up for real."""
    d = tmp_path / "disk"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "netspectra-test", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(path) -> None:
    """Take every free byte of path's filesystem."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def test_a_full_or_blocked_store_never_delays_epochs_and_the_loss_is_counted(veth, tmp_path, small_disk):
    db = small_disk / "history.db"
    cfg = tmp_path / "full.yaml"
    cfg.write_text(f"sensor:\n  metrics_address: ''\napi:\n  keep_epochs: 5\nstore:\n  url: {db}\n  spool: 30\n")
    proc = start(veth, "--epoch", "200ms", "--json", "--config", str(cfg))
    try:
        wait_attached(veth, proc)
        wait_written(veth, 2)
        fill(small_disk / "filler")
        send_planted(veth)  # traffic makes epochs worth writing (and rollups to grow)
        t0, before = time.monotonic(), int(query_json(veth, "status")["epochs_completed"])
        deadline = t0 + 15
        while time.monotonic() < deadline:
            st = query_json(veth, "status")
            h = st["history"]
            if int(h.get("epochs_lost", 0)) >= 5 and not h.get("up", True):  # the spool of 30 ran over
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the store never went down on a full disk: {st['history']}")
        assert int(h.get("epochs_waiting", 0)) <= 30  # the spool's bound
        # epochs kept coming at their pace while the store was down
        elapsed = time.monotonic() - t0
        assert int(st["epochs_completed"]) - before >= int(elapsed / 0.2 / 2)  # (half: a busy 2-core CI box)
        (small_disk / "filler").unlink()  # the disk has room again: the spool drains
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            h = query_json(veth, "status")["history"]
            if h.get("up") and int(h.get("epochs_waiting", 0)) == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the store did not come back: {h}")
        lost = int(h["epochs_lost"])

        # a store that blocks (another writer holds the database) stalls only its spool
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        try:
            before, t0 = int(query_json(veth, "status")["epochs_completed"]), time.monotonic()
            time.sleep(3)
            st = query_json(veth, "status")
            assert int(st["history"].get("epochs_waiting", 0)) >= 3  # held back by the lock
            assert int(st["epochs_completed"]) - before >= int((time.monotonic() - t0) / 0.2 / 2)
        finally:
            con.execute("ROLLBACK")
            con.close()
        deadline = time.monotonic() + 15
        while int(query_json(veth, "status")["history"].get("epochs_waiting", 0)) and time.monotonic() < deadline:
            time.sleep(0.2)
        h = query_json(veth, "status")["history"]
        assert int(h.get("epochs_waiting", 0)) == 0 and int(h["epochs_lost"]) == lost  # the spool held them all
    finally:
        proc.terminate()
        _, err = finish(proc)
    assert "store: down (StoreError" in err and "store: back up" in err
    con = sqlite3.connect(db)
    stored = con.execute("SELECT count(*) FROM records WHERE resolution = 'raw'").fetchone()[0]
    con.close()
    completed = int(st["epochs_completed"])
    assert stored + lost >= completed  # every epoch is stored or counted as lost
