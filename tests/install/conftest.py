"""Fixtures for the installed forms of netspectra: a wheel in a fresh venv,
`make install`, the Debian package.  The heavy steps run once per session."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def system_python() -> str:
    """The distribution's python3 when it is the version the wheel is built
    for (what a user's venv would use), else this interpreter's base."""
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    for exe in ("/usr/bin/python3", sys._base_executable):
        r = subprocess.run([exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode == 0 and r.stdout.strip() == want:
            return exe
    pytest.fail(f"no python{want} with the venv module (apt-get install python3-venv)")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built once (with this environment's build tools)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    (whl,) = out.glob("netspectra-*.whl")
    return whl


@pytest.fixture(scope="session")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new venv outside the repository with the wheel and its dependencies
    (from PyPI or pip's cache), and no bcc of its own."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([system_python(), "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True)
    return venv


@pytest.fixture
def veth(tmp_path):
    """A veth pair in throwaway namespaces."""
    from netspectra.netns import VethPair

    with VethPair() as v:
        yield v


@pytest.fixture
def dirs(tmp_path):
    """State (run) and history (data) directories for one sensor run."""
    run, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    return run, data


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} not found")
    return path


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`make ARGS` in the repository with this environment as the build venv."""
    venv = Path(sys.executable).parent.parent
    r = subprocess.run(["make", "-s", "-C", str(ROOT), f"VENV={venv}", *args],
                       capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


# What an install may touch; snapshots of these before and after must match.
INSTALL_ROOTS = ("/opt", "/usr/local/bin", "/usr/local/lib", "/usr/local/share", "/usr/bin", "/usr/share/doc",
                 "/usr/share/man/man1", "/usr/lib/systemd/system", "/lib/systemd/system", "/etc", "/var/lib")  # fmt: skip


def snapshot() -> set[str]:
    """Every path under INSTALL_ROOTS (one file system each, no /proc surprises)."""
    out = subprocess.run(["find", *INSTALL_ROOTS, "-xdev"], capture_output=True, text=True).stdout
    return set(out.splitlines())
