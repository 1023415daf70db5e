"""The publisher's disk spool: encoded epochs that wait, in order, until NATS
acknowledged them, bounded in records and bytes, and kept across a restart.

One file per record, named by a sequence number (0000000000000042.rec), in
one directory.  Chosen over an append-only file because:
- a record is written to NNN.tmp, fsync'd and renamed: a crash leaves a
  whole record or a .tmp file (removed at open), never half a record;
- removing the oldest record is an unlink, so nothing is ever compacted or
  rewritten, and the spool's size on disk is the sum of what waits;
- damage stays within one record: a file that does not read back (bad magic,
  length or CRC) is deleted and counted, and the next one is sent.
Records are large (kilobytes to megabytes) and come every few seconds, so a
file each costs nothing worth counting.

A file: MAGIC, epoch id length (u16), CRC-32 of id and record (u32), record
length (u64), the epoch id (UTF-8), the record.  A removal is not fsync'd: a
crash may bring a published record back, and it is published again, which
JetStream drops as a duplicate (same message ids) within its window.

One process owns a spool directory (an exclusive flock on its `lock` file);
one thread appends, one peeks and removes.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import threading
import zlib
from collections import deque
from pathlib import Path

MAGIC = b"NSSPOOL1"
_HEADER = struct.Struct("<8sHIQ")  # magic, id length, crc32, record length
_NAME = re.compile(r"(\d{16})\.(rec|tmp)")
MAX_BYTES = 2 << 30  # what the spool may hold on disk, whatever its record bound says


class SpoolError(Exception):
    """The spool directory cannot be used: one line naming it and why."""


def default_dir() -> Path:
    """<data directory>/fleet-spool, next to the default history store."""
    from ..store import default_path

    return default_path().parent / "fleet-spool"


class Spool:
    def __init__(self, path: str | os.PathLike, max_records: int, max_bytes: int = MAX_BYTES):
        self.path = Path(path)
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.dropped = 0  # records refused: the spool was full
        self.damaged = 0  # records that did not read back, deleted
        self._lock = threading.Lock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lockfile = open(self.path / "lock", "a+b")  # held (and locked) while the spool is open
        except OSError as e:
            raise SpoolError(f"fleet spool {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolError(
                f"fleet spool {self.path} is in use by another process (give each sensor its own fleet.spool_dir)"
            ) from None
        self._dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        found = []
        for entry in os.scandir(self.path):
            m = _NAME.fullmatch(entry.name)
            if m is None:
                continue
            if m.group(2) == "tmp":  # a write a crash interrupted: never renamed, never counted
                os.unlink(entry.path)
            else:
                found.append((int(m.group(1)), entry.stat().st_size))
        found.sort()
        self._index: deque[tuple[int, int]] = deque(found)  # (sequence number, file size), oldest first
        self._bytes = sum(size for _, size in found)
        self._next = found[-1][0] + 1 if found else 0

    def __len__(self) -> int:
        return len(self._index)

    @property
    def nbytes(self) -> int:
        """Bytes the waiting records take on disk."""
        return self._bytes

    def _file(self, seq: int, ext: str = "rec") -> Path:
        return self.path / f"{seq:016d}.{ext}"

    def append(self, eid: str, record: bytes) -> bool:
        """Keep `record` durably (fsync'd) after the others; False, and counted
        as dropped, when the spool is full.  OSError when the disk fails."""
        key = eid.encode()
        head = _HEADER.pack(MAGIC, len(key), zlib.crc32(record, zlib.crc32(key)), len(record))
        size = len(head) + len(key) + len(record)
        with self._lock:
            if len(self._index) >= self.max_records or self._bytes + size > self.max_bytes:
                self.dropped += 1
                return False
            seq = self._next
            tmp, final = self._file(seq, "tmp"), self._file(seq)
            try:
                with open(tmp, "wb") as f:
                    f.write(head)
                    f.write(key)
                    f.write(record)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, final)
                os.fsync(self._dirfd)  # the rename itself survives a power cut
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
            self._next += 1
            self._index.append((seq, size))
            self._bytes += size
        return True

    def peek(self) -> tuple[str, bytes] | None:
        """(epoch id, record) of the oldest record, or None when empty.  Records
        that do not read back are deleted and counted as damaged on the way."""
        while True:
            with self._lock:
                if not self._index:
                    return None
                seq = self._index[0][0]
            try:
                data = self._file(seq).read_bytes()
            except FileNotFoundError:
                data = b""
            got = _parse(data)
            if got is not None:
                return got
            with self._lock:
                self.damaged += 1
            self.remove()

    def remove(self) -> None:
        """Forget the oldest record (after it was published)."""
        with self._lock:
            if not self._index:
                return
            seq, size = self._index.popleft()
            self._bytes -= size
        self._file(seq).unlink(missing_ok=True)

    def close(self) -> None:
        """Release the directory (the records stay for the next open)."""
        if not self._lockfile.closed:
            os.close(self._dirfd)
            self._lockfile.close()


def _parse(data: bytes) -> tuple[str, bytes] | None:
    if len(data) < _HEADER.size:
        return None
    magic, klen, crc, rlen = _HEADER.unpack_from(data)
    start = _HEADER.size + klen
    if magic != MAGIC or len(data) != start + rlen:
        return None
    key, record = data[_HEADER.size : start], data[start:]
    if zlib.crc32(record, zlib.crc32(key)) != crc:
        return None
    try:
        return key.decode(), record
    except UnicodeDecodeError:
        return None
