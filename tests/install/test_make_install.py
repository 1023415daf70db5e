"""`make install` / `make uninstall`: the staged tree (DESTDIR) refers only to
its final paths; a real install runs from root's PATH, its systemd unit's
ExecStart runs as written under the unit's capabilities; uninstall leaves
nothing behind.  Real installs go to /opt/netspectra and /usr/local."""

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.sensor_proc import attach_count_detach, env_argv, one_line_error
from tests.install.conftest import make, snapshot

pytestmark = pytest.mark.root

OPT, PREFIX = "/opt/netspectra", "/usr/local"
UNIT = f"{PREFIX}/lib/systemd/system/netspectra-sensor@.service"
# Debian sudo's secure_path (and root's login PATH): /usr/local/bin is on it
SUDO_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("destdir")
    make("install", f"DESTDIR={dest}")
    return dest


def test_destdir_tree_refers_to_final_paths(staged):
    root = staged
    for p in (f"{OPT}/bin/netspectra-sensor", f"{OPT}/pyvenv.cfg", UNIT, "/etc/netspectra/sensor.yaml.example",
              "/etc/default/netspectra-sensor", f"{PREFIX}/share/doc/netspectra/install.md",
              f"{PREFIX}/share/man/man1/netspectra-sensor.1", f"{PREFIX}/share/man/man1/netspectra.1"):  # fmt: skip
        assert (root / p.lstrip("/")).is_file(), p
    for cmd in ("netspectra", "netspectra-sensor"):
        assert os.readlink(root / f"{PREFIX}/bin/{cmd}".lstrip("/")) == f"{OPT}/bin/{cmd}"
    assert (root / f"{OPT}/bin/netspectra-sensor".lstrip("/")).read_text().startswith(f"#!{OPT}/bin/python\n")
    # nothing staged (scripts, pyvenv.cfg, .pyc source paths, unit) names the staging directory
    r = subprocess.run(["grep", "-rlaF", str(root), str(root)], capture_output=True, text=True)
    assert r.stdout == ""
    unit = (root / UNIT.lstrip("/")).read_text()
    assert re.search(rf"^ExecStart={OPT}/bin/netspectra-sensor attach %i \$NETSPECTRA_ARGS$", unit, re.M)
    assert not re.findall(r"@[A-Z]+@", unit)
    # the man pages are the commands' own help
    page = (root / f"{PREFIX}/share/man/man1/netspectra-sensor.1".lstrip("/")).read_text()
    assert page.startswith(".TH NETSPECTRA-SENSOR 1") and "\\-\\-epoch" in page and "attach" in page
    # the manifest lists exactly the staged tree
    listed = {p.rstrip("/") for p in (root / f"{OPT}/install-manifest".lstrip("/")).read_text().splitlines()}
    found = {"/" + str(p.relative_to(root)) for p in root.rglob("*")}
    assert listed == found


@pytest.fixture(scope="module")
def installed():
    """A real `make install`; removed at the end if a test did not."""
    if os.path.exists(OPT):
        pytest.fail(f"{OPT} exists: this test installs there")
    before = snapshot()
    make("install")
    yield before
    if os.path.exists(f"{OPT}/install-manifest"):
        make("uninstall")


def test_installed_commands_run_from_path(installed, veth, dirs):
    r = subprocess.run(["env", "-i", SUDO_PATH, "netspectra-sensor", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "attach" in r.stdout, r.stderr
    r = subprocess.run(["env", "-i", SUDO_PATH, "netspectra", "version"], capture_output=True, text=True)
    assert r.stdout.strip() == "netspectra 0.1.0", r.stderr
    run, data = dirs
    argv = env_argv(f"NETSPECTRA_RUN_DIR={run}", f"NETSPECTRA_DATA_DIR={data}")
    argv[2] = SUDO_PATH
    attach_count_detach(veth, [*argv, "netspectra-sensor", "attach", veth.dev_b, "--json", "--epoch", "30s"], run)


def unit_settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k, v)
    return out


def exec_start(iface: str, args: str) -> list[str]:
    """The unit's ExecStart for instance iface, with $NETSPECTRA_ARGS split
    into words as systemd does for an unquoted $VAR."""
    cmd = unit_settings(Path(UNIT).read_text())["ExecStart"].replace("%i", iface)
    out = []
    for word in shlex.split(cmd):
        out += args.split() if word == "$NETSPECTRA_ARGS" else [word]
    return out


def setpriv(caps: str) -> list[str]:
    """setpriv limiting root to the unit's CapabilityBoundingSet (and ambient
    set), as systemd does for a root service."""
    names = ",".join("+" + c.removeprefix("CAP_").lower() for c in caps.split())
    return ["setpriv", f"--bounding-set=-all,{names}", f"--inh-caps=-all,{names}", f"--ambient-caps=-all,{names}"]


def test_unit_execstart_runs_under_its_capabilities_and_stops_on_sigterm(installed, veth, dirs):
    s = unit_settings(Path(UNIT).read_text())
    assert s["CapabilityBoundingSet"] == s["AmbientCapabilities"] == "CAP_BPF CAP_PERFMON CAP_NET_ADMIN"
    assert s["Restart"] == "on-failure" and s["KillSignal"] == "SIGTERM"
    assert s["RuntimeDirectory"] == s["StateDirectory"] == "netspectra"
    run, data = dirs
    # systemd would give it /run/netspectra and /var/lib/netspectra; the test gives it its own
    env = env_argv(f"NETSPECTRA_RUN_DIR={run}", f"NETSPECTRA_DATA_DIR={data}")
    argv = [*setpriv(s["CapabilityBoundingSet"]), *env, *exec_start(veth.dev_b, "--json --epoch 30s")]
    assert argv[-6] == f"{OPT}/bin/netspectra-sensor"
    attach_count_detach(veth, argv, run, sig=signal.SIGTERM)


def test_unit_capabilities_are_the_smallest_set(installed, veth, dirs):
    """Without any one of the three the sensor refuses in one line (its preflight;
    what the kernel and bcc do without each is measured in docs/install.md)."""
    run, data = dirs
    caps = unit_settings(Path(UNIT).read_text())["CapabilityBoundingSet"].split()
    for missing in caps:
        rest = " ".join(c for c in caps if c != missing)
        argv = [*setpriv(rest), *env_argv(f"NETSPECTRA_RUN_DIR={run}", f"NETSPECTRA_DATA_DIR={data}"),
                *exec_start(veth.dev_b, "")]  # fmt: skip
        r = subprocess.run(["ip", "netns", "exec", veth.ns_b, *argv], capture_output=True, text=True, timeout=60)
        one_line_error(r, "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")


def test_installed_unit_verifies(installed, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    # A template is verified as an instance; verify also checks that ExecStart's binary exists.
    inst = tmp_path / "netspectra-sensor@lo.service"
    inst.symlink_to(UNIT)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(inst)], capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in (p.stdout + p.stderr).splitlines() if "netspectra" in ln]
    assert p.returncode == 0 and not complaints, p.stdout + p.stderr


def test_uninstall_leaves_nothing(installed):
    make("uninstall")
    assert snapshot() == installed
