"""`netspectra analyze --json` streamed: the same bytes as the whole document
built in memory (tests/helpers/analyze_json.py) on generated captures, and a
memory footprint that does not grow with the flows beyond what the analysis
itself holds (the whole document took ~1.3 KB more per flow: 1M flows, 1.7 GB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.gen_capture import distinct_flows
from netspectra import jsontext
from tests.helpers.analyze_json import reference, streamed


def test_jsontext_pieces_spell_json_dumps():
    flows = [{"src": "10.0.0.1", "n": i, "x": 0.1 * i} for i in range(5)]

    def batches():  # runs of elements, as snapshot._flows_text gives them
        yield json.dumps(flows[:2])[1:-1]
        yield json.dumps(flows[2:])[1:-1]

    doc = {"a": {}, "é\u2028": [1.5, None, True, "\x1b"], "f": jsontext.array(batches()), "e": jsontext.array([])}
    doc["n"] = {"inner": jsontext.Chunks(iter(['{"k"', ": ", "[]}"]))}
    text = "".join(jsontext.pieces(doc))
    assert text == json.dumps(
        {"a": {}, "é\u2028": [1.5, None, True, "\x1b"], "f": flows, "e": [], "n": {"inner": {"k": []}}}
    )
    with pytest.raises(TypeError, match="not a str"):
        list(jsontext.pieces({1: 2}))


@pytest.mark.parametrize(
    "nflows,options",
    [(0, []), (20_000, []), (20_000, ["--epoch", "500ms"]), (20_000, ["--epoch", "500ms", "--top", "5"])],
    ids=["empty", "whole", "epochs", "epochs-top"],
)
def test_streamed_json_is_the_whole_document(tmp_path, nflows, options):
    # 20,000 flows 100 µs apart: several batches of formatted flows; 4 epochs of 5,000 flows
    path = tmp_path / "g.pcap"
    path.write_bytes(distinct_flows(nflows, gap_us=100))
    epoch = 0.5 if "--epoch" in options else None
    top = int(options[options.index("--top") + 1]) if "--top" in options else None
    code, out = streamed([str(path)], *options)
    assert code == 0
    assert out == reference([str(path)], epoch, top)
    doc = json.loads(out)
    assert len(doc["overall"]["flows"]) == min(nflows, top or nflows)
    assert len(doc["epochs"]) == (4 if epoch else 0)


def test_two_files_streamed_equal_the_whole_document(tmp_path):
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(distinct_flows(3000, gap_us=100))
    b.write_bytes(distinct_flows(9000, gap_us=100))  # the same flows again, and more
    code, out = streamed([str(a), str(b)], "--epoch", "100ms")
    assert code == 0 and out == reference([str(a), str(b)], 0.1)


# The child: analyze FILE (table or --json, stdout to a file) under an address-space limit,
# then its peak address space (VmPeak) into a file.
_CHILD = """
import resource, sys
mode, path, out, peak, limit = sys.argv[1:]
from netspectra.cli import main
if int(limit):
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
sys.stdout = open(out, "w")
try:
    main(["analyze", path] + (["--json"] if mode == "json" else []))
finally:
    sys.stdout.flush()
    with open(peak, "w") as f:
        f.write([l for l in open("/proc/self/status") if l.startswith("VmPeak")][0].split()[1])
"""
SLACK = 48 << 20  # one batch of formatted flows (~10 MB) and the rest of the streaming, with room


def _child(tmp_path, mode, capture, limit=0):
    out, peak = tmp_path / f"{mode}.out", tmp_path / f"{mode}.peak"
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(capture), str(out), str(peak), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r, out, int(peak.read_text()) << 10 if peak.exists() and peak.read_text() else 0


def test_json_fits_in_the_memory_of_the_table_report(tmp_path):
    # 200,000 flows: the table report peaks at ~280 MB of address space here; the whole
    # JSON document (before streaming) at ~435 MB, so it dies of MemoryError under the limit.
    n = 200_000
    capture = tmp_path / "g.pcap"
    capture.write_bytes(distinct_flows(n))
    r, _, table_peak = _child(tmp_path, "table", capture)
    assert r.returncode == 0 and table_peak, r.stderr
    r, out, _ = _child(tmp_path, "json", capture, table_peak + SLACK)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""
    doc = json.loads(out.read_text())
    assert len(doc["overall"]["flows"]) == n and doc["overall"]["packets"] == n


@pytest.fixture
def tiny_tmpdir(tmp_path):
    """A 64 KiB tmpfs for $TMPDIR: the per-epoch spool fills it for real."""
    d = tmp_path / "tmp"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "netspectra-test", str(d)], check=True)
    yield d
    subprocess.run(["umount", str(d)], check=True)


@pytest.mark.root
def test_a_full_tmpdir_is_one_line(tmp_path, tiny_tmpdir):
    path = tmp_path / "g.pcap"
    path.write_bytes(distinct_flows(20_000, gap_us=100))  # 4 epochs of 5,000 flows: megabytes of spool
    cli = [sys.executable, "-c", "from netspectra.cli import main; main()"]
    r = subprocess.run(
        [*cli, "analyze", "--json", "--epoch", "500ms", str(path)],
        env=dict(os.environ, TMPDIR=str(tiny_tmpdir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert r.stderr.splitlines() == [
        "Error: cannot spool the per-epoch JSON to a temporary file ($TMPDIR): No space left on device"
    ], r.stderr
