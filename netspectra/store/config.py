"""The `store:` section of the config: where history goes, how many epochs wait
while the store is away, and how long each resolution is kept.

parse_store() is called by netspectra.config (like api.settings.parse_api);
every problem is a one-line error naming the dotted key.  docs/history.md
describes the history itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..configkit import Invalid, Reader, fmt_duration, parse_duration, show

DEFAULT_SPOOL = 720  # an hour of 5 s epochs
SPOOL_MAX = 100_000
SCHEMES = ("sqlite", "clickhouse", "clickhouses", "chdb")
# (resolution, default retention s, shortest retention s: one interval of it)
RESOLUTIONS = (("raw", 2 * 86400.0, 60.0), ("1m", 30 * 86400.0, 60.0), ("1h", 365 * 86400.0, 3600.0))

_SECTION_KEYS = ("url", "spool", "retention")
_RESOLUTION_NAMES = tuple(r for r, _, _ in RESOLUTIONS)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class StoreConfig:
    # "" = SQLite in the default data directory; "off" = keep none; a path
    # (SQLite file) or a URL with one of SCHEMES
    url: str = ""
    spool: int = DEFAULT_SPOOL  # epochs held in memory while the store is down or slow; then lost
    retention: tuple[tuple[str, float], ...] = tuple((r, s) for r, s, _ in RESOLUTIONS)  # seconds: raw, 1m, 1h

    def retention_s(self, name: str) -> float:
        """Seconds resolution `name` (raw, 1m, 1h) is kept; KeyError otherwise."""
        return dict(self.retention)[name]


def parse_store(b: Reader, value) -> StoreConfig:
    """The `store` section; `b` reads the values (configkit.Reader)."""
    m = b.mapping(value, "store", _SECTION_KEYS)
    kw = {}
    if "url" in m:
        kw["url"] = _url(b.expand(m["url"], "store.url"))
    if "spool" in m:
        kw["spool"] = b.integer(m["spool"], "store.spool", 0, SPOOL_MAX)
    if m.get("retention") is not None:
        given = b.mapping(m["retention"], "store.retention", _RESOLUTION_NAMES)
        kept = []
        for name, default, shortest in RESOLUTIONS:
            path = f"store.retention.{name}"
            raw = b.expand(given.get(name, default), path)
            try:
                secs = parse_duration(raw)
            except ValueError as e:
                raise Invalid(path, str(e)) from None
            if secs < shortest:
                raise Invalid(path, f"{show(raw)} is too short (at least {fmt_duration(shortest)})")
            kept.append((name, secs))
        kw["retention"] = tuple(kept)
    return StoreConfig(**kw)


def _url(url) -> str:
    if url is None:
        return ""
    if url is False:  # YAML reads a bare `off` (or `no`) as false
        return "off"
    if not isinstance(url, str):
        raise Invalid("store.url", f'{show(url)} is not a path or URL ("" for the default, off for none)')
    url = url.strip()
    m = _SCHEME_RE.match(url)
    if m is None:
        return url  # "", "off" or a path
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        accepted = ", ".join(f"{s}://" for s in SCHEMES)
        raise Invalid("store.url", f"unknown scheme {scheme + '://'!r} (accepted: {accepted}, a path, off)")
    if m.end() == len(url):
        raise Invalid("store.url", f"{show(url)} names nothing after {scheme}://")
    return scheme + url[len(scheme) :]


def defaults_yaml_lines() -> list[str]:
    ret = {name: fmt_duration(secs) for name, secs, _ in RESOLUTIONS}
    return [
        "# History (docs/history.md): where epochs are stored and read back.",
        "store:",
        '  # "" = SQLite in the default data directory; off = keep none; a path or',
        "  # sqlite:///abs/path.db; clickhouse://[user:pass@]host[:port]/database",
        "  # (clickhouses:// over TLS); chdb:///abs/dir",
        '  url: ""',
        f"  # Epochs that wait in memory while the store is down or slow (0..{SPOOL_MAX});",
        "  # beyond that they are counted as lost.",
        f"  spool: {DEFAULT_SPOOL}",
        "  retention:       # how long each resolution is kept (at least one interval of it)",
        f"    raw: {ret['raw']}         # every epoch, with its flows",
        f"    1m: {ret['1m']}         # 1-minute rollups",
        f"    1h: {ret['1h']}        # 1-hour rollups",
    ]
