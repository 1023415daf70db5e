"""A small HTTP/1.1 server for the read-only endpoints (the query API's
HTTP/JSON face and /metrics) that slow and hostile clients cannot take down.

Contract:
- One selector thread owns every connection while it is idle or still sending
  its request head.  A head must be complete within `header_timeout` of its
  first byte (or of the connection) and fit in `max_head` bytes; otherwise the
  connection is closed.  A slowloris client therefore holds a file descriptor,
  never a handler slot.
- A complete request goes to one of `workers` handler threads, which calls
  app(Request) -> (status, headers, body) and writes the whole answer in one
  send on a TCP_NODELAY socket (no Nagle / delayed-ACK stall on keep-alive),
  within `write_timeout` in total; the connection then returns to the selector
  (keep-alive, `idle_timeout`) or is closed.
- At most `max_connections` are open; past that, the one whose head has been
  pending longest is closed first.  The listen backlog is `backlog` (the kernel
  caps it at net.core.somaxconn).
- Requests are GET/HEAD-sized: a request that carries a body is answered by
  app (which refuses it) and the connection closed, its body unread.
"""

from __future__ import annotations

import http
import json
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

WORKERS = 16
MAX_CONNECTIONS = 1024
BACKLOG = 1024
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0
WRITE_TIMEOUT = 10.0
MAX_HEAD = 16 << 10


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


App = Callable[[Request], tuple[int, dict[str, str], bytes]]


class _Conn:
    __slots__ = ("sock", "buf", "deadline", "started", "handshaken")

    def __init__(self, sock, deadline: float, handshaken: bool):
        self.sock = sock
        self.buf = bytearray()
        self.deadline = deadline
        self.started = time.monotonic()
        self.handshaken = handshaken


class BadRequest(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


def parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, f"request line: {lines[0][:40]!r} is not METHOD TARGET HTTP/1.x")
    headers = {}
    for ln in lines[1:]:
        name, sep, value = ln.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, f"header: {ln[:40]!r} is not Name: value")
        headers[name.lower()] = value.strip()
    return Request(parts[0], parts[1], parts[2], headers)


def _error_body(why: str, code: str = "INVALID_ARGUMENT") -> bytes:
    return (json.dumps({"error": why, "code": code}, separators=(",", ":")) + "\n").encode()


def _json_error(status: int, why: str) -> bytes:
    """A whole answer, for errors the server finds itself (the connection then closes)."""
    return _response(status, {"Content-Type": "application/json"}, _error_body(why), True)


