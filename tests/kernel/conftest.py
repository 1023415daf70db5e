"""Kernel fixtures: the real XDP program, compiled and loaded with bcc."""

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
