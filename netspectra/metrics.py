"""Prometheus metrics of a live sensor, computed at scrape time.

SensorCollector is a client_python custom collector: the agent thread hands it
each EpochSnapshot with observe(); an HTTP thread calls collect() on a scrape,
which builds fresh metric families from that state.  Nothing is registered in
the global REGISTRY (tests and the sensor each use their own CollectorRegistry).

Resources stay bounded whatever the traffic (DESIGN contract 5): cumulative
counters are a fixed array of plain ints, and per-key series (heavy hitters,
spreaders) are the top-K of the last epoch only, so a key that leaves the
top-K leaves the exposition at the next scrape.  docs/metrics.md lists every
metric.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import abi
from .snapshot import EpochSnapshot, key_json
from .tasks import COUNTMIN, SUPERSPREAD, Layout

# Label values of netspectra_packets_total{proto}: the kernel's protocol slots,
# plus non_ip (frames that did not parse as IPv4/IPv6, so have no protocol slot).
PROTO_LABELS = tuple(name.removeprefix("proto_") for name in abi.PROTO_CLASSES) + ("non_ip",)
OUTCOME_LABELS = tuple(name.removeprefix("out_") for name in abi.OUTCOMES)
EVENTS = ("frag_first", "frag_later", "l4_trunc", "ipv6_ext_trunc", "ipv6_ext_limit", "ipv4_options")
_PROTO_ROWS = [abi.C[n] for n in abi.PROTO_CLASSES]
_OUTCOME_ROWS = [abi.C[n] for n in abi.OUTCOMES]
_EVENT_ROWS = [abi.C[n] for n in EVENTS]


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("netspectra")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def key_label(k, layout: Layout, task: str) -> str:
    """'src_ip=10.0.0.1 dst_port=80': the task's key fields, in its order (for people)."""
    return " ".join(f"{name}={value}" for name, value in key_labels(k, layout, task).items())


def key_labels(k, layout: Layout, task: str) -> dict[str, str]:
    """The task's key fields as Prometheus labels, named as the query API's Key
    message names them: {"src_ip": "10.0.0.1", "dst_port": "80"}.  Only the
    task's fields, so a series never carries a field the task does not count."""
    return {name: str(value) for name, value in key_json(k, layout, task).items()}


@dataclass(frozen=True)
class _Epoch:
    """What the last epoch contributes to a scrape: gauges only, top-K bounded."""

    flows: int
    table_fill: float
    exact: bool
    duration: float
    processing: float
    end: float
    error_bounds: tuple[tuple[str, float, float], ...]  # (task, packets, bytes)
    heavy: dict[str, tuple[int, list[tuple[dict, int, int]]]] = field(default_factory=dict)  # task -> (n, top)
    spreaders: dict[str, tuple[int, list[tuple[dict, float]]]] = field(default_factory=dict)


