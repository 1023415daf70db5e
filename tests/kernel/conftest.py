"""Kernel fixtures: the real XDP program, compiled and loaded with bcc."""

import os

import pytest

from netspectra.config import default_tasks
from netspectra.kernel.program import Program, possible_cpus
from netspectra.tasks import layout


def load(tasks=None, flow_capacity=4096, ringbuf_pages=64):
    """Load the sensor program with `tasks` (default: the default tasks)."""
    ncpus = possible_cpus()
    lay = layout(tuple(default_tasks() if tasks is None else tasks), ncpus)
    return Program(lay, flow_capacity, ringbuf_pages, ncpus)


@pytest.fixture
def program():
    p = load()
    yield p
    p.close()


@pytest.fixture(autouse=True, scope="session")
def _data_dir(tmp_path_factory):
    """Sensors started by tests keep their history (store.url "") here, not in /var/lib/netspectra."""
    os.environ["NETSPECTRA_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))


@pytest.fixture
def veth(tmp_path, monkeypatch):
    """A veth pair in throwaway namespaces, and a run directory of the test's own
    for the sensors it starts (their state files)."""
    from netspectra.netns import VethPair

    monkeypatch.setenv("NETSPECTRA_RUN_DIR", str(tmp_path / "run"))
    with VethPair() as v:
        yield v
