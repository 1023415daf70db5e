"""Notifiers (Alertmanager API v2, generic webhook, SMTP e-mail) and the
Dispatcher that runs them, each on a worker thread of its own.

The epoch loop only calls Dispatcher.submit(), which enqueues on every
notifier's own bounded queue without ever blocking, so one slow or dead
receiver never delays another.  A worker sends each batch to its notifier
within a total deadline per attempt (`timeout`: connect, send and answer
together; a peer that trickles a byte a second is cut off when it passes),
retrying with exponential backoff (backoff, 2 x backoff, ...) up to `retries`
times.  Every batch not delivered (given up, dropped because the queue was
full, or still queued at shutdown) is counted once (on_failure(notifier name),
the netspectra_notifications_failed_total metric) and logged in one line.
Nothing here is ever fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import http.client
import json
import queue
import smtplib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

from ..configkit import fmt_time
from ..logline import say
from .engine import Event
from .rules import NotifierSpec

SIGNATURE_HEADER = "X-Netspectra-Signature"
QUEUE_SIZE = 1000  # batches, per notifier
MAX_ANSWER = 64 << 10  # of a receiver's answer body we read (and ignore)


def iso(t: float) -> str:
    """RFC 3339 UTC time, as Alertmanager expects."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(body: bytes, secret: str) -> str:
    """The signature header value: sha256=<hex HMAC-SHA256 of body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class NotifyError(Exception):
    pass


class Deadline:
    """A total time limit for one attempt.  A socket timeout bounds each read,
    not the whole exchange: a peer trickling one byte a second never trips it.
    So when the deadline passes, a timer shuts down every socket the attempt
    watches, which ends whatever read or write is blocked on it at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.001, self.at - time.monotonic())

    def watch(self, sock) -> None:
        with self._lock:
            self._socks.append(sock)
            if not self.expired:
                return
        self.expire()

    def expire(self) -> None:
        """Cut the attempt off now (the timer; also Dispatcher.close)."""
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


class Notifier:
    """Sends a batch of events; raises on failure (the dispatcher retries)."""

    def __init__(self, spec: NotifierSpec):
        self.spec = spec
        self.name = spec.name

    def send(self, events: Sequence[Event], deadline: Deadline | None = None) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def _attempt(self, deadline: Deadline | None, peer: str, errors, detail=lambda e: e):
        """One attempt within `deadline` (a new one of spec.timeout when None,
        cancelled after): any of `errors` becomes one NotifyError naming `peer`."""
        own = deadline is None
        dl = Deadline(self.spec.timeout) if own else deadline
        try:
            yield dl
        except errors as e:
            if dl.expired:
                raise NotifyError(f"{peer}: no answer within the {dl.seconds:g}s deadline") from None
            raise NotifyError(f"{peer}: {detail(e)}") from None
        finally:
            if own:
                dl.cancel()

    def _post(self, url: str, body: bytes, headers: dict[str, str], deadline: Deadline | None = None) -> None:
        u = urlsplit(url)
        errors = (OSError, http.client.HTTPException)
        with self._attempt(
            deadline, url, errors, lambda e: getattr(e, "strerror", None) or e or type(e).__name__
        ) as dl:
            if u.scheme == "https":
                conn = http.client.HTTPSConnection(
                    u.hostname, u.port, timeout=dl.remaining(), context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=dl.remaining())
            try:
                conn.connect()
                dl.watch(conn.sock)
                path = (u.path or "/") + (f"?{u.query}" if u.query else "")
                conn.request("POST", path, body, {"Content-Type": "application/json"} | headers)
                resp = conn.getresponse()
                resp.read(MAX_ANSWER)  # the status is all we need; a huge answer is not read
            finally:
                conn.close()
            if dl.expired:  # a read cut short by the deadline returns what it had
                raise TimeoutError
        if resp.status >= 300:
            raise NotifyError(f"{url}: HTTP {resp.status}")


