"""The wheel, installed into a fresh venv outside the repository, is the whole
sensor: its BPF sources travel inside it and bcc is the distribution's."""

import subprocess

import pytest

from tests.helpers.sensor_proc import attach_count_detach, env_argv, one_line_error

pytestmark = pytest.mark.root


def test_wheel_carries_bpf_sources_and_finds_distribution_bcc(fresh_venv, tmp_path):
    r = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "-c",
         "import sys, netspectra.kernel.program as p; bcc = p.import_bcc(); "
         "print(p.BPF_DIR); print(bcc.__file__); print(sys.path[-1])"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    bpf_dir, bcc_file, last = r.stdout.split()
    assert bpf_dir.startswith(str(fresh_venv)) and bpf_dir.endswith("netspectra/bpf")
    assert not bcc_file.startswith(str(fresh_venv))
    assert bcc_file.startswith(last)  # the distribution's directory, appended last


def test_fresh_venv_attaches_with_exact_counts(fresh_venv, veth, dirs):
    run, data = dirs
    sensor = str(fresh_venv / "bin" / "netspectra-sensor")
    argv = env_argv(f"NETSPECTRA_RUN_DIR={run}", f"NETSPECTRA_DATA_DIR={data}")
    attach_count_detach(veth, [*argv, sensor, "attach", veth.dev_b, "--json", "--epoch", "30s"], run)


def test_missing_bcc_is_one_line_naming_the_package(fresh_venv, veth, dirs):
    run, data = dirs
    # hide the distribution's Python modules (bcc among them) in a private mount namespace
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         "mount -t tmpfs none /usr/lib/python3/dist-packages && "
         f"exec ip netns exec {veth.ns_b} env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NETSPECTRA_RUN_DIR={run} "
         f"NETSPECTRA_DATA_DIR={data} {fresh_venv}/bin/netspectra-sensor attach {veth.dev_b}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(r, "python3-bpfcc", "python3-bcc")