class SensorCollector(Collector):
    """Metrics of one sensor on one interface.  observe() from the agent
    thread, collect() from any thread (a lock guards the swap of state)."""

    def __init__(
        self,
        interface: str,
        layout: Layout,
        top: int,
        flow_capacity: int,
        kernel_memory: dict[str, int] | None = None,
        sensor: str = "",
    ):
        self.interface = interface
        self.sensor = sensor  # sensor.id: alert rules join it from build_info to match the sensor's own alerts
        # the `interface` of what the whole process shares (query API, fleet, view):
        # this interface, or all of them ("eth0+eth1") when one process has several
        self.process_interface = interface
        self.layout = layout
        self.top = top
        self.flow_capacity = flow_capacity
        self.kernel_memory = dict(kernel_memory or {})
        self.version = version()
        self._lock = threading.Lock()
        self._totals = [[0, 0] for _ in range(abi.NCOUNTERS)]  # cumulative, plain ints (no uint64 wrap)
        self._epochs = 0
        self._last: _Epoch | None = None
        self._cm_tasks = [t.spec.name for t in layout.kind(COUNTMIN)]
        self._ss_tasks = [t.spec.name for t in layout.kind(SUPERSPREAD)]
        self._fired: dict[str, int] = {}  # rule -> alerts that started firing
        self._failed: dict[str, int] = {}  # notifier -> notifications given up
        self._active: dict[tuple[str, str], int] = {}  # (rule, severity) -> alerts firing now
        self._api = None  # (ApiStats, open_streams, [(interface, History)]) once the query API serves
        self._sinks: list = []  # sinks.Queued whose counters are exported
        self._publisher = None  # fleet.publisher.Publisher, when the sensor publishes

    # ------------------------------------------------------------ alerts side

    def alerting(self, rules=(), notifiers=()) -> None:
        """Declare the alert rules ((name, severity) pairs) and notifier names,
        so their series exist (at 0) before anything fires or fails."""
        with self._lock:
            for name, severity in rules:
                self._fired.setdefault(name, 0)
                self._active.setdefault((name, severity), 0)
            for name in notifiers:
                self._failed.setdefault(name, 0)

    def observe_alerts(self, events, active) -> None:
        """Fold in one epoch's alert events and the alerts firing after it
        (alerts.engine.Event lists)."""
        counts: dict[tuple[str, str], int] = {}
        for ev in active:
            k = (ev.labels["rule"], ev.labels["severity"])
            counts[k] = counts.get(k, 0) + 1
        with self._lock:
            for ev in events:
                if ev.status == "firing" and not ev.repeat:
                    self._fired[ev.rule] = self._fired.get(ev.rule, 0) + 1
            self._active = {k: 0 for k in self._active} | counts

    def notification_failed(self, notifier: str) -> None:
        """Count a notification given up (any thread)."""
        with self._lock:
            self._failed[notifier] = self._failed.get(notifier, 0) + 1

    def serving_api(self, stats, open_streams, kept=()) -> None:
        """Export the query API's counters: stats an api.stats.ApiStats,
        open_streams() the number of streams open now, kept the
        (interface, api.history.History) pairs whose memory is shown."""
        self._api = (stats, open_streams, list(kept))

    def watching_sinks(self, queued: list, shared=()) -> None:
        """Export the delivery counters of the sensor's queued sinks (sinks.Queued)
        of this interface, and of the `shared` ones of the whole process."""
        self._sinks = [(self.interface, q) for q in queued] + [(self.process_interface, q) for q in shared]

    def watching_publisher(self, publisher) -> None:
        """Export the fleet publisher's counters (its disk spool, NATS)."""
        self._publisher = publisher

    def _collect_publisher(self):
        ifc = self.process_interface
        st = self._publisher.stats()
        for name, value, doc in (
            ("netspectra_fleet_epochs_published_total", st.published, "Epochs the NATS stream acknowledged (republished duplicates included)."),
            ("netspectra_fleet_epochs_dropped_total", st.dropped, "Epochs lost to the fleet: the disk spool was full (NATS away too long), damaged, or the stream refused them."),
            ("netspectra_fleet_duplicates_total", st.duplicates, "Chunks the stream acknowledged as duplicates (republished after a restart or a lost ack)."),
            ("netspectra_fleet_bytes_total", st.bytes_sent, "Payload bytes published (compressed epoch records)."),
        ):  # fmt: skip
            c = CounterMetricFamily(name, doc, labels=["interface"])
            c.add_metric([ifc], value)
            yield c
        for name, value, doc in (
            ("netspectra_fleet_spool_epochs", st.spool_depth, "Epochs waiting in the fleet's disk spool."),
            ("netspectra_fleet_spool_bytes", st.spool_bytes, "Bytes of those epochs on disk."),
            ("netspectra_fleet_connected", float(st.connected), "1 while connected to a NATS server."),
        ):  # fmt: skip
            g = GaugeMetricFamily(name, doc, labels=["interface"])
            g.add_metric([ifc], value)
            yield g

    def _collect_sinks(self):
        rows = [(ifc, q.name, q.stats()) for ifc, q in self._sinks]
        for name, attr, doc in (
            ("netspectra_sink_epochs_delivered_total", "delivered", "Epochs a sink took (view, store, ...)."),
            ("netspectra_sink_epochs_dropped_total", "dropped", "Epochs lost to a sink: its queue (the store's spool) was full, or still held epochs at exit."),
            ("netspectra_sink_epochs_failed_total", "failed", "Epochs a sink refused for good (e.g. another sketch layout)."),
            ("netspectra_sink_errors_total", "errors", "Failed deliveries to a sink that is down (each retried)."),
        ):  # fmt: skip
            c = CounterMetricFamily(name, doc, labels=["interface", "sink"])
            for ifc, sink, st in rows:
                c.add_metric([ifc, sink], getattr(st, attr))
            yield c
        for name, attr, doc in (
            ("netspectra_sink_queued_epochs", "queued", "Epochs waiting for a sink."),
            ("netspectra_sink_queued_bytes", "queued_bytes", "Memory held by the epochs waiting for a sink."),
            ("netspectra_sink_up", "up", "1 while a sink takes epochs, 0 from a failed delivery until the next success."),
        ):  # fmt: skip
            g = GaugeMetricFamily(name, doc, labels=["interface", "sink"])
            for ifc, sink, st in rows:
                g.add_metric([ifc, sink], float(getattr(st, attr)))
            yield g

    def _collect_api(self):
        ifc = self.process_interface
        stats, open_streams, kept = self._api
        requests, hist = stats.snapshot()
        c = CounterMetricFamily(
            "netspectra_api_requests",
            "Query API requests by transport (grpc, http), method and status code (docs/api.md).",
            labels=["interface", "transport", "method", "code"],
        )
        for (transport, method, code), n in sorted(requests.items()):
            c.add_metric([ifc, transport, method, code], n)
        yield c
        h = HistogramMetricFamily(
            "netspectra_api_request_duration_seconds",
            "Time to answer a unary query API request, in the server.",
            labels=["interface", "transport", "method"],
        )
        for (transport, method), (buckets, total) in sorted(hist.items()):
            h.add_metric([ifc, transport, method], buckets, total)
        yield h
        g = GaugeMetricFamily("netspectra_api_streams", "Query API streams open now.", labels=["interface"])
        g.add_metric([ifc], open_streams())
        yield g
        n = GaugeMetricFamily("netspectra_api_epochs_kept", "Epochs kept in memory for queries.", labels=["interface"])
        m = GaugeMetricFamily(
            "netspectra_api_memory_bytes",
            "Memory the query API holds, within api.max_memory: kept epochs with their indexes, cached answers.",
            labels=["interface", "part"],
        )
        for name, h in kept:
            epochs, epoch_bytes, answer_bytes = h.memory()
            n.add_metric([name], epochs)
            m.add_metric([name, "epochs"], epoch_bytes)
            m.add_metric([name, "answers"], answer_bytes)
        yield n
        yield m

    # ------------------------------------------------------------ agent side

    def observe(self, snap: EpochSnapshot, processing_s: float | None = None) -> None:
        """Fold one epoch in.  processing_s: time to read and analyse it
        (default: snap.processing_s)."""
        k = self.top
        lay = self.layout
        if snap.exact:  # counted from the exact flows: no sketch error (and no sketch to derive)
            bounds = tuple((name, 0.0, 0.0) for name in self._cm_tasks)
        else:
            sk = snap.sketch
            bounds = tuple((name, sk.error_bound(name), sk.error_bound(name, bytes=True)) for name in self._cm_tasks)
        heavy = {}
        for name in self._cm_tasks:
            hh = snap.heavy.get(name)
            if hh is None or not len(hh.keys):
                heavy[name] = (0, [])
                continue
            order = np.argsort(-hh.packets.astype(np.float64), kind="stable")[:k]
            rows = [(key_labels(hh.keys[i], lay, name), int(hh.packets[i]), int(hh.bytes[i])) for i in order]
            heavy[name] = (len(hh.keys), rows)
        spreaders = {}
        for name in self._ss_tasks:
            keys, est = snap.spreaders.get(name, (None, None))
            if keys is None or not len(keys):
                spreaders[name] = (0, [])
                continue
            order = np.argsort(-np.asarray(est, np.float64), kind="stable")[:k]
            spreaders[name] = (len(keys), [(key_labels(keys[i], lay, name), float(est[i])) for i in order])
        last = _Epoch(
            flows=len(snap.flows),
            table_fill=snap.table_fill,
            exact=snap.exact,
            duration=snap.end - snap.start,
            processing=snap.processing_s if processing_s is None else processing_s,
            end=snap.end,
            error_bounds=bounds,
            heavy=heavy,
            spreaders=spreaders,
        )
        add = snap.totals.tolist()  # python ints
        with self._lock:
            for acc, (p, b) in zip(self._totals, add):
                acc[0] += p
                acc[1] += b
            self._epochs += 1
            self._last = last

    # ------------------------------------------------------------ scrape side

    def collect(self):
        with self._lock:
            tot = [list(r) for r in self._totals]
            epochs = self._epochs
            last = self._last
            fired, failed, active = dict(self._fired), dict(self._failed), dict(self._active)
        ifc = self.interface

        g = GaugeMetricFamily(
            "netspectra_build_info",
            "Build and identity of the sensor (value is 1).",
            labels=["version", "abi", "sensor"],
        )
        g.add_metric([self.version, str(abi.ABI_VERSION), self.sensor], 1)
        yield g

        pk = CounterMetricFamily(
            "netspectra_packets_total",
            "Packets seen, by IP protocol (non_ip: not parsed as IP).",
            labels=["interface", "proto"],
        )
        by = CounterMetricFamily(
            "netspectra_bytes_total",
            "Bytes seen, by IP protocol (non_ip: not parsed as IP).",
            labels=["interface", "proto"],
        )
        ip_p = tot[abi.C["out_ipv4"]][0] + tot[abi.C["out_ipv6"]][0]
        ip_b = tot[abi.C["out_ipv4"]][1] + tot[abi.C["out_ipv6"]][1]
        rows = [tot[i] for i in _PROTO_ROWS] + [[tot[abi.C["all"]][0] - ip_p, tot[abi.C["all"]][1] - ip_b]]
        for label, (p, b) in zip(PROTO_LABELS, rows):
            pk.add_metric([ifc, label], p)
            by.add_metric([ifc, label], b)
        yield pk
        yield by

        c = CounterMetricFamily(
            "netspectra_parse_outcome_packets_total",
            "Packets by parse outcome (exactly one per packet).",
            labels=["interface", "outcome"],
        )
        for label, i in zip(OUTCOME_LABELS, _OUTCOME_ROWS):
            c.add_metric([ifc, label], tot[i][0])
        yield c

        c = CounterMetricFamily(
            "netspectra_packet_events_total", "Packets with a notable parse event.", labels=["interface", "event"]
        )
        for label, i in zip(EVENTS, _EVENT_ROWS):
            c.add_metric([ifc, label], tot[i][0])
        yield c

        for name, row, doc in (
            ("netspectra_flows_untracked_packets_total", "flow_untracked", "Packets not tracked as exact flows (flow table full)."),
            ("netspectra_candidates_lost_total", "cand_lost", "Heavy-hitter candidate reports lost (ring buffer full)."),
        ):  # fmt: skip
            c = CounterMetricFamily(name, doc, labels=["interface"])
            c.add_metric([ifc], tot[abi.C[row]][0])
            yield c

        c = CounterMetricFamily("netspectra_epochs_total", "Epochs read and analysed.", labels=["interface"])
        c.add_metric([ifc], epochs)
        yield c

        g = GaugeMetricFamily(
            "netspectra_kernel_memory_bytes", "Kernel memory of the sensor's maps.", labels=["interface", "map"]
        )
        for name, n in self.kernel_memory.items():
            g.add_metric([ifc, name], n)
        yield g

        c = CounterMetricFamily(
            "netspectra_alerts_fired", "Alerts that started firing, by rule.", labels=["interface", "rule"]
        )
        for rule, n in sorted(fired.items()):
            c.add_metric([ifc, rule], n)
        yield c
        c = CounterMetricFamily(
            "netspectra_notifications_failed",
            "Notification batches not delivered (given up after retries, queue full, or queued at shutdown), by notifier.",
            labels=["notifier"],
        )
        for name, n in sorted(failed.items()):
            c.add_metric([name], n)
        yield c
        g = GaugeMetricFamily(
            "netspectra_alerts_active", "Alerts firing now.", labels=["interface", "rule", "severity"]
        )
        for (rule, sev), n in sorted(active.items()):
            g.add_metric([ifc, rule, sev], n)
        yield g
        if self._api is not None:
            yield from self._collect_api()
        if self._sinks:
            yield from self._collect_sinks()
        if self._publisher is not None:
            yield from self._collect_publisher()

        if last is None:
            return

        def gauge(name: str, doc: str, value: float):
            g = GaugeMetricFamily(name, doc, labels=["interface"])
            g.add_metric([ifc], value)
            return g

        yield gauge("netspectra_flows", "Exact flows in the last epoch.", last.flows)
        yield gauge(
            "netspectra_flow_table_fill_ratio",
            "The fullest CPU's exact flow table in the last epoch: its flows / sensor.flow_capacity.",
            last.table_fill,
        )
        yield gauge(
            "netspectra_epoch_exact",
            "1 when the last epoch's flows were complete (no packet untracked): heavy hitters and spreads "
            "are exact; 0 when they are sketch estimates.",
            1.0 if last.exact else 0.0,
        )
        yield gauge("netspectra_epoch_duration_seconds", "Length of the last epoch.", last.duration)
        yield gauge("netspectra_epoch_processing_seconds", "Time to read and analyse the last epoch.", last.processing)
        yield gauge(
            "netspectra_last_epoch_timestamp_seconds", "Unix time the last epoch ended (lag: time() - this).", last.end
        )

        g = GaugeMetricFamily(
            "netspectra_sketch_error_bound",
            "Count-Min error bound e/width*N of the last epoch (probability 1-e^-depth); 0 when it was exact.",
            labels=["interface", "task", "unit"],
        )
        for task, p, b in last.error_bounds:
            g.add_metric([ifc, task, "packets"], p)
            g.add_metric([ifc, task, "bytes"], b)
        yield g

        n = GaugeMetricFamily(
            "netspectra_heavy_hitters", "Heavy hitters in the last epoch.", labels=["interface", "task"]
        )
        # Per-key series carry the task's key fields as labels (src_ip, ...), so
        # their label names differ by task: samples are added with their own labels.
        hp = GaugeMetricFamily(
            "netspectra_heavy_hitter_packets",
            "Packets of a heavy hitter in the last epoch (exact, or a Count-Min estimate; top-K by packets).",
        )
        hb = GaugeMetricFamily(
            "netspectra_heavy_hitter_bytes",
            "Bytes of a heavy hitter in the last epoch (exact, or a Count-Min estimate; top-K by packets).",
        )
        for task, (count, top) in last.heavy.items():
            n.add_metric([ifc, task], count)
            for key, p, b in top:
                labels = {"interface": ifc, "task": task, **key}
                hp.add_sample(hp.name, labels, p)
                hb.add_sample(hb.name, labels, b)
        yield n
        yield hp
        yield hb

        n = GaugeMetricFamily("netspectra_spreaders", "Spreaders in the last epoch.", labels=["interface", "task"])
        sd = GaugeMetricFamily(
            "netspectra_spreader_distinct",
            "Distinct elements of a spreader key in the last epoch (exact, or an estimate; top-K).",
        )
        for task, (count, top) in last.spreaders.items():
            n.add_metric([ifc, task], count)
            for key, e in top:
                sd.add_sample(sd.name, {"interface": ifc, "task": task, **key}, e)
        yield n
        yield sd


