"""What every config section is read with: value parsers, ${VAR} expansion,
the checks that name the dotted key, and the Invalid exception.

Each section lives with the package it configures (alerts/rules.py,
api/settings.py, store/config.py) and imports this kit, never netspectra.config,
which composes the sections into one Config; so nothing imports back up.
Imports nothing from netspectra.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import reprlib
import stat
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

__all__ = [
    "ID_RE",
    "NAME_RE",
    "Invalid",
    "Reader",
    "fmt_bytes",
    "fmt_duration",
    "parse_address",
    "parse_duration",
    "parse_size",
    "excerpt",
    "file_kind",
    "show",
    "typename",
]


class Invalid(Exception):
    """A value that is wrong at a dotted path ("" = the whole file); the
    composer prefixes the file name and raises config.ConfigError."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{path}: {why}" if path else why)


NAME_RE = re.compile(r"[a-z0-9_]+")  # task, rule and notifier names
ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # sensor ids


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 60, 60, 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 4


def show(value) -> str:
    """A value as quoted in messages: strings in quotes, the rest as is, and
    never more than a short excerpt (a value may be a megabyte or an alias
    bomb: the line must stay one short line)."""
    if isinstance(value, (str, list, dict, tuple)):
        return _SHORT.repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"  # str() of a huge int is slow, then refused
    return excerpt(str(value), 60)