def _response(status: int, headers: dict[str, str], body: bytes, close: bool, head_only: bool = False) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    lines = [f"HTTP/1.1 {status} {phrase}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head_only else data + body


class Server:
    """serve_forever() in a thread of its own; shutdown() then server_close()."""

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        *,
        ssl_context: ssl.SSLContext | None = None,
        workers: int = WORKERS,
        max_connections: int = MAX_CONNECTIONS,
        backlog: int = BACKLOG,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_head: int = MAX_HEAD,
        name: str = "http",
    ):
        host = address[0]
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.app = app
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_head = max_head
        self._sel = selectors.DefaultSelector()
        self._conns: dict[socket.socket, _Conn] = {}  # those the selector owns
        self._busy = 0  # those a worker owns
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"{name}-worker")
        self._back: queue.SimpleQueue = queue.SimpleQueue()  # connections workers hand back
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._done = threading.Event()

    # --- the selector thread -----------------------------------------------------------

    def serve_forever(self) -> None:
        self._sel.register(self.socket, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stop.is_set():
                for key, _ in self._sel.select(0.25):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._take_back()
                    else:
                        self._read(key.data)
                self._expire()
        finally:
            for c in list(self._conns.values()):
                self._close(c)
            self._done.set()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of fds, say: leave it in the backlog, expiry frees some
                return
            if len(self._conns) + self._busy >= self.max_connections and not self._evict():
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ssl.SSLError):
                    sock.close()
                    continue
            c = _Conn(sock, time.monotonic() + self.header_timeout, self.ssl_context is None)
            self._watch(c)

    def _evict(self) -> bool:
        """Close the connection whose request head has been pending longest."""
        if not self._conns:
            return False
        self._close(min(self._conns.values(), key=lambda c: c.started))
        return True

    def _watch(self, c: _Conn) -> None:
        self._conns[c.sock] = c
        self._sel.register(c.sock, selectors.EVENT_READ, c)

    def _unwatch(self, c: _Conn) -> None:
        self._conns.pop(c.sock, None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, c: _Conn, last: bytes = b"") -> None:
        self._unwatch(c)
        if last:
            try:
                c.sock.send(last)  # best effort, never waits
            except (OSError, ssl.SSLError):
                pass
        try:
            c.sock.close()
        except OSError:
            pass

    def _take_back(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                c = self._back.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1
            if c is None:  # closed by its worker
                continue
            if self._stop.is_set():
                c.sock.close()
                continue
            self._watch(c)
            if isinstance(c.sock, ssl.SSLSocket) and c.sock.pending():
                self._read(c)  # decrypted bytes select() cannot see
            else:
                self._dispatch(c)  # a pipelined request may already be in the buffer

    def _read(self, c: _Conn) -> None:
        try:
            if not c.handshaken:
                c.sock.do_handshake()
                c.handshaken = True
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    return self._close(c)
                if not c.buf:  # the first byte of a head: from now on it has header_timeout
                    c.started = time.monotonic()
                    c.deadline = min(c.deadline, c.started + self.header_timeout)
                c.buf += chunk
                if len(c.buf) > self.max_head:
                    break
                if not isinstance(c.sock, ssl.SSLSocket) or not c.sock.pending():
                    break
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except (OSError, ssl.SSLError):
            return self._close(c)
        self._dispatch(c)

    def _dispatch(self, c: _Conn) -> None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.buf) > self.max_head:
                self._close(c, _json_error(431, f"request: head longer than {self.max_head} bytes"))
            return
        if end > self.max_head:
            return self._close(c, _json_error(431, f"request: head longer than {self.max_head} bytes"))
        head = bytes(c.buf[:end])
        del c.buf[: end + 4]
        try:
            req = parse_head(head)
        except BadRequest as e:
            return self._close(c, _json_error(e.status, str(e)))
        self._unwatch(c)
        self._busy += 1
        self._pool.submit(self._serve, c, req)

    def _expire(self) -> None:
        now = time.monotonic()
        for c in [c for c in self._conns.values() if c.deadline < now]:
            self._close(c, _json_error(408, "request: head not complete in time") if c.buf else b"")

    # --- the handler threads --------------------------------------------------------

    def _serve(self, c: _Conn, req: Request) -> None:
        keep = False
        try:
            conn_hdr = req.headers.get("connection", "").lower()
            keep = "close" not in conn_hdr if req.version == "HTTP/1.1" else "keep-alive" in conn_hdr
            if req.headers.get("transfer-encoding") or req.headers.get("content-length", "0") not in ("", "0"):
                keep = False  # its body is not read
            try:
                status, headers, body = self.app(req)
            except Exception as e:  # a bug: one line, keep serving
                status, headers = 500, {"Content-Type": "application/json"}
                body = _error_body(f"{type(e).__name__}: {e}".splitlines()[0][:200], "INTERNAL")
            keep = keep and not self._stop.is_set()
            data = _response(status, headers, body, not keep, head_only=req.method == "HEAD")
            if not self._send(c.sock, data):
                keep = False
        except Exception:
            keep = False
        if keep:
            c.deadline = time.monotonic() + self.idle_timeout
            c.started = time.monotonic()
            self._back.put(c)
        else:
            try:
                c.sock.close()
            except OSError:
                pass
            self._back.put(None)
        try:
            self._wake_w.send(b"x")
        except OSError:  # the pipe is full: the selector is awake anyway
            pass

    def _send(self, sock, data: bytes) -> bool:
        """All of data within write_timeout in total (a per-send timeout would
        let a client that reads a byte at a time hold the thread for ever)."""
        end = time.monotonic() + self.write_timeout
        view = memoryview(data)
        try:
            while view:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                sock.settimeout(left)
                n = sock.send(view)
                view = view[n:]
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            try:
                sock.setblocking(False)
            except OSError:
                pass

    # --- stopping ---------------------------------------------------------------

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._done.wait(5)

    def server_close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for s in (self.socket, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()


def start(server: Server, name: str) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    t.start()
    return t
