"""The `api:` section of the config: where the query API listens and who may ask.

parse_api() is called by netspectra.config (like alerts.rules.parse_alerts);
every problem is a one-line error naming the dotted key.  docs/api.md is the
reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..configkit import Invalid, Reader, fmt_bytes, parse_address, parse_size, readable_file

DEFAULT_ADDRESS = "127.0.0.1:9782"
DEFAULT_HTTP_ADDRESS = "127.0.0.1:9783"
DEFAULT_KEEP_EPOCHS = 12
KEEP_EPOCHS_MAX = 1000
# Epochs kept for queries, with the indexes queries build over them, stay
# within this (oldest leave first).  bench/history_memory.py: 22.4 MB per epoch
# of 10,000 flows with the default tasks' sketches built, 28.1 MB at 50,000;
# so 1 GiB holds the default 12 epochs with room, and ~38 such epochs at most.
DEFAULT_MAX_MEMORY = 1 << 30
DEFAULT_MAX_STREAMS = 32
MAX_STREAMS_MAX = 1024
TOKEN_MIN = 16

_SECTION_KEYS = ("address", "http_address", "keep_epochs", "max_memory", "max_streams", "token", "tls")
_TLS_KEYS = ("cert", "key", "client_ca")


@dataclass(frozen=True)
class TlsConfig:
    cert: str  # PEM server certificate (chain)
    key: str  # PEM private key
    client_ca: str = ""  # PEM CA bundle: when set, clients must present a certificate it signed (mTLS)


@dataclass(frozen=True)
class ApiConfig:
    address: str = DEFAULT_ADDRESS  # gRPC host:port; "" = off
    http_address: str = DEFAULT_HTTP_ADDRESS  # HTTP/JSON host:port; "" = off
    keep_epochs: int = DEFAULT_KEEP_EPOCHS  # completed epochs kept in memory for queries
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes those epochs (and their query indexes) may hold
    max_streams: int = DEFAULT_MAX_STREAMS  # concurrent StreamEpochs/StreamAlerts calls
    token: str = ""  # bearer token required from clients; "" = none
    tls: TlsConfig | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address or self.http_address)


def host_port(address: str) -> tuple[str, int]:
    """(host, port) of an address the config already validated: "host:port" or
    "[v6]:port" (port 0, any free port, is allowed here for tests)."""
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]"), int(port)


def parse_api(b: Reader, value) -> ApiConfig:
    """The `api` section; `b` reads the values (configkit.Reader)."""
    m = b.mapping(value, "api", _SECTION_KEYS)
    kw = {}
    for name in ("address", "http_address"):
        if name in m:
            raw = b.expand(m[name], f"api.{name}")
            raw = "" if raw is None else raw
            if raw != "":
                b.parsed(raw, f"api.{name}", parse_address)
                raw = raw.strip()
            kw[name] = raw
    if "keep_epochs" in m:
        kw["keep_epochs"] = b.integer(m["keep_epochs"], "api.keep_epochs", 1, KEEP_EPOCHS_MAX)
    if "max_memory" in m:
        kw["max_memory"] = b.parsed(m["max_memory"], "api.max_memory", parse_size)
    if "max_streams" in m:
        kw["max_streams"] = b.integer(m["max_streams"], "api.max_streams", 1, MAX_STREAMS_MAX)
    if m.get("token") not in (None, ""):
        token = b.expand(m["token"], "api.token")
        if not isinstance(token, str) or token != token.strip() or any(c.isspace() for c in token):
            raise Invalid("api.token", "must be a string without spaces")
        if token and len(token) < TOKEN_MIN:
            raise Invalid("api.token", f"too short ({len(token)} characters, at least {TOKEN_MIN})")
        kw["token"] = token
    if m.get("tls") is not None:
        t = b.mapping(m["tls"], "api.tls", _TLS_KEYS)
        files = {}
        for name in _TLS_KEYS:
            path = f"api.tls.{name}"
            if name not in t or t[name] in (None, ""):
                if name != "client_ca":
                    raise Invalid("api.tls", f"missing {name!r} (a PEM file)")
                continue
            files[name] = readable_file(b.expand(t[name], path), path)
        kw["tls"] = TlsConfig(**files)
    return ApiConfig(**kw)


def defaults_yaml_lines() -> list[str]:
    return [
        "# Query API (docs/api.md): gRPC for `netspectra query`, HTTP/JSON for curl",
        "# and dashboards.  Both listen on loopback by default; exposing them on a",
        "# network address calls for a token and TLS.",
        "api:",
        f'  address: "{DEFAULT_ADDRESS}"        # gRPC host:port, "" for none',
        f'  http_address: "{DEFAULT_HTTP_ADDRESS}"   # HTTP/JSON host:port, "" for none',
        f"  keep_epochs: {DEFAULT_KEEP_EPOCHS}                   # completed epochs kept for queries, 1..{KEEP_EPOCHS_MAX}",
        f"  max_memory: {fmt_bytes(DEFAULT_MAX_MEMORY).replace(' ', '').replace('.0', '')}"
        "                 # bound on the kept epochs' memory; the oldest leave first",
        f"  max_streams: {DEFAULT_MAX_STREAMS}                   # concurrent watch streams",
        f'  token: ""                         # bearer token (>= {TOKEN_MIN} chars) required of clients, e.g. ${{NETSPECTRA_TOKEN}}',
        "  # tls: {cert: server.crt, key: server.key, client_ca: ca.crt}   # client_ca: require client certificates",
    ]
