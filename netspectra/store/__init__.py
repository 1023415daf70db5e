"""History: where epochs are stored and read back (docs/history.md)."""

from __future__ import annotations

import os
from pathlib import Path

from ..configkit import without_password
from .base import RESOLUTIONS, Series, SeriesInfo, Store, StoreError, Totals, choose_resolution

__all__ = ["RESOLUTIONS", "Series", "SeriesInfo", "Store", "StoreError", "Totals", "choose_resolution",
           "default_path", "describe", "open_store"]  # fmt: skip


def default_path() -> Path:
    """Where history goes when store.url is "": $NETSPECTRA_DATA_DIR, else
    /var/lib/netspectra as root, else the user's data directory."""
    d = os.environ.get("NETSPECTRA_DATA_DIR")
    if not d:
        if os.geteuid() == 0:
            d = "/var/lib/netspectra"
        else:
            d = os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "netspectra")
    return Path(d) / "history.db"


def describe(url: str) -> str:
    """What store.url means, for messages (passwords left out)."""
    if url in ("", None):
        return f"sqlite://{default_path()}"
    return without_password(url) if "://" in url else f"sqlite://{Path(url).absolute()}"


def open_store(url: str, retention: dict[str, float], **kw) -> Store:
    """The store behind a store.url ("" = SQLite at default_path()); raises StoreError."""
    if url == "off":
        raise StoreError("history is off (store.url: off)")
    scheme = url.split("://", 1)[0].lower() if "://" in url else "sqlite"
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        path = default_path() if not url else Path(url.split("://", 1)[1] if "://" in url else url)
        return SqliteStore(path, retention, **kw)
    if scheme in ("clickhouse", "clickhouses", "chdb"):
        from .clickhouse import ClickHouseStore

        return ClickHouseStore(url, retention, **kw)
    raise StoreError(f"unknown store scheme {scheme}:// (sqlite://, clickhouse://, clickhouses://, chdb://)")
