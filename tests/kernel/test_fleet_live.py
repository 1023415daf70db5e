"""The fleet, live: a real sensor on a veth pair publishes every epoch to a
real nats-server (JetStream) in its namespace; the stream holds exactly the
planted flows, also when NATS was down for several epochs in between (the
epochs waited in the sensor's disk spool)."""

from __future__ import annotations

import time

import pytest

from netspectra.snapshot import merge_flows

from .test_api_live import PLANTED, query_json, send_planted, wait_counted
from .test_cli import finish, start, wait_attached

pytestmark = pytest.mark.root

STREAM, PREFIX = "LIVE", "live.v1"


@pytest.fixture
def nats(veth, tmp_path):
    from tests.helpers.nats import NatsServer, ensure_stream

    srv = NatsServer(tmp_path / "nats", netns=veth.ns_b).start()
    ensure_stream(srv, STREAM, PREFIX)
    yield srv
    srv.stop()


def sensor(veth, tmp_path, nats):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "sensor:\n  metrics_address: ''\n  id: edge1\nstore:\n  url: 'off'\n"
        f"fleet:\n  servers: [{nats.url}]\n  stream: {STREAM}\n  subject_prefix: {PREFIX}\n"
        f"  spool_dir: {tmp_path / 'spool'}\n"
    )
    proc = start(veth, "--epoch", "200ms", "--json", "--config", str(cfg))
    wait_attached(veth, proc)
    return proc


def planted_flows(epochs) -> dict:
    fl = merge_flows([e.flows for e in epochs])
    from netspectra.packets import addr_str

    return {
        (addr_str(f["key"]["src"]), addr_str(f["key"]["dst"]), int(f["key"]["proto"]), int(f["key"]["sport"]),
         int(f["key"]["dport"])): (int(f["packets"]), int(f["bytes"]))
        for f in fl
    }  # fmt: skip


WANT = {(s, d, pr, sp, dp): (n, n * size) for s, d, pr, sp, dp, n, size in PLANTED}


def test_epochs_reach_the_stream_through_an_outage(veth, tmp_path, nats):
    from tests.helpers.nats import read_epochs

    proc = sensor(veth, tmp_path, nats)
    try:
        time.sleep(0.5)
        nats.stop()  # NATS away for several epochs: they wait on disk
        sent = send_planted(veth)
        wait_counted(veth, sent)
        time.sleep(1.5)
        nats.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = query_json(veth, "status")
            if st["epochs_completed"] and not _spooled(tmp_path):
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        _, err = finish(proc)
    assert "fleet nats://127.0.0.1" in err
    epochs = read_epochs(nats, STREAM, PREFIX)
    assert epochs and {e.origin.sensor for e in epochs} == {"edge1"}
    starts = [e.start for e in epochs]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # in order, each once
    assert planted_flows(epochs) == WANT
    # every epoch the sensor closed is in the stream: consecutive, no gap
    assert all(abs(a.end - b.start) < 1e-6 for a, b in zip(epochs, epochs[1:]))


def _spooled(tmp_path) -> int:
    d = tmp_path / "spool"
    return len(list(d.glob("*.rec"))) if d.exists() else 0
