"""Shared fixtures.  Tests marked `root` need root (bpf(2), network namespaces);
CI runs as root and runs them all.  Without root they are skipped with a reason."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (bpf, netns); CI runs it as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