class AlertmanagerNotifier(Notifier):
    """POST /api/v2/alerts.  A firing alert's endsAt is `expire_s` ahead (the
    sensor re-sends it every repeat_interval, so set expire_s above that);
    a resolved one's is when it resolved."""

    def __init__(self, spec: NotifierSpec, expire_s: float = 900.0, clock: Callable[[], float] = time.time):
        super().__init__(spec)
        self.url = spec.url.rstrip("/") + "/api/v2/alerts"
        self.expire_s = expire_s
        self.clock = clock

    def payload(self, events: Sequence[Event]) -> list[dict]:
        now = self.clock()
        return [
            {
                "labels": {k: v for k, v in ev.labels.items() if v != ""},
                "annotations": {
                    "summary": ev.summary,
                    "description": ev.description,
                    "value": f"{ev.value:g}",
                    "threshold": f"{ev.threshold:g}",
                },
                "startsAt": iso(ev.starts_at),
                "endsAt": iso(ev.ends_at if ev.ends_at is not None else now + self.expire_s),
                "generatorURL": self.spec.generator_url,
            }
            for ev in events
        ]

    def send(self, events: Sequence[Event], deadline: Deadline | None = None) -> None:
        self._post(self.url, json.dumps(self.payload(events)).encode(), {}, deadline)


class WebhookNotifier(Notifier):
    """POST {"status": firing|resolved, "alerts": [...]} (one request per
    status), signed with HMAC-SHA256 in X-Netspectra-Signature if a secret is set."""

    def bodies(self, events: Sequence[Event]) -> list[bytes]:
        out = []
        for status in ("firing", "resolved"):
            batch = [ev.to_json() for ev in events if ev.status == status]
            if batch:
                out.append(json.dumps({"status": status, "alerts": batch}, separators=(",", ":")).encode())
        return out

    def send(self, events: Sequence[Event], deadline: Deadline | None = None) -> None:
        for body in self.bodies(events):
            headers = {SIGNATURE_HEADER: sign(body, self.spec.secret)} if self.spec.secret else {}
            self._post(self.spec.url, body, headers, deadline)


class EmailNotifier(Notifier):
    """One e-mail per batch: multipart/alternative, plain text and HTML."""

    def message(self, events: Sequence[Event]) -> EmailMessage:
        firing = [e for e in events if e.status == "firing"]
        resolved = [e for e in events if e.status == "resolved"]
        parts = []
        if firing:
            parts.append(f"{len(firing)} firing")
        if resolved:
            parts.append(f"{len(resolved)} resolved")
        first = events[0]
        subject = f"[netspectra] {', '.join(parts)}: {first.rule} on {first.labels.get('sensor', '')}"
        lines, rows = [], []
        for ev in events:
            when = f"since {fmt_time(ev.starts_at)}" + (
                f", ended {fmt_time(ev.ends_at)}" if ev.ends_at is not None else ""
            )
            lines.append(f"[{ev.status.upper()}] {ev.labels['severity']} {ev.rule}: {ev.summary} ({when})")
            lines.append(f"    {ev.description}")
            lines.append("    " + " ".join(f"{k}={v}" for k, v in ev.labels.items() if v != ""))
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(x))}</td>"
                    for x in (ev.status, ev.labels["severity"], ev.alertname, ev.key, ev.summary, when)
                )
                + "</tr>"
            )
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.spec.sender
        msg["To"] = ", ".join(self.spec.to)
        msg.set_content("\n".join(lines) + "\n")
        head = "".join(f"<th>{h}</th>" for h in ("status", "severity", "alert", "key", "summary", "time (UTC)"))
        msg.add_alternative(
            f'<html><body><h3>{html.escape(subject)}</h3><table border="1"><tr>{head}</tr>'
            f"{''.join(rows)}</table></body></html>\n",
            subtype="html",
        )
        return msg

    def send(self, events: Sequence[Event], deadline: Deadline | None = None) -> None:
        s = self.spec
        with self._attempt(deadline, f"smtp {s.host}:{s.port}", (smtplib.SMTPException, OSError)) as dl:
            with smtplib.SMTP(s.host, s.port, timeout=dl.remaining()) as smtp:
                dl.watch(smtp.sock)
                if s.starttls:
                    smtp.starttls()
                if s.username:
                    smtp.login(s.username, s.password)
                smtp.send_message(self.message(events))


def make_notifier(spec: NotifierSpec, repeat_interval: float = 300.0) -> Notifier:
    if spec.kind == "alertmanager":
        return AlertmanagerNotifier(spec, expire_s=3 * repeat_interval)
    if spec.kind == "webhook":
        return WebhookNotifier(spec)
    return EmailNotifier(spec)


