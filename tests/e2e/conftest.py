"""End-to-end fixtures: real Prometheus and Alertmanager (Debian packages) and a
webhook receiver, all on loopback inside the sensor's network namespace.

Everything runs in ns_b of a throwaway VethPair: the sensor listens on that
namespace's loopback, so Prometheus scrapes it there; Alertmanager and the
receiver sit next to them.  Each process gets free ports and its own temp data
dir and is killed at teardown, whatever the test did.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from netspectra.netns import VethPair, inside

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO / "exporters" / "prometheus" / "netspectra.rules.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def free_port(ns: str) -> int:
    """A port free on the loopback of namespace `ns`."""
    with inside(ns), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(ns: str, url: str, timeout: float = 5) -> object:
    """GET `url` from inside namespace `ns` (the servers live there)."""
    with inside(ns):
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())


def wait_ready(ns: str, proc: subprocess.Popen, url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited early ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with inside(ns), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s: {log.read_text()[-2000:]}")


def spawn(ns: str, argv: list[str], log: Path) -> subprocess.Popen:
    """`argv` inside `ns` (`ip netns exec` execs it: the pid is the server's)."""
    out = open(log, "w")
    try:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()  # the child has its own copy


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------------ namespace


@pytest.fixture
def veth(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPECTRA_RUN_DIR", str(tmp_path / "run"))
    with VethPair() as v:
        yield v


# ------------------------------------------------------------------ webhook receiver


class Receiver:
    """Records every POST body (parsed JSON) an Alertmanager webhook sends."""

    def __init__(self, ns: str):
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec._lock:
                    rec.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        with inside(ns):  # the listening socket belongs to ns, whatever thread accepts on it
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, status: str | None = None) -> list[tuple[str, dict]]:
        """(notification status, alert) for every alert of every POST so far;
        only notifications of `status` when given."""
        with self._lock:
            bodies = list(self.bodies)
        return [(b["status"], a) for b in bodies if status in (None, b["status"]) for a in b["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def receiver(veth):
    r = Receiver(veth.ns_b)
    yield r
    r.close()


# ------------------------------------------------------------------ alertmanager


class Alertmanager:
    def __init__(self, ns: str, tmp: Path, webhook_url: str):
        if not ALERTMANAGER:
            pytest.fail("prometheus-alertmanager not installed (scripts/deps.sh installs it)")
        self.ns = ns
        self.port = free_port(ns)
        self.url = f"http://127.0.0.1:{self.port}"
        d = tmp / "alertmanager"
        d.mkdir()
        # JSON is YAML: no templating of YAML by hand.
        cfg = {
            "global": {"resolve_timeout": "5s"},
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "source", "rule", "task", "src_ip"],  # one notification per alert of the test
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1m",
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
        }
        (d / "alertmanager.yml").write_text(json.dumps(cfg, indent=2))
        self.log = d / "log"
        self.proc = spawn(
            ns,
            [
                ALERTMANAGER,
                f"--config.file={d / 'alertmanager.yml'}",
                f"--storage.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a lone instance
            ],
            self.log,
        )
        try:
            wait_ready(ns, self.proc, f"{self.url}/-/ready", self.log)
        except BaseException:
            stop(self.proc)
            raise

    def alerts(self) -> list[dict]:
        return get_json(self.ns, f"{self.url}/api/v2/alerts")

    def close(self) -> None:
        stop(self.proc)


@pytest.fixture
def alertmanager(veth, receiver, tmp_path):
    am = Alertmanager(veth.ns_b, tmp_path, receiver.url)
    yield am
    am.close()


# ------------------------------------------------------------------ prometheus


def rules_copy(dest: Path, for_overrides: dict[str, str] | None = None) -> Path:
    """The shipped rules, copied to `dest`, with the `for:` of the alerts named
    in `for_overrides` rewritten (nothing else: thresholds stay as shipped)."""
    text = SHIPPED_RULES.read_text()
    for alert, value in (for_overrides or {}).items():
        text, n = re.subn(
            rf"(- alert: {re.escape(alert)}\n(?:(?!\s*- alert:).*\n)*?\s*for: )\S+", rf"\g<1>{value}", text
        )
        assert n == 1, f"no `for:` of {alert} in {SHIPPED_RULES}"
    dest.write_text(text)
    return dest


class Prometheus:
    def __init__(self, ns: str, tmp: Path, targets: list[str], alertmanager_url: str, rules: Path):
        if not PROMETHEUS:
            pytest.fail("prometheus not installed (scripts/deps.sh installs it)")
        self.ns = ns
        self.port = free_port(ns)
        self.url = f"http://127.0.0.1:{self.port}"
        d = tmp / "prometheus"
        d.mkdir(exist_ok=True)
        cfg = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]
            },
            "scrape_configs": [{"job_name": "netspectra", "static_configs": [{"targets": targets}]}],
        }
        (d / "prometheus.yml").write_text(json.dumps(cfg, indent=2))
        check = subprocess.run(
            ["promtool", "check", "config", str(d / "prometheus.yml")], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = d / "log"
        self.proc = spawn(
            ns,
            [
                PROMETHEUS,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            self.log,
        )
        try:
            wait_ready(ns, self.proc, f"{self.url}/-/ready", self.log)
        except BaseException:
            stop(self.proc)
            raise

    def query(self, expr: str) -> list[dict]:
        q = urllib.parse.urlencode({"query": expr})
        r = get_json(self.ns, f"{self.url}/api/v1/query?{q}")
        assert r["status"] == "success", r
        return r["data"]["result"]

    def alerts(self) -> list[dict]:
        r = get_json(self.ns, f"{self.url}/api/v1/alerts")
        assert r["status"] == "success", r
        return r["data"]["alerts"]

    def close(self) -> None:
        stop(self.proc)


@pytest.fixture
def start_prometheus(veth, alertmanager, tmp_path):
    """start_prometheus(targets, rules) -> Prometheus in ns_b, stopped at teardown."""
    started: list[Prometheus] = []

    def start(targets: list[str], rules: Path) -> Prometheus:
        p = Prometheus(veth.ns_b, tmp_path, targets, alertmanager.url, rules)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


@pytest.fixture(autouse=True, scope="session")
def _data_dir(tmp_path_factory):
    """Sensors started by tests keep their history (store.url "") here, not in /var/lib/netspectra."""
    os.environ["NETSPECTRA_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