def excerpt(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying so."""
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} characters)"


def file_kind(mode: int) -> str:
    """What a stat() mode is when it is not a regular file ("" when it is): the
    name error lines give a FIFO, a device or a directory."""
    if stat.S_ISREG(mode):
        return ""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def typename(value) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    names.update({int: "an integer", float: "a number"})
    return names.get(type(value), f"a {type(value).__name__}")


# --- scalar parsers (also for the CLI) ---------------------------------------

_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(ns|us|µs|ms|s|m|h|d)"
_DURATION_PART = re.compile(rf"({_NUM})\s*{_UNIT}")
_DURATION_RE = re.compile(rf"(?:{_NUM}\s*{_UNIT}\s*)+")


# Beyond this no timer, socket timeout or timestamp works (1e30 s overflows
# them when used, long after the config was accepted).
DURATION_MAX_S = 100 * 365 * 86400


def parse_duration(value) -> float:
    """Seconds from "5s", "100ms", "1m", "1h", "2d", "1m30s", "2.5s" or a plain
    number of seconds (int, float or numeric string).  Raises ValueError."""
    bad = f"{value!r} is not a duration (use e.g. 5s, 100ms)"
    if isinstance(value, bool):
        raise ValueError(bad)
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            secs = float(Decimal(text))
        except InvalidOperation:
            if not text or not _DURATION_RE.fullmatch(text):
                raise ValueError(bad) from None
            secs = float(sum(Decimal(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text)))
    else:
        raise ValueError(bad)
    if not math.isfinite(secs) or secs < 0:
        raise ValueError(bad)
    if secs > DURATION_MAX_S:
        raise ValueError(f"{show(value)} is longer than 100 years (no duration here can be)")
    return secs


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE_RE = re.compile(rf"({_NUM})\s*([a-zA-Z]*)")


def parse_time(text: str, now: float) -> float:
    """A point in time, as Unix seconds: a duration before `now` ("2h",
    "1d12h"), "now", an ISO 8601 time ("2026-12-01T10:00Z", "2026-12-01
    10:00:00+01:00"; no zone: UTC) or a date ("2026-12-01": its midnight UTC).
    ValueError naming what was given otherwise."""
    import datetime as dt

    t = text.strip()
    if t == "now":
        return now
    if t and (t[0].isdigit() or t[0] == ".") and not re.match(r"\d{4}-\d\d-\d\d", t):
        try:
            return now - parse_duration(t)
        except ValueError:
            raise ValueError(f"{show(text)} is not a time (e.g. 2h for two hours ago, or 2026-12-01T10:00Z)") from None
    try:
        when = dt.datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise ValueError(f"{show(text)} is not a time (e.g. 2h for two hours ago, or 2026-12-01T10:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def fmt_time(t: float, local: bool = False, ms: bool = False, date: bool = True) -> str:
    """Unix seconds as people read them and parse_time() reads them back,
    always with the zone (the one helper of every time shown, so they stay
    alike): UTC as 2026-12-01T10:00:00Z, or, with `local`, the host's time
    with its offset, 2026-12-01T11:00:00+01:00.  `ms`: with milliseconds;
    `date=False`: the time of day only (11:00:00.250+01:00), for tables whose
    rows are all of one day or so."""
    import datetime as dt

    when = dt.datetime.fromtimestamp(t, dt.UTC)
    if local:
        when = when.astimezone()
    text = when.isoformat(timespec="milliseconds" if ms else "seconds")
    if text.endswith("+00:00") and not local:
        text = text[:-6] + "Z"
    return text if date else text.split("T", 1)[1]


def without_password(url: str) -> str:
    """A URL for messages: its user:password@ left out."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{slash}{path}"


READABLE_FILE_MAX = 4 << 20  # certificates, keys and .creds files are a few KB


def readable_file(value, path: str, what: str = "") -> str:
    """A path the program reads later, read now: a wrong path is a config error."""
    if not isinstance(value, str):
        raise Invalid(path, f"{show(value)} is not a file path" + (f" ({what})" if what else ""))
    name = excerpt(value, 120)
    try:
        # O_NONBLOCK: a FIFO without a writer would block; /dev/zero would never end
        fd = os.open(value, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Invalid(path, f"cannot read {name}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if file_kind(st.st_mode) or st.st_size > READABLE_FILE_MAX:
        os.close(fd)
        if file_kind(st.st_mode):
            raise Invalid(path, f"cannot read {name}: {file_kind(st.st_mode)}, not a regular file")
        raise Invalid(path, f"cannot read {name}: {fmt_bytes(st.st_size)}, more than {fmt_bytes(READABLE_FILE_MAX)}")
    with os.fdopen(fd, "rb") as f:
        try:
            f.read(READABLE_FILE_MAX)
        except OSError as e:
            raise Invalid(path, f"cannot read {name}: {e.strerror or e}") from None
    return value


SIZE_MAX = 1 << 60


def parse_size(value) -> int:
    """Bytes from an int or "512MiB", "1GiB", "2GB", "4096".  Raises ValueError."""
    bad = f"{show(value)} is not a size in bytes (use e.g. 512MiB, 1GiB)"
    if isinstance(value, bool):
        raise ValueError(bad)
    if isinstance(value, int):
        n = value
        if n > SIZE_MAX:
            raise ValueError(f"{show(value)} is more than 1 EiB")
    elif isinstance(value, str):
        m = _SIZE_RE.fullmatch(value.strip())
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(bad)
        n = Decimal(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        if n != n.to_integral_value():
            raise ValueError(bad)
        if n > SIZE_MAX:  # before int(): 1e100000000 would be a 40 MB integer
            raise ValueError(f"{show(value)} is more than 1 EiB")
        n = int(n)
    else:
        raise ValueError(bad)
    if n <= 0:
        raise ValueError(f"{show(value)} must be more than 0 bytes")
    return n


def parse_address(value) -> tuple[str, int]:
    """(host, port) from "host:port" or "[v6]:port"; port 1..65535.  Raises ValueError."""
    bad = f"{show(value)} is not host:port (e.g. 127.0.0.1:9781, [::1]:9781, 0.0.0.0:9781)"
    if not isinstance(value, str):
        raise ValueError(bad)
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise ValueError(bad)
    elif ":" in host:
        raise ValueError(bad)
    if not sep or not host or not port.isascii() or not port.isdigit() or any(c.isspace() for c in host):
        raise ValueError(bad)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{show(value)}: port {int(port)} is out of range 1..65535")
    return host, int(port)


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_duration(secs: float) -> str:
    """A duration parse_duration() reads back: the largest whole unit, 100ms, 5s, 2d."""
    if secs < 1:
        return f"{secs * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0:
            return f"{secs / size:g}{unit}"
    return f"{secs:g}s"


# --- reading a section -----------------------------------------------------------

_VAR_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _join(path: str, key) -> str:
    key = excerpt(str(key), 60)  # an unknown key may be any length
    return f"{path}.{key}" if path else key


class Reader:
    """The checks sections read their values with: each expands ${VAR} from
    `env` first and raises Invalid naming the path."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def expand(self, value, path: str):
        if not isinstance(value, str) or "$" not in value:
            return value

        def sub(m: re.Match) -> str:
            if m.group(0) == "$${":
                return "${"
            body = m.group(1)
            if body is None:
                raise Invalid(path, "unterminated ${ (write $${ for a literal ${)")
            name, sep, default = body.partition(":-")
            if not _VAR_NAME.fullmatch(name):
                raise Invalid(path, f"bad variable reference ${{{body}}} (use ${{VAR}} or ${{VAR:-default}})")
            got = self.env.get(name)
            if sep:
                return got if got else default
            if got is None:
                raise Invalid(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
            return got

        return _VAR_RE.sub(sub, value)

    def parsed(self, value, path: str, parse):
        """Expand `value`, then parse it with `parse` (which raises ValueError
        with the reason); failures name `path`."""
        try:
            return parse(self.expand(value, path))
        except ValueError as e:
            raise Invalid(path, str(e)) from None

    def mapping(self, value, path: str, allowed: tuple[str, ...], what: str = "a mapping") -> dict:
        """`value` as a dict whose keys are all in `allowed`; None is {}."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise Invalid(path, f"expected {what}, got {typename(value)}")
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "valid: " + ", ".join(allowed)
                raise Invalid(_join(path, k), f"unknown option ({hint})")
        return value

    def integer(self, value, path: str, lo: int, hi: int | None = None, pow2: bool = False) -> int:
        value = self.expand(value, path)
        if isinstance(value, str):
            try:
                if len(value.strip()) > 40:  # int() of thousands of digits: slow, then a traceback
                    raise ValueError
                value = int(value.strip(), 10)
            except ValueError:
                raise Invalid(path, f"{show(value)} is not an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(path, f"{show(value)} is not an integer")
        if value < lo or (hi is not None and value > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise Invalid(path, f"{show(value)} is out of range {rng}")
        if pow2 and value & (value - 1):
            near = 1 << (value.bit_length() - 1)
            raise Invalid(path, f"{value} is not a power of two (e.g. {near} or {near * 2})")
        return value

    def choice(self, value, path: str, choices: tuple[str, ...]) -> str:
        value = self.expand(value, path)
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise Invalid(path, f"{show(value)} is not one of {', '.join(choices)}{hint}")
        return value