class _Worker:
    """One notifier's bounded queue and thread."""

    def __init__(self, d: Dispatcher, n: Notifier, queue_size: int):
        self.d = d
        self.n = n
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.current: Deadline | None = None  # the attempt in flight, for close()
        self.thread = threading.Thread(target=self.run, name=f"netspectra-notify-{n.name}", daemon=True)

    def run(self) -> None:
        while True:
            batch = self.queue.get()
            try:
                if batch is None:
                    return
                if self.d._closed.is_set():
                    self.d._fail(self.n, "dropped at shutdown (1 batch)")
                else:
                    self.deliver(batch)
            finally:
                self.queue.task_done()

    def deliver(self, batch) -> None:
        n, d = self.n, self.d
        delay = n.spec.backoff
        for attempt in range(n.spec.retries + 1):
            dl = self.current = Deadline(n.spec.timeout)
            if d._closed.is_set():
                dl.expire()
            try:
                n.send(batch, dl)
            except Exception as e:  # a notifier bug must not kill the thread either
                why = str(e) or type(e).__name__
                if attempt == n.spec.retries or d._stop.is_set():
                    d._fail(n, f"giving up after {attempt + 1} attempts: {why}")
                    return
                d._sleep(delay)
                delay *= 2
            else:
                with d._lock:
                    d.sent[n.name] = d.sent.get(n.name, 0) + 1
                return
            finally:
                dl.cancel()
                self.current = None


class Dispatcher:
    """Runs each notifier on a daemon thread of its own fed by its own bounded queue."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        on_failure: Callable[[str], None] | None = None,
        queue_size: int = QUEUE_SIZE,
        sleep: Callable[[float], None] | None = None,
        log=sys.stderr,
    ):
        self.notifiers = list(notifiers)
        self.on_failure = on_failure
        self.failures: dict[str, int] = {n.name: 0 for n in self.notifiers}
        self.sent: dict[str, int] = {n.name: 0 for n in self.notifiers}
        self._workers = [_Worker(self, n, queue_size) for n in self.notifiers]
        self._stop = threading.Event()  # no more retries
        self._closed = threading.Event()  # no more sends: what is queued is dropped
        self._sleep = sleep or self._stop.wait
        self._log = log
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> Dispatcher:
        if not self._started:
            self._started = True
            for w in self._workers:
                w.thread.start()
        return self

    def submit(self, events: Sequence[Event]) -> None:
        """Enqueue events for every notifier; never blocks."""
        if not events:
            return
        batch = tuple(events)
        for w in self._workers:
            try:
                w.queue.put_nowait(batch)
            except queue.Full:
                self._fail(w.n, "queue full, 1 batch dropped")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers: what is queued gets one attempt each until
        `timeout`; then the attempts in flight are cut off and every batch
        still queued is dropped, counted and logged."""
        if not self._started:
            return
        self._started = False
        self._stop.set()
        end = time.monotonic() + timeout
        for w in self._workers:
            try:
                w.queue.put_nowait(None)
            except queue.Full:
                pass
        for w in self._workers:
            w.thread.join(max(0.0, end - time.monotonic()))
        self._closed.set()
        for w in self._workers:
            dropped = 0
            while True:
                try:
                    batch = w.queue.get_nowait()
                except queue.Empty:
                    break
                w.queue.task_done()
                dropped += batch is not None
            w.queue.put_nowait(None)  # the worker's stop, if a full queue kept it out
            if w.current is not None:
                w.current.expire()
            if dropped:
                self._fail(w.n, f"dropped at shutdown ({dropped} batches)", dropped)
        for w in self._workers:
            w.thread.join(0.5)

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every queue is drained (tests); True if they were."""
        deadline = time.monotonic() + timeout
        while any(w.queue.unfinished_tasks for w in self._workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not any(w.queue.unfinished_tasks for w in self._workers)

    def _fail(self, n: Notifier, why: str, batches: int = 1) -> None:
        with self._lock:
            self.failures[n.name] = self.failures.get(n.name, 0) + batches
        if self._log is not None:
            say(self._log, f"netspectra: notifier {n.name}: {why}")  # submit() runs in the epoch loop
        if self.on_failure is not None:
            for _ in range(batches):
                self.on_failure(n.name)