class Combined(Collector):
    """The collectors of a sensor's interfaces as one exposition: a metric
    family of each name once (the text format refuses a name twice), with
    every interface's samples.  Samples alike in name and labels (series
    without `interface`: failed notifications) are the
    interfaces' shares of one count and are added; build_info is one build."""

    def __init__(self, collectors: list[SensorCollector]):
        self.collectors = list(collectors)

    def collect(self):
        families: dict = {}
        for c in self.collectors:
            for fam in c.collect():
                got = families.get(fam.name)
                if got is None:
                    families[fam.name] = (
                        fam,
                        {(x.name, tuple(sorted(x.labels.items()))): i for i, x in enumerate(fam.samples)},
                    )
                    continue
                have, index = got
                for x in fam.samples:
                    k = (x.name, tuple(sorted(x.labels.items())))
                    if k not in index:
                        index[k] = len(have.samples)
                        have.samples.append(x)
                    elif fam.name != "netspectra_build_info":
                        i = index[k]
                        have.samples[i] = have.samples[i]._replace(value=have.samples[i].value + x.value)
        for fam, _ in families.values():
            yield fam


def registry_for(collector: Collector, proc: str = "/proc") -> CollectorRegistry:
    """A registry of its own (never the process-global REGISTRY) holding
    `collector` and the process collector (process_cpu_seconds_total,
    process_resident_memory_bytes, process_open_fds, ...: this process, read
    from `proc` at scrape time)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessCollector(proc=proc, registry=reg)
    return reg


def serve(address: str, registry: CollectorRegistry):
    """Serve /metrics of `registry` on host:port in a daemon thread, on the
    server of the query API's HTTP face (netspectra/httpserve.py: slow clients
    hold no handler slot, a real listen backlog).  Returns (server, thread);
    server.shutdown() stops it.  OSError if the address cannot be bound."""
    from prometheus_client.exposition import choose_encoder

    from .config import parse_address
    from .httpserve import Server, start

    def app(req):
        if req.method not in ("GET", "HEAD"):
            return 405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"}, b"method not allowed: use GET\n"
        encoder, content_type = choose_encoder(req.headers.get("accept", ""))
        return 200, {"Content-Type": content_type}, encoder(registry)

    host, port = parse_address(address)
    server = Server((host, port), app, workers=4, name="metrics")
    return server, start(server, "metrics")
