"""`netspectra analyze FILE --store URL` loads a capture's epochs into a store,
and `netspectra query --store URL` answers over them like a sensor does:
the flows over the whole capture are exactly the capture's flows, at every
resolution, and loading the capture again adds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netspectra.offline import analyze

from .conftest import CORPUS, require

BIN = Path(sys.executable).parent / "netspectra"
CAPTURE = CORPUS / "pcpp__tls2.pcap"  # real TLS traffic over 2.5 minutes: 30 epochs


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=300)


def flows_of(url, *window) -> dict:
    r = run("query", "--json", "--store", url, "flows", "--all", "-n", "10000", *window)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    out = {}
    for f in doc["flows"]:
        k = f["key"]
        out[(k["src_ip"], k["dst_ip"], k.get("src_port", 0), k.get("dst_port", 0), k["proto"])] = (
            int(f["packets"]),
            int(f["bytes"]),
        )
    return out, doc["epochs"]


def test_a_capture_loaded_into_a_store_answers_like_the_capture(tmp_path):
    require(CAPTURE.exists(), f"{CAPTURE} missing")
    url = tmp_path / "history.db"
    r = run("analyze", CAPTURE, "--store", url)
    assert r.returncode == 0, r.stderr
    assert f"stored 30 epochs of {CAPTURE.name} in sqlite://{url}" in r.stderr

    rep = analyze([str(CAPTURE)])
    k = rep.overall.flows["key"]
    from netspectra.packets import addr_str

    want = {
        (addr_str(f["key"]["src"]), addr_str(f["key"]["dst"]), int(f["key"]["sport"]), int(f["key"]["dport"]),
         int(f["key"]["proto"])): (int(f["packets"]), int(f["bytes"]))
        for f in rep.overall.flows
    }  # fmt: skip
    assert len(k) > 100

    got, epochs = flows_of(url)  # no range: everything stored, read raw
    assert epochs["source"] == "store:raw" and epochs["records"] == 30
    assert got == want
    got, epochs = flows_of(url, "--since", "2000-01-01")  # a long range: read from the 1-hour rollups
    assert epochs["source"] == "store:1h"
    assert got == want

    again = run("analyze", CAPTURE, "--store", url)
    assert "stored 0 epochs" in again.stderr and "30 already there" in again.stderr
    assert flows_of(url)[0] == want

    top = json.loads(run("query", "--json", "--store", url, "top", "src", "-n", "3").stdout)
    assert top["exact"] is True and len(top["keys"]) == 3


def test_store_errors_are_one_line(tmp_path):
    r = run("query", "--store", tmp_path / "none.db", "top")
    assert r.returncode != 0 and r.stderr.strip() == f"Error: no store at {tmp_path / 'none.db'}"
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite" * 500)
    r = run("analyze", CAPTURE, "--store", bad)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].endswith("bad.db: file is not a database")
