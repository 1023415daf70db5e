"""`netspectra query` against a real API server on loopback (no root): tables,
--json, TLS and token options, and one-line errors."""

import json

import pytest
from click.testing import CliRunner

from netspectra.api.settings import TlsConfig
from netspectra.cli import main

from .test_api_server import HEAVY, SCANNER, TOKEN, Api, lossy_epoch, model, pki, snaps  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def server(snaps):  # noqa: F811
    a = Api(snaps, http=False)
    yield a
    a.close()


def run(server, *args, env=None):
    return CliRunner().invoke(main, ["query", "--server", server.target, *args], env=env or {})


def ok(server, *args, env=None) -> str:
    r = run(server, *args, env=env)
    assert r.exit_code == 0, r.output
    return r.output


def one_line_error(r, *needles) -> None:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    for n in needles:
        assert n in r.output, r.output


def test_tables(server):
    out = ok(server, "status")
    assert "veth-api0" in out and "3 of 4 kept" in out
    out = ok(server, "tasks")
    assert "spread_dst" in out and "superspread" in out
    out = ok(server, "top", "-n", "2")  # the first countmin task: src, by bytes
    lines = out.splitlines()
    assert lines[0].startswith("top 2 of task src by bytes, epoch 2")
    assert lines[2].split()[0] == HEAVY.src
    out = ok(server, "spreaders")
    assert out.splitlines()[2].split()[0] == SCANNER
    out = ok(server, "flows", "--proto", "tcp", "--dport", "80", "--src", "10.0.0.0/24")
    assert "1 of 1 matching flows" in out and HEAVY.dst in out
    out = ok(server, "trace", f"src_ip={HEAVY.src}", f"dst_ip={HEAVY.dst}", "proto=tcp", "src_port=4000", "dst_port=80")
    assert "in 3 kept epochs: 2400 packets" in out


def test_exact_or_estimated(server, snaps):  # noqa: F811
    """Answers say whether they are exact; estimates show their bound."""
    out = ok(server, "top", "--epochs", "3").splitlines()
    assert out[0].endswith(", exact") and out[-1] == "exact sums of the flows: no packet of these epochs was untracked"
    assert ok(server, "estimate", "src", SCANNER).splitlines()[1] == "packets 150, bytes 12000 (exact)"
    assert ok(server, "estimate", "spread_dst", SCANNER).splitlines()[1] == "distinct 150 (exact)"
    out = ok(server, "spreaders").splitlines()
    assert out[0].endswith(", exact") and out[2].split() == [SCANNER, "150", "150"]
    assert json.loads(ok(server, "--json", "top"))["exact"] is True
    assert ", exact, ended" in ok(server, "status")
    a = Api([snaps[0], snaps[1], lossy_epoch(snaps)], http=False)  # the last epoch had untracked packets
    try:
        out = ok(a, "top").splitlines()
        assert out[0].endswith(", estimated") and out[-1].startswith("Count-Min estimates, never below the truth")
        assert "at most), bytes" in ok(a, "estimate", "src", SCANNER)
        assert "distinct ~1" in ok(a, "estimate", "spread_dst", SCANNER)
        out = ok(a, "spreaders").splitlines()
        assert out[0].endswith(", estimated") and out[2].split()[1].startswith("~")
        est = json.loads(ok(a, "--json", "estimate", "src", SCANNER))
        assert est["exact"] is False and est["packets_error_bound"] > 0
        epochs = ok(a, "watch-epochs", "--replay", "--count", "3").splitlines()
        assert [x.split(": ")[1].rsplit(", ", 1)[1] for x in epochs if x.startswith("epoch")] == [
            "exact",
            "exact",
            "estimated",
        ]
    finally:
        a.close()


def test_json_and_paging(server):
    est = json.loads(ok(server, "--json", "estimate", "src", HEAVY.src, "--epochs", "3"))
    assert est["packets"] == 2400 and est["bytes"] == 2400 * 1500
    page = json.loads(ok(server, "--json", "flows", "-n", "7"))
    every = json.loads(ok(server, "--json", "flows", "-n", "7", "--all"))
    assert len(page["flows"]) == 7 and page["next_page_token"]
    assert len(every["flows"]) == every["total"] == page["total"]
    keys = {json.dumps(f["key"], sort_keys=True) for f in every["flows"]}
    assert len(keys) == every["total"]
    nxt = json.loads(ok(server, "--json", "flows", "-n", "7", "--page-token", page["next_page_token"]))
    assert nxt["flows"] == every["flows"][7:14]


def test_watch_epochs_replay(server):
    lines = ok(server, "--json", "watch-epochs", "--replay", "--count", "3").splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]


def test_errors_are_one_line(server):
    one_line_error(run(server, "top", "spread_dst"), "task: 'spread_dst' is a superspread task")
    one_line_error(run(server, "top", "nope"), "no task named 'nope'")
    one_line_error(run(server, "estimate", "src", "dst_ip=10.0.0.1"), "key.dst_ip: not a field of task 'src'")
    one_line_error(run(server, "estimate", "src", "src_ip=999.1.1.1"), "key.src_ip: '999.1.1.1' is not an IP")
    one_line_error(run(server, "estimate", "flow", "src_ip"), "give keys as FIELD=VALUE")
    one_line_error(run(server, "flows", "--dport", "80-x"), "--dport: '80-x' is not a port or range")
    one_line_error(run(server, "flows", "--src", "10.0.0.0/99"), "filter.src: '10.0.0.0/99'")
    one_line_error(run(server, "--cert", "c.pem", "status"), "--cert and --key go together")
    r = CliRunner().invoke(main, ["query", "--server", "127.0.0.1:1", "--timeout", "2", "status"])
    one_line_error(r, "cannot reach the sensor at 127.0.0.1:1")


def test_token_and_tls(snaps, pki):  # noqa: F811
    a = Api(snaps, http=False, token=TOKEN, tls=TlsConfig(pki["server_crt"], pki["server_key"], pki["ca_crt"]))
    try:
        tls = ["--ca", pki["ca_crt"], "--cert", pki["client_crt"], "--key", pki["client_key"]]
        one_line_error(run(a, *tls, "status"), "refused the request: missing bearer token")
        one_line_error(run(a, *tls, "--token", "x" * 20, "status"), "refused the request: wrong bearer token")
        assert "veth-api0" in ok(a, *tls, "status", env={"NETSPECTRA_TOKEN": TOKEN})
        one_line_error(run(a, "--token", TOKEN, "--timeout", "2", "status"), "cannot reach the sensor", "add --tls")
        no_client_cert = run(a, "--ca", pki["ca_crt"], "--token", TOKEN, "--timeout", "2", "status")
        assert no_client_cert.exit_code == 1 and len(no_client_cert.output.strip().splitlines()) == 1
    finally:
        a.close()


def test_version_on_both_commands():
    from importlib.metadata import version

    from click.testing import CliRunner

    from netspectra.cli import main, sensor

    v = version("netspectra")
    for cmd, args, want in ((main, ["--version"], "netspectra"), (sensor, ["--version"], "netspectra-sensor"),
                            (main, ["version"], "netspectra")):  # fmt: skip
        r = CliRunner().invoke(cmd, args)
        assert r.exit_code == 0 and r.output == f"{want} {v}\n", r.output
