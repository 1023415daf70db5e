"""`make deb`: the package installs with apt-get, runs from the PATH sudo
gives root, and purge leaves nothing: not its files, not its history."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.sensor_proc import attach_count_detach, env_argv
from tests.install.conftest import ROOT, make, need, snapshot

pytestmark = pytest.mark.root

STATE = Path("/var/lib/netspectra")


@pytest.fixture(scope="module")
def deb() -> Path:
    need("dpkg-deb")
    for f in (ROOT / "dist").glob("netspectra_*.deb"):
        f.unlink()
    make("deb")
    (path,) = (ROOT / "dist").glob("netspectra_*.deb")
    return path


def apt(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["apt-get", "-y", "-q", *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def test_deb_installs_runs_from_path_and_purge_leaves_nothing(deb, veth, tmp_path):
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True).stdout
    assert "python3-bpfcc" in info and "linux-headers" in info
    for p in ("/opt/netspectra", STATE):
        if os.path.exists(p):
            pytest.fail(f"{p} exists: this test installs the package and purges it")
    before = snapshot() - {str(STATE)}
    apt("install", str(deb))  # an absolute path: apt-get takes it as a file, like ./name
    try:
        files = subprocess.run(["dpkg", "-L", "netspectra"], capture_output=True, text=True, check=True).stdout
        # as installed: sudo's PATH, no environment, history and state in their real places
        attach_count_detach(veth, [*env_argv(), "netspectra-sensor", "attach", veth.dev_b, "--json", "--epoch", "30s"],
                            Path("/run/netspectra"))  # fmt: skip
        assert (STATE / "history.db").is_file()
        unit = tmp_path / "netspectra-sensor@lo.service"
        unit.symlink_to("/usr/lib/systemd/system/netspectra-sensor@.service")
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
        assert r.returncode == 0 and "netspectra" not in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        apt("purge", "netspectra")
    # what dpkg listed and is still there: only shared directories others fill (/usr/share/doc, /opt)
    left = [p for p in files.splitlines() if p not in ("", "/.") and os.path.lexists(p)]
    assert [p for p in left if os.path.islink(p) or not os.path.isdir(p) or not os.listdir(p)] == []
    assert not STATE.exists()
    assert snapshot() - {str(STATE)} == before
