"""How an epoch travels over NATS JetStream: subjects, message ids, chunks.

An epoch is its codec record (codec.encode), split into chunks that fit the
server's max payload, each published on

    <prefix>.epochs.<sensor>            (prefix: fleet.subject_prefix, "netspectra.v1")
    <prefix>.partials.<collector>       a shard collector's merged windows (fleet.collector.publish)

with the headers

    Nats-Msg-Id          <epoch id>/<i>     JetStream drops a republished chunk (duplicate window)
    Netspectra-Epoch     <epoch id>         which epoch the chunk belongs to
    Netspectra-Chunk     <i>/<n>            its place, 0-based, and how many there are
    Netspectra-Codec     codec.VERSION      the record's version (a reader refuses newer ones)

An epoch id names an epoch wherever it goes: sensor, interface and start time
(ns), as the stores know it, so a republished or redelivered epoch is the
same epoch everywhere.  A sensor id is one subject token: characters outside
[A-Za-z0-9_-] become "_".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "netspectra.v1"
HEADROOM = 4096  # bytes of a message left for subject and headers
H_MSG_ID, H_EPOCH, H_CHUNK, H_CODEC = "Nats-Msg-Id", "Netspectra-Epoch", "Netspectra-Chunk", "Netspectra-Codec"
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class WireError(ValueError):
    """A message that is not a chunk of an epoch record: one line naming why."""


def token(text: str) -> str:
    return _TOKEN.sub("_", text) or "_"


def subject(prefix: str, sensor: str) -> str:
    return f"{prefix}.epochs.{token(sensor)}"


def subjects(prefix: str) -> str:
    """The subjects of every sensor (the stream's, and the collector's filter)."""
    return f"{prefix}.epochs.>"


def partial_subject(prefix: str, collector: str) -> str:
    """Where a shard collector publishes its merged windows (partials)."""
    return f"{prefix}.partials.{token(collector)}"


def partials(prefix: str) -> str:
    """The subjects of every shard's partials (the stream's, and the top collector's filter)."""
    return f"{prefix}.partials.>"


def filters(prefix: str, source: str = "epochs", ids: tuple[str, ...] = ()) -> list[str]:
    """A collector's filter subjects: <prefix>.<source>.<id> for each id (a
    subject token, or * or >), or every subject of the source."""
    return [f"{prefix}.{source}.{i}" for i in ids] or [f"{prefix}.{source}.>"]


def epoch_id(sensor: str, interface: str, start: float) -> str:
    return f"{token(sensor)}.{token(interface)}.{int(round(start * 1e9))}"


def chunks(record: bytes, max_payload: int) -> list[bytes]:
    """The record in pieces of at most max_payload - HEADROOM bytes (at least one)."""
    size = max(1, max_payload - HEADROOM)
    return [record[i : i + size] for i in range(0, len(record), size)] or [b""]


def headers(eid: str, i: int, n: int, codec_version: int) -> dict[str, str]:
    return {H_MSG_ID: f"{eid}/{i}", H_EPOCH: eid, H_CHUNK: f"{i}/{n}", H_CODEC: str(codec_version)}


@dataclass(frozen=True)
class Chunk:
    epoch: str
    index: int
    count: int
    codec: int
    data: bytes


def parse(hdrs: dict | None, data: bytes) -> Chunk:
    """A received message -> Chunk; WireError when its headers are not ours."""
    h = hdrs or {}
    eid, place, ver = h.get(H_EPOCH), h.get(H_CHUNK), h.get(H_CODEC)
    if not eid or not place or not ver:
        raise WireError("not an epoch chunk (no Netspectra-Epoch, -Chunk or -Codec header)")
    try:
        i, n = (int(x) for x in place.split("/"))
        v = int(ver)
    except ValueError:
        raise WireError(f"bad Netspectra-Chunk {place!r} or -Codec {ver!r} header") from None
    if not 0 <= i < n or n > 100_000:
        raise WireError(f"bad Netspectra-Chunk {place!r} header")
    return Chunk(eid, i, n, v, data)


class Reassembly:
    """Chunks in, whole records out: add() returns the record once every chunk
    of its epoch arrived (in any order, duplicates ignored), else None."""

    def __init__(self, max_pending: int = 1024):
        self.max_pending = max_pending
        self._parts: dict[str, dict[int, bytes]] = {}
        self.dropped = 0  # epochs given up: more than max_pending incomplete at once

    def add(self, c: Chunk) -> bytes | None:
        parts = self._parts.setdefault(c.epoch, {})
        parts[c.index] = c.data
        if len(parts) == c.count:
            del self._parts[c.epoch]
            return b"".join(parts[i] for i in range(c.count))
        while len(self._parts) > self.max_pending:
            self._parts.pop(next(iter(self._parts)))
            self.dropped += 1
        return None

    def discard(self, epoch: str) -> None:
        """Forget the chunks of an epoch given up on (the rest never came)."""
        self._parts.pop(epoch, None)

    def pending(self) -> int:
        return len(self._parts)
