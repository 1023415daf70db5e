"""Real slow and hostile peers on loopback: a webhook receiver that counts
what it gets, one that promises a huge answer and trickles it, a port that
refuses, and slowloris clients."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP receiver recording every POST: `got` (time, path, body) and
    `requests` (path, headers, body); answers `codes` in turn (then 200),
    each after `delay` s."""

    def __init__(self, codes=(), delay: float = 0.0):
        self.codes = list(codes)
        self.delay = delay
        self.got: list[tuple[float, str, bytes]] = []
        self.requests: list[tuple[str, dict, bytes]] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.got.append((time.monotonic(), self.path, body))
                rec.requests.append((self.path, dict(self.headers), body))
                time.sleep(rec.delay)
                self.send_response(rec.codes.pop(0) if rec.codes else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Trickler:
    """Reads a request, answers 200 with Content-Length: 100 MB, then sends one
    byte a second, for as long as the client stays."""

    def __init__(self, interval: float = 1.0):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.interval = interval
        self.accepted = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._trickle, args=(c,), daemon=True).start()

    def _trickle(self, c: socket.socket):
        with c:
            try:
                c.recv(65536)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                while not self._stop.wait(self.interval):
                    c.sendall(b"x")
            except OSError:
                return

    def close(self):
        self._stop.set()
        self.sock.close()


def refused_url() -> str:
    """A loopback URL where nothing listens."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class Slowloris:
    """`n` connections that each send the start of a request head and then
    one more header byte now and then, never finishing it."""

    def __init__(self, port: int, n: int = 70):
        self.socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            self.socks.append(s)
        self._stop = threading.Event()
        threading.Thread(target=self._drip, daemon=True).start()

    def _drip(self):
        while not self._stop.wait(0.5):
            for s in self.socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass

    def open(self) -> int:
        """How many the server has not closed yet."""
        n = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                n += s.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
            s.setblocking(True)
        return n

    def close(self):
        self._stop.set()
        for s in self.socks:
            s.close()


def listen_backlog(port: int) -> int:
    """The listen backlog of the TCP socket listening on `port` (ss's Send-Q)."""
    import subprocess

    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])
