"""chdb for the store tests: ClickHouse in-process, one engine per process.

chdb runs one engine (one directory) per process, so the session opens it
once (tests/conftest.py: chdb_engine) and keeps a client on it; every store a
test opens is another client on the same engine, with a database of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Engine:
    path: Path
    client: object  # a clickhouse-connect client on the engine, kept open for the session

    def url(self, database: str) -> str:
        return f"chdb://{self.path}?database={database}"

    def rows(self, sql: str, **params) -> list[tuple]:
        return self.client.query(sql, parameters=params).result_rows


def open_engine(path: Path) -> Engine:
    import clickhouse_connect

    return Engine(path, clickhouse_connect.get_client(interface="chdb", path=str(path)))
