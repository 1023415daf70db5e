"""The store as a sink of a sensor's epochs, and the handle both the sink and
the query API use.

The store opens lazily and again after a failure, so a store that is down
when the sensor starts (a ClickHouse server away, a read-only or full disk)
costs nothing but a message: the sink raises, its Queued worker keeps the
epochs in the spool and retries, and they are written when the store comes
back.  Retention runs from the same worker, every PRUNE_EVERY_S.
"""

from __future__ import annotations

import sys
import threading
import time

from .base import Store, StoreError

PRUNE_EVERY_S = 600.0
REOPEN_EVERY_S = 2.0


class StoreHandle:
    """Opens the store on first use; after a failure, tries again at most
    every REOPEN_EVERY_S (raising the last error in between)."""

    def __init__(self, opener, url: str):
        self._opener = opener
        self.url = url  # for messages, without a password
        self._store: Store | None = None
        self._error: StoreError | None = None
        self._tried = -1e18
        self._lock = threading.Lock()

    def get(self) -> Store:
        with self._lock:
            if self._store is not None:
                return self._store
            if self._error is not None and time.monotonic() - self._tried < REOPEN_EVERY_S:
                raise self._error
            self._tried = time.monotonic()
            try:
                self._store = self._opener()
                self._error = None
            except StoreError as e:
                self._error = e
                raise
            return self._store

    def reset(self) -> None:
        """Forget a store that failed: the next get() opens it again."""
        with self._lock:
            st, self._store = self._store, None
        if st is not None:
            try:
                st.close()
            except Exception:
                pass

    def close(self) -> None:
        self.reset()


class StoreSink:
    """Writes each epoch (idempotently: a retry after a failure mid-write
    cannot count twice) and prunes what retention no longer keeps."""

    name = "store"

    def __init__(self, handle: StoreHandle, clock=time.time, log=sys.stderr):
        self.handle = handle
        self.clock = clock
        self.log = log
        self.results = {"written": 0, "duplicate": 0, "expired": 0}
        self._pruned = -1e18

    def on_epoch(self, snap) -> None:
        self.write(snap)

    def write(self, snap, record: bytes | None = None) -> None:
        """record: snap's codec record when the caller has it (as received)."""
        store = self.handle.get()
        try:
            result = store.write(snap, record)
        except StoreError:
            self.handle.reset()  # reopen next time: the file may have moved, the server restarted
            raise
        self.results[result] += 1
        if result == "expired" and self.results["expired"] == 1:
            print(f"netspectra: store: epoch {snap.seq} is older than the raw retention; not stored", file=self.log)
        now = self.clock()
        if now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            dropped = store.prune(now)
            if any(dropped.values()):
                text = ", ".join(f"{n} {res}" for res, n in dropped.items() if n)
                print(f"netspectra: store: retention dropped {text} records", file=self.log, flush=True)

    def close(self) -> None:
        self.handle.close()
