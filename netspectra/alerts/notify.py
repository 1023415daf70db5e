"""Notifiers (Alertmanager API v2, generic webhook, SMTP e-mail) and the
Dispatcher that runs them on a background thread.

The epoch loop only calls Dispatcher.submit(), which enqueues without ever
blocking; a full queue counts a failure.  The worker thread sends each batch
to its notifier, retrying with exponential backoff (backoff, 2 x backoff, ...)
up to `retries` times, then counts a failure (on_failure(notifier name), the
netspectra_notifications_failed_total metric).  Nothing here is ever fatal.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import queue
import smtplib
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage

from ..configkit import fmt_time
from .engine import Event
from .rules import NotifierSpec

SIGNATURE_HEADER = "X-Netspectra-Signature"
QUEUE_SIZE = 1000


def iso(t: float) -> str:
    """RFC 3339 UTC time, as Alertmanager expects."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(body: bytes, secret: str) -> str:
    """The signature header value: sha256=<hex HMAC-SHA256 of body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class NotifyError(Exception):
    pass


class Notifier:
    """Sends a batch of events; raises on failure (the dispatcher retries)."""

    def __init__(self, spec: NotifierSpec):
        self.spec = spec
        self.name = spec.name

    def send(self, events: Sequence[Event]) -> None:
        raise NotImplementedError

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"} | headers
        )
        try:
            with urllib.request.urlopen(req, timeout=self.spec.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            raise NotifyError(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise NotifyError(f"{url}: {getattr(e, 'reason', e)}") from None


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

    def send(self, events: Sequence[Event]) -> None:
        self._post(self.url, json.dumps(self.payload(events)).encode(), {})


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

    def send(self, events: Sequence[Event]) -> None:
        for body in self.bodies(events):
            headers = {SIGNATURE_HEADER: sign(body, self.spec.secret)} if self.spec.secret else {}
            self._post(self.spec.url, body, headers)


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

    def send(self, events: Sequence[Event]) -> None:
        s = self.spec
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls()
                if s.username:
                    smtp.login(s.username, s.password)
                smtp.send_message(self.message(events))
        except (smtplib.SMTPException, OSError) as e:
            raise NotifyError(f"smtp {s.host}:{s.port}: {e}") from None


def make_notifier(spec: NotifierSpec, repeat_interval: float = 300.0) -> Notifier:
    if spec.kind == "alertmanager":
        return AlertmanagerNotifier(spec, expire_s=3 * repeat_interval)
    if spec.kind == "webhook":
        return WebhookNotifier(spec)
    return EmailNotifier(spec)


class Dispatcher:
    """Runs notifiers on one daemon thread fed by a bounded queue."""

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
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._log = log
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> Dispatcher:
        if self.notifiers and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="netspectra-notify", daemon=True)
            self._thread.start()
        return self

    def submit(self, events: Sequence[Event]) -> None:
        """Enqueue events for every notifier; never blocks."""
        if not events:
            return
        batch = tuple(events)
        for n in self.notifiers:
            try:
                self._queue.put_nowait((n, batch))
            except queue.Full:
                self._fail(n, "queue full, events dropped")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (pending retries are abandoned after `timeout`)."""
        if self._thread is None:
            return
        try:
            self._queue.put((None, ()), timeout=timeout)
        except queue.Full:
            pass
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is drained (tests); True if it was."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _fail(self, n: Notifier, why: str) -> None:
        with self._lock:
            self.failures[n.name] = self.failures.get(n.name, 0) + 1
        if self._log is not None:
            print(f"netspectra: notifier {n.name}: {why}", file=self._log, flush=True)
        if self.on_failure is not None:
            self.on_failure(n.name)

    def _run(self) -> None:
        while True:
            n, batch = self._queue.get()
            try:
                if n is None:
                    return
                self._deliver(n, batch)
            finally:
                self._queue.task_done()

    def _deliver(self, n: Notifier, batch) -> None:
        delay = n.spec.backoff
        for attempt in range(n.spec.retries + 1):
            try:
                n.send(batch)
            except Exception as e:  # a notifier bug must not kill the thread either
                why = str(e) or type(e).__name__
                if attempt == n.spec.retries or self._stop.is_set():
                    self._fail(n, f"giving up after {attempt + 1} attempts: {why}")
                    return
                self._sleep(delay)
                delay *= 2
            else:
                with self._lock:
                    self.sent[n.name] = self.sent.get(n.name, 0) + 1
                return
