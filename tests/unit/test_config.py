"""netspectra.config: defaults, env expansion, validation messages, memory
guard; the neutral configkit, the store and the fleet sections."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from netspectra import abi, configkit
from netspectra.config import (
    Config,
    ConfigError,
    SensorConfig,
    default_tasks,
    defaults_yaml,
    derive_seed,
    kernel_memory,
    load_config,
    parse_config,
    parse_duration,
    parse_epoch,
    parse_size,
    possible_cpus,
)
from netspectra.fleet import config as fleet_config
from netspectra.fleet.config import CollectorConfig, FleetConfig, FleetTLS
from netspectra.store.config import StoreConfig
from netspectra.tasks import COUNTMIN, SUPERSPREAD, layout

NCPUS = 2  # memory guard CPUs for every test unless stated


def load_text(tmp_path, text: str, env=None, ncpus=NCPUS) -> Config:
    p = tmp_path / "config.yaml"
    p.write_text(textwrap.dedent(text))
    return load_config(str(p), env={} if env is None else env, ncpus=ncpus)


def error_of(tmp_path, text: str, env=None, ncpus=NCPUS) -> str:
    with pytest.raises(ConfigError) as ei:
        load_text(tmp_path, text, env, ncpus)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


# --- defaults ------------------------------------------------------------------


def test_no_file_gives_defaults():
    cfg = load_config(None, env={}, ncpus=NCPUS)
    assert cfg.sensor == SensorConfig(
        epoch_s=5.0,
        mode="auto",
        flow_capacity=65536,
        ringbuf_pages=64,
        top=10,
        max_kernel_memory=8 << 30,
        timestamps="millisecond",
        sketch_mode="hybrid",
    )
    assert [t.name for t in cfg.tasks] == ["src", "flow", "spread_dst", "fanin_src", "port_scan"]
    src, flow, spread, fanin, scan = cfg.tasks
    assert (src.kind, src.key, src.depth, src.width) == (COUNTMIN, ("src_ip",), 4, 65536)
    assert (src.hh_packets, src.hh_bytes) == (1000, 1_000_000)
    assert flow.key == ("src_ip", "dst_ip", "src_port", "dst_port", "proto")
    assert (spread.kind, spread.key, spread.element) == (SUPERSPREAD, ("src_ip",), ("dst_ip",))
    assert (fanin.kind, fanin.key, fanin.element) == (SUPERSPREAD, ("dst_ip",), ("src_ip",))
    assert (scan.kind, scan.key, scan.element) == (SUPERSPREAD, ("src_ip", "dst_ip"), ("dst_port",))
    assert (scan.width, scan.registers, scan.spread_threshold) == (1 << 22, 512, 100)
    for t in (spread, fanin):
        assert (t.depth, t.width, t.registers, t.spread_threshold) == (1, 1 << 22, 512, 100)
        assert (t.hh_packets, t.hh_bytes) == (0, 0)
    assert cfg.spreader_thresholds == {"spread_dst": 100, "fanin_src": 100, "port_scan": 100}
    assert cfg == Config()
    assert cfg.tasks == default_tasks()
    layout(cfg.tasks, NCPUS)  # the defaults place


@pytest.mark.parametrize("text", ["", "# nothing\n", "sensor:\n", "sensor: {}\n", "{}\n"])
def test_empty_file_and_sections_give_defaults(tmp_path, text):
    assert load_text(tmp_path, text) == load_config(None, env={}, ncpus=NCPUS)


def test_seeds_derived_from_name():
    cfg = load_config(None, env={}, ncpus=NCPUS)
    for t in cfg.tasks:
        assert t.seed == int.from_bytes(hashlib.sha256(t.name.encode()).digest()[:8], "little")
        if t.kind == SUPERSPREAD:
            assert t.elem_seed == derive_seed(t.name + ":elem")
    assert len({t.seed for t in cfg.tasks}) == len(cfg.tasks)


def test_defaults_yaml_round_trip(tmp_path):
    text = defaults_yaml()
    yaml.safe_load(text)  # valid YAML
    assert load_text(tmp_path, text) == load_config(None, env={}, ncpus=NCPUS)
    assert parse_config(text, env={}, ncpus=NCPUS) == Config()


def test_defaults_yaml_mentions_every_option():
    text = defaults_yaml()
    for opt in ("epoch", "mode", "flow_capacity", "ringbuf_pages", "top", "max_kernel_memory", "metrics_address"):
        assert f"  {opt}:" in text
    for opt in ("name", "kind", "key", "element", "depth", "width", "registers", "heavy_hitter", "spreader_threshold"):
        assert f" {opt}:" in text
    assert "seed" in text and "elem_seed" in text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "127.0.0.1:9781"),
        ("sensor: {metrics_address: '0.0.0.0:9100'}", "0.0.0.0:9100"),
        ("sensor: {metrics_address: '[::1]:9100'}", "[::1]:9100"),
        ("sensor: {metrics_address: ''}", ""),
        ("sensor: {metrics_address: '${NSP_METRICS:-localhost:1}'}", "localhost:1"),
    ],
)
def test_metrics_address(tmp_path, text, expected):
    assert load_text(tmp_path, text).sensor.metrics_address == expected


# --- a full file ---------------------------------------------------------------


def test_full_file(tmp_path):
    cfg = load_text(
        tmp_path,
        """
        sensor:
          epoch: 250ms
          mode: generic
          flow_capacity: 1000
          ringbuf_pages: 16
          top: 25
          max_kernel_memory: 512MiB
          timestamps: coarse
        tasks:
          - name: ports
            kind: countmin
            key: [dst_port, proto]
            depth: 3
            width: 1024
            seed: 42
            heavy_hitter: {packets: 0, bytes: 5000}
          - name: scan
            kind: superspread
            key: src_ip
            element: [dst_ip, dst_port]
            width: 1024
            registers: 16
            seed: 18446744073709551615
            elem_seed: 0
            spreader_threshold: 1
        """,
    )
    assert cfg.sensor == SensorConfig(0.25, "generic", 1000, 16, 25, 512 << 20, "coarse")
    ports, scan = cfg.tasks
    assert (ports.key, ports.depth, ports.width, ports.seed) == (("dst_port", "proto"), 3, 1024, 42)
    assert (ports.hh_packets, ports.hh_bytes) == (0, 5000)
    assert scan.key == ("src_ip",)  # a single field may be a plain string
    assert scan.element == ("dst_ip", "dst_port")
    assert (scan.depth, scan.width, scan.registers) == (1, 1024, 16)
    assert (scan.seed, scan.elem_seed, scan.spread_threshold) == (2**64 - 1, 0, 1)
    assert cfg.spreader_thresholds == {"scan": 1}
    assert cfg.task("scan") is scan
    assert cfg.source.endswith("config.yaml")


def test_partial_heavy_hitter_keeps_other_default(tmp_path):
    cfg = load_text(tmp_path, "tasks: [{name: a, kind: countmin, key: [src_ip], heavy_hitter: {bytes: 7}}]\n")
    assert (cfg.tasks[0].hh_packets, cfg.tasks[0].hh_bytes) == (1000, 7)


def test_empty_task_list_means_no_sketches(tmp_path):
    assert load_text(tmp_path, "tasks: []\n").tasks == ()


def test_eight_tasks_allowed(tmp_path):
    tasks = "".join(f"  - {{name: t{i}, kind: countmin, key: [src_ip], width: 64}}\n" for i in range(8))
    assert len(load_text(tmp_path, "tasks:\n" + tasks).tasks) == abi.MAX_TASKS


# --- durations and sizes ---------------------------------------------------------


@pytest.mark.parametrize(
    "text,secs",
    [
        ("5s", 5.0),
        ("100ms", 0.1),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("2d", 172800.0),
        ("1d12h", 129600.0),
        ("0.5d", 43200.0),
        ("2.5s", 2.5),
        ("500us", 0.0005),
        ("7", 7.0),
        (" 3 s ", 3.0),
        (12, 12.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(text, secs):
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["5x", "", "s", "5 5s", "-1s", "-3", "inf", "nan", "2w", "d", True, None, [5]])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_configkit_parse_duration_days():
    assert configkit.parse_duration is parse_duration  # config re-exports the kit's
    assert configkit.parse_duration("1d") == 86400.0
    assert configkit.parse_duration("1d12h30m") == 86400 + 12 * 3600 + 1800
    with pytest.raises(ValueError, match=r"^'3x' is not a duration \(use e.g. 5s, 100ms\)$"):
        configkit.parse_duration("3x")


@pytest.mark.parametrize(
    "secs, text", [(0.1, "100ms"), (5.0, "5s"), (90.0, "90s"), (300.0, "5m"), (7200.0, "2h"), (172800.0, "2d")]
)
def test_configkit_fmt_duration_reads_back(secs, text):
    assert configkit.fmt_duration(secs) == text
    assert parse_duration(text) == pytest.approx(secs)


def test_parse_epoch_range():
    assert parse_epoch("100ms") == pytest.approx(0.1)
    assert parse_epoch("0.1s") == pytest.approx(0.1)
    assert parse_epoch("1h") == 3600.0
    for bad in ("99ms", "1h1s", 0):
        with pytest.raises(ValueError, match="out of range 100ms..1h"):
            parse_epoch(bad)


@pytest.mark.parametrize(
    "text,n",
    [(4096, 4096), ("4096", 4096), ("512MiB", 512 << 20), ("1GiB", 1 << 30), ("2GB", 2 * 10**9), ("1.5KiB", 1536)],
)
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["1XB", "lots", "1.3B", True, 1.5, None])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_parse_size_rejects_zero():
    with pytest.raises(ValueError, match="more than 0"):
        parse_size(0)


# --- environment expansion -------------------------------------------------------


def test_env_set_and_default(tmp_path):
    cfg = load_text(
        tmp_path,
        """
        sensor:
          epoch: ${EPOCH}
          mode: ${MODE:-native}
          flow_capacity: ${CAP:-2048}
          top: "${TOP}"
          max_kernel_memory: ${MEM:-256}MiB
        tasks:
          - name: ${NAME}_x
            kind: countmin
            key: ["${FIELD:-src_ip}"]
        """,
        env={"EPOCH": "250ms", "TOP": "7", "NAME": "edge"},
    )
    assert cfg.sensor.epoch_s == pytest.approx(0.25)
    assert cfg.sensor.mode == "native"
    assert cfg.sensor.flow_capacity == 2048
    assert cfg.sensor.top == 7
    assert cfg.sensor.max_kernel_memory == 256 << 20
    assert cfg.tasks[0].name == "edge_x"
    assert cfg.tasks[0].key == ("src_ip",)


def test_env_default_used_when_empty(tmp_path):
    cfg = load_text(tmp_path, "sensor: {mode: '${MODE:-generic}'}\n", env={"MODE": ""})
    assert cfg.sensor.mode == "generic"


def test_env_set_wins_over_default(tmp_path):
    cfg = load_text(tmp_path, "sensor: {mode: '${MODE:-generic}'}\n", env={"MODE": "native"})
    assert cfg.sensor.mode == "native"


def test_env_not_expanded_in_comments(tmp_path):
    assert load_text(tmp_path, "# epoch: ${NOPE}\nsensor: {}\n") == Config()


def test_env_escape(tmp_path):
    msg = error_of(tmp_path, "sensor: {mode: '$${X}'}\n", env={"X": "auto"})
    assert msg.endswith("sensor.mode: '${X}' is not one of auto, native, generic")


def test_env_uses_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPECTRA_TEST_MODE", "generic")
    p = tmp_path / "c.yaml"
    p.write_text("sensor: {mode: '${NETSPECTRA_TEST_MODE}'}\n")
    assert load_config(str(p), ncpus=NCPUS).sensor.mode == "generic"


# --- validation messages ---------------------------------------------------------

CM = "{name: a, kind: countmin, key: [src_ip]"
SS = "{name: a, kind: superspread, key: [src_ip], element: [dst_ip]"

ERRORS = [
    # sensor
    ("sensor: {epoch: 5x}", "sensor.epoch: '5x' is not a duration (use e.g. 5s, 100ms)"),
    ("sensor: {epoch: 50ms}", "sensor.epoch: '50ms' is out of range 100ms..1h"),
    ("sensor: {epoch: 2h}", "sensor.epoch: '2h' is out of range 100ms..1h"),
    ("sensor: {epoch: 0}", "sensor.epoch: 0 is out of range 100ms..1h"),
    ("sensor: {epoch: yes}", "sensor.epoch: True is not a duration (use e.g. 5s, 100ms)"),
    ("sensor: {mode: nativ}", "sensor.mode: 'nativ' is not one of auto, native, generic (did you mean 'native'?)"),
    ("sensor: {mode: xyz}", "sensor.mode: 'xyz' is not one of auto, native, generic"),
    ("sensor: {flow_capacity: -1}", "sensor.flow_capacity: -1 is out of range 0..16777216"),
    ("sensor: {id: 'edge 1'}", "sensor.id: 'edge 1' must be 1-64 of A-Z a-z 0-9 . _ - (a host name will do)"),
    ("sensor: {id: 7}", "sensor.id: 7 must be 1-64 of A-Z a-z 0-9 . _ - (a host name will do)"),
    ("sensor: {flow_capacity: 16777217}", "sensor.flow_capacity: 16777217 is out of range 0..16777216"),
    ("sensor: {timestamps: ms}", "sensor.timestamps: 'ms' is not one of millisecond, precise, coarse"),
    (
        "sensor: {sketch_mode: every}",
        "sensor.sketch_mode: 'every' is not one of hybrid, every_packet",
    ),
    ("sensor: {flow_capacity: lots}", "sensor.flow_capacity: 'lots' is not an integer"),
    ("sensor: {flow_capacity: 1.5}", "sensor.flow_capacity: 1.5 is not an integer"),
    ("sensor: {flow_capacity: true}", "sensor.flow_capacity: True is not an integer"),
    ("sensor: {ringbuf_pages: 48}", "sensor.ringbuf_pages: 48 is not a power of two (e.g. 32 or 64)"),
    ("sensor: {ringbuf_pages: 0}", "sensor.ringbuf_pages: 0 is out of range 1..65536"),
    ("sensor: {top: 0}", "sensor.top: 0 is out of range 1..10000"),
    (
        "sensor: {max_kernel_memory: 1XB}",
        "sensor.max_kernel_memory: '1XB' is not a size in bytes (use e.g. 512MiB, 1GiB)",
    ),
    ("sensor: {max_kernel_memory: 0}", "sensor.max_kernel_memory: 0 must be more than 0 bytes"),
    ("sensor: [1, 2]", "sensor: expected a mapping, got a list"),
    (
        "sensor: {metrics_address: localhost}",
        "sensor.metrics_address: 'localhost' is not host:port (e.g. 127.0.0.1:9781, [::1]:9781, 0.0.0.0:9781)",
    ),
    (
        "sensor: {metrics_address: 9781}",
        "sensor.metrics_address: 9781 is not host:port (e.g. 127.0.0.1:9781, [::1]:9781, 0.0.0.0:9781)",
    ),
    (
        "sensor: {metrics_address: '::1:9781'}",
        "sensor.metrics_address: '::1:9781' is not host:port (e.g. 127.0.0.1:9781, [::1]:9781, 0.0.0.0:9781)",
    ),
    (
        "sensor: {metrics_address: '0.0.0.0:70000'}",
        "sensor.metrics_address: '0.0.0.0:70000': port 70000 is out of range 1..65535",
    ),
    ("sensor: {metrics_address: '0.0.0.0:0'}", "sensor.metrics_address: '0.0.0.0:0': port 0 is out of range 1..65535"),
    ("sensor: {interfaces: [eth0, eth1, eth0]}", "sensor.interfaces: 'eth0' is listed twice"),
    ("sensor: {interfaces: {eth0: 1}}", "sensor.interfaces: expected a list of interface names, got a mapping"),
    ("sensor: {interfaces: [eth0, 5]}", "sensor.interfaces: 5 is not an interface name"),
    ("sensor: {interfaces: [a/b]}", "sensor.interfaces: 'a/b' is not an interface name (no '/', ':' or spaces)"),
    ("- 1", "expected a mapping with sensor, tasks, alerts, api, store and fleet, got a list"),
    # structure and typos
    ("sensr: {}", "sensr: unknown option (did you mean 'sensor'?)"),
    ("sensor: {epcoh: 5s}", "sensor.epcoh: unknown option (did you mean 'epoch'?)"),
    (
        "sensor: {zzz: 1}",
        "sensor.zzz: unknown option (valid: id, epoch, mode, flow_capacity, ringbuf_pages, top, max_kernel_memory, timestamps, sketch_mode, metrics_address, interfaces)",
    ),
    (
        "tasks: [" + CM + "}, " + CM.replace("a,", "b,") + ", widht: 1024}]",
        "tasks[1].widht: unknown option (did you mean 'width'?)",
    ),
    (
        "tasks: [" + CM + ", heavy_hitter: {packet: 5}}]",
        "tasks[0].heavy_hitter.packet: unknown option (did you mean 'packets'?)",
    ),
    ("tasks: {name: a}", "tasks: expected a list of tasks, got a mapping"),
    ("tasks: [5]", "tasks[0]: expected a task mapping, got an integer"),
    # tasks: count, names, kinds
    (
        "tasks: [" + ", ".join(CM.replace("a,", f"t{i},") + ", width: 64}" for i in range(9)) + "]",
        "tasks: 9 tasks given, at most 8",
    ),
    (
        "tasks: ["
        + ", ".join(
            f"{{name: s{i}, kind: superspread, key: [{k}], element: [{e}]}}"
            for i, (k, e) in enumerate(
                [
                    ("src_ip", "dst_ip"),
                    ("src_port", "dst_port"),
                    ("proto", "src_ip"),
                    ("src_ip, dst_ip", "dst_port"),
                    ("src_ip, proto", "dst_ip"),
                    ("dst_ip, proto", "src_port"),
                    ("src_port, dst_port", "src_ip"),
                ]
            )
        )
        + "]",
        "tasks: the tasks use more than 8 distinct field sets (keys and elements)",
    ),
    ("tasks: [{kind: countmin, key: [src_ip]}]", "tasks[0]: missing 'name' ([a-z0-9_]+)"),
    ("tasks: [{name: a, key: [src_ip]}]", "tasks[0]: missing 'kind' (countmin or superspread)"),
    ("tasks: [{name: a, kind: countmin}]", "tasks[0]: missing 'key' (a list of fields)"),
    ("tasks: [{name: A-b, kind: countmin, key: [src_ip]}]", "tasks[0].name: 'A-b' must match [a-z0-9_]+"),
    ("tasks: [{name: '', kind: countmin, key: [src_ip]}]", "tasks[0].name: '' must match [a-z0-9_]+"),
    ("tasks: [{name: 7, kind: countmin, key: [src_ip]}]", "tasks[0].name: 7 is not a string (quote it)"),
    ("tasks: [" + CM + "}, " + SS + "}]", "tasks[1].name: 'a' is also the name of tasks[0]"),
    (
        "tasks: [{name: a, kind: countmn, key: [src_ip]}]",
        "tasks[0].kind: 'countmn' is not one of countmin, superspread (did you mean 'countmin'?)",
    ),
    # keys and elements
    ("tasks: [{name: a, kind: countmin, key: []}]", "tasks[0].key: must name at least one field"),
    (
        "tasks: [{name: a, kind: countmin, key: [src_ip, dstip]}]",
        "tasks[0].key[1]: unknown field 'dstip' (did you mean 'dst_ip'?)",
    ),
    (
        "tasks: [{name: a, kind: countmin, key: [vlan]}]",
        "tasks[0].key[0]: unknown field 'vlan' (fields: src_ip, dst_ip, src_port, dst_port, proto)",
    ),
    ("tasks: [{name: a, kind: countmin, key: [proto, proto]}]", "tasks[0].key[1]: proto is listed twice"),
    ("tasks: [{name: a, kind: countmin, key: {a: 1}}]", "tasks[0].key: expected a list of fields, got a mapping"),
    (
        "tasks: [{name: a, kind: superspread, key: [src_ip]}]",
        "tasks[0]: missing 'element' (superspread tasks count distinct elements per key)",
    ),
    (
        "tasks: [{name: a, kind: superspread, key: [src_ip], element: []}]",
        "tasks[0].element: must name at least one field",
    ),
    (
        "tasks: [{name: a, kind: superspread, key: [src_ip, proto], element: [dst_ip, proto]}]",
        "tasks[0].element: proto is also in the key",
    ),
    ("tasks: [" + CM + ", element: [dst_ip]}]", "tasks[0].element: only for superspread tasks"),
    ("tasks: [" + CM + ", registers: 8}]", "tasks[0].registers: only for superspread tasks"),
    ("tasks: [" + CM + ", elem_seed: 8}]", "tasks[0].elem_seed: only for superspread tasks"),
    ("tasks: [" + CM + ", spreader_threshold: 8}]", "tasks[0].spreader_threshold: only for superspread tasks"),
    ("tasks: [" + SS + ", heavy_hitter: {packets: 1}}]", "tasks[0].heavy_hitter: only for countmin tasks"),
    # sizes and thresholds
    ("tasks: [" + CM + ", depth: 0}]", "tasks[0].depth: 0 is out of range 1..8"),
    ("tasks: [" + CM + ", depth: 9}]", "tasks[0].depth: 9 is out of range 1..8"),
    ("tasks: [" + CM + ", width: 1000}]", "tasks[0].width: 1000 is not a power of two (e.g. 512 or 1024)"),
    ("tasks: [" + CM + ", width: 32}]", "tasks[0].width: 32 is out of range 64..4194304"),
    ("tasks: [" + CM + ", width: 8388608}]", "tasks[0].width: 8388608 is out of range 64..4194304"),
    ("tasks: [" + SS + ", registers: 8}]", "tasks[0].registers: 8 is out of range 16..4096"),
    ("tasks: [" + SS + ", registers: 8192}]", "tasks[0].registers: 8192 is out of range 16..4096"),
    (
        "tasks: [" + SS + ", width: 1024, registers: 1024}]",
        "tasks[0].registers: 1024 must be less than width 1024 (the register pool shared by all keys)",
    ),
    ("tasks: [" + SS + ", depth: 2}]", "tasks[0].depth: only for countmin tasks"),
    ("tasks: [" + SS + ", width: 512}]", "tasks[0].width: 512 is out of range 1024..67108864"),
    ("tasks: [" + SS + ", width: 134217728}]", "tasks[0].width: 134217728 is out of range 1024..67108864"),
    ("tasks: [" + SS + ", registers: 100}]", "tasks[0].registers: 100 is not a power of two (e.g. 64 or 128)"),
    ("tasks: [" + CM + ", seed: -1}]", "tasks[0].seed: -1 is out of range 0..18446744073709551615"),
    (
        "tasks: [" + CM + ", seed: 18446744073709551616}]",
        "tasks[0].seed: 18446744073709551616 is out of range 0..18446744073709551615",
    ),
    ("tasks: [" + SS + ", elem_seed: x}]", "tasks[0].elem_seed: 'x' is not an integer"),
    ("tasks: [" + CM + ", heavy_hitter: {packets: -1}}]", "tasks[0].heavy_hitter.packets: -1 is out of range >= 0"),
    ("tasks: [" + CM + ", heavy_hitter: {bytes: -1}}]", "tasks[0].heavy_hitter.bytes: -1 is out of range >= 0"),
    ("tasks: [" + CM + ", heavy_hitter: 5}]", "tasks[0].heavy_hitter: expected a mapping, got an integer"),
    ("tasks: [" + SS + ", spreader_threshold: 0}]", "tasks[0].spreader_threshold: 0 is out of range >= 1"),
    # environment
    (
        "sensor: {mode: '${MISSING}'}",
        "sensor.mode: environment variable MISSING is not set (use ${MISSING:-default} for a default)",
    ),
    (
        "tasks: [{name: a, kind: countmin, key: ['${NOFIELD}']}]",
        "tasks[0].key[0]: environment variable NOFIELD is not set (use ${NOFIELD:-default} for a default)",
    ),
    ("sensor: {mode: '${1X}'}", "sensor.mode: bad variable reference ${1X} (use ${VAR} or ${VAR:-default})"),
    ("sensor: {mode: '${X'}", "sensor.mode: unterminated ${ (write $${ for a literal ${)"),
]


def test_interfaces(tmp_path):
    assert parse_config("").sensor.interfaces == ()
    assert parse_config("sensor: {interfaces: [veth1, veth0]}").sensor.interfaces == ("veth1", "veth0")
    assert parse_config("sensor: {interfaces: eth0}").sensor.interfaces == ("eth0",)
    assert parse_config("sensor: {interfaces: ['${IF:-eth9}']}", env={}).sensor.interfaces == ("eth9",)


@pytest.mark.parametrize("text,expected", ERRORS, ids=[e[1].split(":")[0] + f"-{i}" for i, e in enumerate(ERRORS)])
def test_error_messages(tmp_path, text, expected):
    msg = error_of(tmp_path, text + "\n")
    path = str(tmp_path / "config.yaml")
    assert msg == f"{path}: {expected}"


def test_yaml_syntax_error_has_line(tmp_path):
    msg = error_of(tmp_path, "sensor:\n  epoch: 5s\n  mode: [auto\n")
    assert msg.startswith(str(tmp_path / "config.yaml") + ":")
    assert "YAML syntax error" in msg
    line = int(msg[len(str(tmp_path / "config.yaml")) + 1 :].split(":")[0])
    assert 3 <= line <= 4


def test_yaml_tab_error_has_line(tmp_path):
    msg = error_of(tmp_path, "sensor:\n\tepoch: 5s\n")
    assert msg.startswith(f"{tmp_path / 'config.yaml'}:2: YAML syntax error")


def test_duplicate_key_is_an_error(tmp_path):
    msg = error_of(tmp_path, "sensor:\n  epoch: 5s\n  epoch: 6s\n")
    assert msg == f"{tmp_path / 'config.yaml'}:3: YAML syntax error: duplicate key 'epoch'"


def test_merge_keys_may_override(tmp_path):
    cfg = load_text(
        tmp_path,
        """
        tasks:
          - &b {name: a, kind: countmin, key: [src_ip], width: 1024}
          - {<<: *b, name: b, width: 2048}
        """,
    )
    assert [(t.name, t.width) for t in cfg.tasks] == [("a", 1024), ("b", 2048)]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file"):
        load_config(str(tmp_path / "nope.yaml"), env={}, ncpus=NCPUS)


def test_parse_config_names_source():
    with pytest.raises(ConfigError, match=r"^<string>: sensor\.top: 0 is out of range"):
        parse_config("sensor: {top: 0}", env={}, ncpus=NCPUS)


# --- kernel memory -----------------------------------------------------------------


def test_kernel_memory_parts():
    cfg = load_config(None, env={}, ncpus=NCPUS)
    for ncpus in (1, 4, 64):
        mem = kernel_memory(cfg, ncpus)
        # two countmin tasks of 4 x 65536 cells of 16 bytes, two sets, every CPU
        assert mem["countmin"] == 2 * ncpus * (2 * 4 * 65536) * 16
        # three superspread pools of 2**22 one-byte registers
        assert mem["superspread"] == 2 * ncpus * 3 * (1 << 22)
        assert mem["sketches"] == mem["countmin"] + mem["superspread"]
        # 65536 flows per CPU: 131072 slots of 80 bytes and a list of 65536 slot numbers
        assert mem["flows"] == 2 * ncpus * (131072 * 80 + 65536 * 8)
        assert mem["seen"] == 2 * ncpus * abi.SEEN_SLOTS * 16
        assert mem["totals"] == 2 * ncpus * abi.TOTALS.itemsize
        assert mem["candidates"] == 64 * 4096
        parts = ("totals", "countmin", "superspread", "flows", "seen", "candidates")
        assert mem["total"] == sum(mem[k] for k in parts)


def test_kernel_memory_matches_layout_minimums(tmp_path):
    cfg = load_text(tmp_path, "sensor: {flow_capacity: 0}\ntasks: []\n")
    lay = layout((), 1)
    mem = kernel_memory(cfg, 1)
    assert mem["countmin"] == 2 * lay.cm_cells * 16
    assert mem["superspread"] == 2 * lay.ss_blocks * 8
    assert mem["flows"] == 0


def test_memory_guard_refuses(tmp_path):
    text = (
        "sensor: {max_kernel_memory: 1GiB, flow_capacity: 0}\n"
        "tasks: [{name: big, kind: countmin, key: [src_ip], depth: 8, width: 4194304}]\n"
    )
    msg = error_of(tmp_path, text, ncpus=1)
    # 8 * 2**22 cells * 16 B * 2 sets = 1 GiB, plus the SuperSpread minimum and the rest
    assert msg.startswith(f"{tmp_path / 'config.yaml'}: the maps need 1.0 GiB (1074144032 B) of kernel memory")
    assert " on 1 CPUs (countmin 1.0 GiB, superspread 8.0 KiB, flows 0 B)" in msg
    assert "more than sensor.max_kernel_memory 1.0 GiB (1073741824 B);" in msg
    assert "sensor.flow_capacity, or raise sensor.max_kernel_memory" in msg


def test_memory_guard_counts_cpus_and_flows(tmp_path):
    text = "sensor: {max_kernel_memory: 256MiB}\n"
    assert load_text(tmp_path, text, ncpus=2)  # 122.5 MiB
    msg = error_of(tmp_path, text, ncpus=8)
    assert "the maps need 489.3 MiB of kernel memory on 8 CPUs (countmin 128.0 MiB, superspread 192.0 MiB," in msg
    assert "flows 168.0 MiB), more than sensor.max_kernel_memory 256.0 MiB" in msg
    assert load_text(tmp_path, "sensor: {max_kernel_memory: 512MiB}\n", ncpus=8)


def test_memory_guard_exact_bytes_when_rounding_hides_the_excess(tmp_path):
    text = "sensor: {max_kernel_memory: 1GiB, flow_capacity: 0}\ntasks: [{name: a, kind: countmin, key: [src_ip]}]\n"
    # 4 MiB of Count-Min per CPU and set, plus small parts: 126 CPUs need just over 1 GiB
    msg = error_of(tmp_path, text, ncpus=126)
    assert "the maps need 1.0 GiB (1074874816 B) of kernel memory on 126 CPUs" in msg
    assert "more than sensor.max_kernel_memory 1.0 GiB (1073741824 B)" in msg
    assert load_text(tmp_path, text, ncpus=125)


def test_defaults_fit_128_cpus():
    assert load_config(None, env={}, ncpus=128)
    with pytest.raises(ConfigError, match="on 135 CPUs"):
        load_config(None, env={}, ncpus=135)


def test_memory_guard_limit_can_be_raised(tmp_path):
    text = (
        "sensor: {max_kernel_memory: 2GiB}\n"
        "tasks: [{name: big, kind: countmin, key: [src_ip], depth: 8, width: 4194304}]\n"
    )
    assert load_text(tmp_path, text, ncpus=1).tasks[0].width == 1 << 22


def test_possible_cpus_positive():
    assert possible_cpus() >= 1


def test_arrays_stay_within_32_bit_indexes(tmp_path):
    """[set][cpu][slot] must fit the program's 32-bit array indexes, whatever
    memory the operator allows."""
    text = "sensor: {flow_capacity: 16777216, max_kernel_memory: 100TiB}\n"
    assert load_text(tmp_path, text, ncpus=32)  # 2 * 32 * 2**25 = 2**31 slots
    msg = error_of(tmp_path, text, ncpus=64)
    assert msg.endswith("sensor.flow_capacity: too large for 64 CPUs: an array would need 2^32 or more elements")


def test_sensor_id_defaults_to_the_host_name(tmp_path):
    import socket

    assert load_config(None, env={}).sensor.sensor_id == socket.gethostname()
    assert load_text(tmp_path, "sensor: {id: edge-1.fra}\n").sensor.sensor_id == "edge-1.fra"
    assert load_text(tmp_path, "sensor: {id: '${SID:-}'}\n").sensor.sensor_id == socket.gethostname()


# --- the store section -------------------------------------------------------------


def store_of(text: str, env=None) -> StoreConfig:
    return parse_config(textwrap.dedent(text), env={} if env is None else env, ncpus=NCPUS).store


def test_store_defaults():
    s = load_config(None, env={}, ncpus=NCPUS).store
    assert s == StoreConfig(url="", spool=720, retention=(("raw", 172800.0), ("1m", 2592000.0), ("1h", 31536000.0)))
    assert (s.retention_s("raw"), s.retention_s("1m"), s.retention_s("1h")) == (2 * 86400, 30 * 86400, 365 * 86400)
    assert store_of("store:\n") == store_of("store: {retention: {}}\n") == s
    assert "\nstore:\n" in defaults_yaml() and "    1h: 365d" in defaults_yaml()


def test_store_partial_retention_keeps_the_other_defaults():
    s = store_of("store: {spool: 0, retention: {1m: 7d}}")
    assert s.spool == 0
    assert s.retention == (("raw", 172800.0), ("1m", 7 * 86400.0), ("1h", 31536000.0))
    assert store_of("store: {retention: {raw: 1m, 1h: '${KEEP:-1h}'}}").retention_s("1h") == 3600.0


@pytest.mark.parametrize(
    "given, kept",
    [
        ("''", ""),
        ("off", "off"),  # bare off is YAML false
        ("'off'", "off"),
        ("history.db", "history.db"),
        ("/var/lib/netspectra/history.db", "/var/lib/netspectra/history.db"),
        ("sqlite:///var/lib/netspectra/h.db", "sqlite:///var/lib/netspectra/h.db"),
        ("clickhouse://db.example:9000/netspectra", "clickhouse://db.example:9000/netspectra"),
        ("'clickhouse://u:p@db/netspectra'", "clickhouse://u:p@db/netspectra"),
        ("clickhouses://db.example/netspectra", "clickhouses://db.example/netspectra"),
        ("chdb:///var/lib/netspectra/chdb", "chdb:///var/lib/netspectra/chdb"),
        ("'${STORE:-sqlite:///tmp/x.db}'", "sqlite:///tmp/x.db"),
        ("' SQLite:///tmp/x.db '", "sqlite:///tmp/x.db"),
    ],
)
def test_store_url_forms(given, kept):
    assert store_of(f"store: {{url: {given}}}").url == kept


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "store: {url: 'mysql://db/netspectra'}",
            "store.url: unknown scheme 'mysql://' (accepted: sqlite://, clickhouse://, clickhouses://, chdb://, "
            "a path, off)",
        ),
        ("store: {url: 'sqlite://'}", "store.url: 'sqlite://' names nothing after sqlite://"),
        ("store: {url: 5}", 'store.url: 5 is not a path or URL ("" for the default, off for none)'),
        ("store: {spool: 100001}", "store.spool: 100001 is out of range 0..100000"),
        ("store: {spool: -1}", "store.spool: -1 is out of range 0..100000"),
        ("store: {spool: lots}", "store.spool: 'lots' is not an integer"),
        ("store: {retention: {1d: 30d}}", "store.retention.1d: unknown option (valid: raw, 1m, 1h)"),
        ("store: {retention: {rwa: 2d}}", "store.retention.rwa: unknown option (did you mean 'raw'?)"),
        ("store: {retention: {raw: 30s}}", "store.retention.raw: '30s' is too short (at least 1m)"),
        ("store: {retention: {1h: 59m}}", "store.retention.1h: '59m' is too short (at least 1h)"),
        ("store: {retention: {1m: 0}}", "store.retention.1m: 0 is too short (at least 1m)"),
        ("store: {retention: {raw: 2x}}", "store.retention.raw: '2x' is not a duration (use e.g. 5s, 100ms)"),
        ("store: {retention: 30d}", "store.retention: expected a mapping, got a string"),
        ("store: {spol: 1}", "store.spol: unknown option (did you mean 'spool'?)"),
    ],
)
def test_store_errors(text, expected):
    with pytest.raises(ConfigError, match=f"^<string>: {re.escape(expected)}$"):
        store_of(text)


@pytest.mark.parametrize(
    "module",
    ["netspectra.alerts.rules", "netspectra.api.settings", "netspectra.store.config", "netspectra.fleet.config"],
)
def test_sections_do_not_import_the_root(module):
    """Sections import configkit, never netspectra.config (which imports them)."""
    code = f"import sys, {module}; assert 'netspectra.config' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the fleet section -------------------------------------------------------------


def fleet_of(text: str, env=None) -> FleetConfig:
    return parse_config(textwrap.dedent(text), env={} if env is None else env, ncpus=NCPUS).fleet


def test_fleet_defaults():
    f = load_config(None, env={}, ncpus=NCPUS).fleet
    assert f == FleetConfig(
        servers=(),
        subject_prefix="netspectra.v1",
        stream="NETSPECTRA",
        credentials="",
        token="",
        tls=None,
        spool=1000,
        spool_dir="",
        max_age_s=86400.0,
        duplicate_window_s=600.0,
        collector=CollectorConfig(durable="netspectra-collector", window_s=5.0, grace_s=10.0, sensors=(), id=""),
    )
    assert not f.enabled
    assert fleet_of("fleet:\n") == fleet_of("fleet: {servers: '', tls: {}, collector: {}}\n") == f
    text = defaults_yaml()
    assert "\nfleet:\n" in text and "  servers: []" in text and "    window: 5s" in text


@pytest.mark.parametrize(
    "given, servers",
    [
        ("nats://nats.example:4222", ("nats://nats.example:4222",)),  # a single string
        ("[nats://a:4222, 'tls://b:4443']", ("nats://a:4222", "tls://b:4443")),
        ("['10.0.0.1:4222', '[::1]:4222']", ("nats://10.0.0.1:4222", "nats://[::1]:4222")),
        ("' NATS://nats.example '", ("nats://nats.example",)),  # nats-py adds port 4222
        ("'nats://user:pw@nats.example:4222'", ("nats://user:pw@nats.example:4222",)),
        ("'${NATS_URL:-}'", ()),  # off
        ("[]", ()),
    ],
)
def test_fleet_servers(given, servers):
    f = fleet_of(f"fleet: {{servers: {given}}}")
    assert f.servers == servers and f.enabled == bool(servers)


def test_fleet_every_key(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet_config, "_have_nkeys", lambda: True)
    for name in ("ca.pem", "client.pem", "client.key", "edge.creds"):
        (tmp_path / name).write_text("-")
    text = f"""
        fleet:
          servers: nats://nats.example:4222
          subject_prefix: acme.net-spectra_2
          stream: EDGE_epochs-1
          credentials: {tmp_path}/edge.creds
          tls: {{ca: {tmp_path}/ca.pem, cert: {tmp_path}/client.pem, key: {tmp_path}/client.key}}
          spool: 0
          spool_dir: /srv/netspectra/spool
          max_age: 7d
          duplicate_window: 1h
          collector:
            durable: dc1
            window: 100ms
            grace: 0
            sensors: [edge-1, edge-2.fra]
            id: core
        """
    assert fleet_of(text) == FleetConfig(
        servers=("nats://nats.example:4222",),
        subject_prefix="acme.net-spectra_2",
        stream="EDGE_epochs-1",
        credentials=f"{tmp_path}/edge.creds",
        tls=FleetTLS(ca=f"{tmp_path}/ca.pem", cert=f"{tmp_path}/client.pem", key=f"{tmp_path}/client.key"),
        spool=0,
        spool_dir="/srv/netspectra/spool",
        max_age_s=7 * 86400.0,
        duplicate_window_s=3600.0,
        collector=CollectorConfig(
            durable="dc1", window_s=0.1, grace_s=0.0, sensors=("edge-1", "edge-2.fra"), id="core"
        ),
    )
    f = fleet_of(
        "fleet: {token: '${NATS_TOKEN}', tls: {ca: " + f"{tmp_path}/ca.pem" + "}, spool: 1000000}",
        {"NATS_TOKEN": "s3cret"},
    )
    assert (f.token, f.tls, f.spool) == ("s3cret", FleetTLS(ca=f"{tmp_path}/ca.pem"), 1_000_000)
    c = fleet_of("fleet: {max_age: 1m, duplicate_window: 1s, collector: {window: 1h, grace: 1h, sensors: edge-1}}")
    assert (c.max_age_s, c.duplicate_window_s) == (60.0, 1.0)
    assert (c.collector.window_s, c.collector.grace_s, c.collector.sensors) == (3600.0, 3600.0, ("edge-1",))
    # a max_age shorter than the default duplicate window takes the window down with it
    assert fleet_of("fleet: {max_age: 5m}").duplicate_window_s == 300.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fleet: 5", "fleet: expected a mapping, got an integer"),
        ("fleet: {server: x}", "fleet.server: unknown option (did you mean 'servers'?)"),
        ("fleet: {servers: {a: 1}}", "fleet.servers: expected a list of NATS URLs, got a mapping"),
        (
            "fleet: {servers: ['http://nats.example']}",
            "fleet.servers[0]: unknown scheme 'http://' (accepted: nats://, tls://, host:port)",
        ),
        (
            "fleet: {servers: [nats://a:4222, nats.example]}",
            "fleet.servers[1]: 'nats.example' is not a NATS URL (nats://host:4222, tls://host:4222 or host:port)",
        ),
        (
            "fleet: {servers: [5]}",
            "fleet.servers[0]: 5 is not a NATS URL (nats://host:4222, tls://host:4222 or host:port)",
        ),
        ("fleet: {servers: ['nats://:4222']}", "fleet.servers[0]: 'nats://:4222' names no host"),
        ("fleet: {servers: ['nats://h:99999']}", "fleet.servers[0]: 'nats://h:99999' has a bad port (1..65535)"),
        ("fleet: {servers: ['tls://h:0']}", "fleet.servers[0]: 'tls://h:0' has a bad port (1..65535)"),
        (
            "fleet: {subject_prefix: 'acme.*'}",
            "fleet.subject_prefix: 'acme.*' is not a NATS subject prefix "
            "(tokens joined by dots, without spaces, * or >)",
        ),
        (
            "fleet: {subject_prefix: 'a..b'}",
            "fleet.subject_prefix: 'a..b' is not a NATS subject prefix (tokens joined by dots, without spaces, * or >)",
        ),
        (
            "fleet: {subject_prefix: 'a b'}",
            "fleet.subject_prefix: 'a b' is not a NATS subject prefix (tokens joined by dots, without spaces, * or >)",
        ),
        ("fleet: {stream: a.b}", "fleet.stream: 'a.b' must match [A-Za-z0-9_-]+ (a JetStream stream name)"),
        ("fleet: {stream: ''}", "fleet.stream: '' must match [A-Za-z0-9_-]+ (a JetStream stream name)"),
        (
            "fleet: {credentials: /nonexistent/edge.creds}",
            "fleet.credentials: cannot read /nonexistent/edge.creds: No such file or directory",
        ),
        ("fleet: {token: 'a b'}", "fleet.token: must be a string without spaces"),
        ("fleet: {tls: {crt: x}}", "fleet.tls.crt: unknown option (did you mean 'cert'?)"),
        (
            "fleet: {tls: {ca: /nonexistent/ca.pem}}",
            "fleet.tls.ca: cannot read /nonexistent/ca.pem: No such file or directory",
        ),
        ("fleet: {tls: {ca: 5}}", "fleet.tls.ca: 5 is not a file path (a PEM file)"),
        ("fleet: {spool: -1}", "fleet.spool: -1 is out of range 0..1000000"),
        ("fleet: {spool: 1000001}", "fleet.spool: 1000001 is out of range 0..1000000"),
        ("fleet: {spool: lots}", "fleet.spool: 'lots' is not an integer"),
        ("fleet: {spool_dir: 5}", 'fleet.spool_dir: 5 is not a directory path ("" for the default)'),
        ("fleet: {max_age: 30s}", "fleet.max_age: '30s' is too short (at least 1m)"),
        ("fleet: {max_age: 2x}", "fleet.max_age: '2x' is not a duration (use e.g. 5s, 100ms)"),
        ("fleet: {duplicate_window: 500ms}", "fleet.duplicate_window: '500ms' is too short (at least 1s)"),
        ("fleet: {duplicate_window: 2d}", "fleet.duplicate_window: '2d' is longer than fleet.max_age (1d)"),
        (
            "fleet: {max_age: 1h, duplicate_window: 90m}",
            "fleet.duplicate_window: '90m' is longer than fleet.max_age (1h)",
        ),
        ("fleet: {collector: 5}", "fleet.collector: expected a mapping, got an integer"),
        ("fleet: {collector: {windw: 5s}}", "fleet.collector.windw: unknown option (did you mean 'window'?)"),
        (
            "fleet: {collector: {durable: 'a b'}}",
            "fleet.collector.durable: 'a b' must match [A-Za-z0-9_-]+ (a JetStream consumer name)",
        ),
        ("fleet: {collector: {window: 50ms}}", "fleet.collector.window: '50ms' is out of range 100ms..1h"),
        ("fleet: {collector: {window: 2h}}", "fleet.collector.window: '2h' is out of range 100ms..1h"),
        ("fleet: {collector: {grace: 61m}}", "fleet.collector.grace: '61m' is out of range 0..1h"),
        ("fleet: {collector: {grace: soon}}", "fleet.collector.grace: 'soon' is not a duration (use e.g. 5s, 100ms)"),
        (
            "fleet: {collector: {sensors: {a: 1}}}",
            "fleet.collector.sensors: expected a list of sensor ids, got a mapping",
        ),
        (
            "fleet: {collector: {sensors: [edge-1, 'edge 2']}}",
            "fleet.collector.sensors[1]: 'edge 2' must be 1-64 of A-Z a-z 0-9 . _ -",
        ),
        ("fleet: {collector: {sensors: [a, b, a]}}", "fleet.collector.sensors[2]: a is listed twice"),
        ("fleet: {collector: {id: 'core 1'}}", "fleet.collector.id: 'core 1' must be 1-64 of A-Z a-z 0-9 . _ -"),
        (
            "fleet: {servers: '${NATS_URL}'}",
            "fleet.servers: environment variable NATS_URL is not set (use ${NATS_URL:-default} for a default)",
        ),
    ],
)
def test_fleet_errors(text, expected):
    with pytest.raises(ConfigError, match=f"^<string>: {re.escape(expected)}$"):
        fleet_of(text)


def test_fleet_errors_that_need_files(tmp_path, monkeypatch):
    for name in ("edge.creds", "client.pem"):
        (tmp_path / name).write_text("-")
    creds = f"fleet: {{credentials: {tmp_path}/edge.creds"
    monkeypatch.setattr(fleet_config, "_have_nkeys", lambda: False)
    with pytest.raises(
        ConfigError, match=r"^<string>: fleet.credentials: needs the nkeys package \(pip install nkeys\)$"
    ):
        fleet_of(creds + "}")
    monkeypatch.setattr(fleet_config, "_have_nkeys", lambda: True)
    with pytest.raises(ConfigError, match="^<string>: fleet.token: give credentials or a token, not both$"):
        fleet_of(creds + ", token: abc}")
    with pytest.raises(
        ConfigError,
        match=r"^<string>: fleet.tls: cert and key go together \(a client certificate and its private key\)$",
    ):
        fleet_of(f"fleet: {{tls: {{cert: {tmp_path}/client.pem}}}}")


def test_fleet_collector_shards():
    shard = fleet_of(
        "fleet: {collector: {id: A, sensors: [s1, edge-2.fra], subjects: [s1, edge-2.fra], publish: true}}"
    )
    assert shard.collector == CollectorConfig(
        id="A", sensors=("s1", "edge-2.fra"), subjects=("s1", "edge-2_fra"), publish=True, source="epochs"
    )  # subjects are subject tokens, as the sensors publish on them
    top = fleet_of("fleet: {collector: {id: net, sensors: [A, B], source: partials}}").collector
    assert (top.source, top.subjects, top.publish) == ("partials", (), False)
    assert fleet_of("fleet: {collector: {subjects: '>'}}").collector.subjects == ()  # all: the default
    assert fleet_of("fleet: {collector: {subjects: '*', sensors: [a]}}").collector.subjects == ("*",)
    text = defaults_yaml()
    assert "    subjects: []" in text and "    publish: false" in text and "    source: epochs" in text
    assert "    store_sensors: true" in text and CollectorConfig().store_sensors is True
    assert fleet_of("fleet: {collector: {store_sensors: false}}").collector.store_sensors is False


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "fleet: {collector: {subjects: {a: 1}}}",
            "fleet.collector.subjects: expected a list of sensor ids or a wildcard (* or >), got a mapping",
        ),
        (
            "fleet: {collector: {subjects: [edge-*]}}",
            "fleet.collector.subjects[0]: 'edge-*' is neither a sensor id (1-64 of A-Z a-z 0-9 . _ -) nor * or >",
        ),
        ("fleet: {collector: {subjects: [a, a]}}", "fleet.collector.subjects[1]: a is listed twice"),
        (
            "fleet: {collector: {subjects: [a, '>']}}",
            "fleet.collector.subjects: a wildcard takes every sensor: list it alone (NATS refuses overlapping filters)",
        ),
        (
            "fleet: {collector: {sensors: [a, b], subjects: [a]}}",
            "fleet.collector.subjects: does not take sensor b of fleet.collector.sensors (it would never report)",
        ),
        ("fleet: {collector: {publish: yes please}}", "fleet.collector.publish: 'yes please' is not true or false"),
        ("fleet: {collector: {store_sensors: 1}}", "fleet.collector.store_sensors: 1 is not true or false"),
        (
            "fleet: {collector: {publish: true}}",
            "fleet.collector.publish: needs fleet.collector.id (the shard's name: the top collector lists it in its sensors)",
        ),
        (
            "fleet: {collector: {id: m, publish: true, source: partials}}",
            "fleet.collector.publish: a collector of partials (source: partials) does not publish them",
        ),
        (
            "fleet: {collector: {source: partial}}",
            "fleet.collector.source: 'partial' is not one of epochs, partials (did you mean 'partials'?)",
        ),
    ],
)
def test_fleet_collector_shard_errors(text, expected):
    with pytest.raises(ConfigError, match=f"^<string>: {re.escape(expected)}$"):
        fleet_of(text)


def test_configkit_without_password():
    """URLs in messages and status lines leave out user:password@ (store, NATS servers)."""
    w = configkit.without_password
    assert w("nats://u:secret@nats-1:4222") == "nats://nats-1:4222"
    assert w("clickhouse://ns:p%40ss@ch1:8123/netspectra") == "clickhouse://ch1:8123/netspectra"
    assert w("tls://a:b@c@host:4443") == "tls://host:4443"  # the last @ of the host part
    assert w("sqlite:///var/lib/netspectra/a@b.db") == "sqlite:///var/lib/netspectra/a@b.db"  # @ in a path stays
    assert w("nats://host:4222") == "nats://host:4222" and w("host:4222") == "host:4222"


def test_configkit_fmt_time_reads_back():
    t = 1_796_119_200.0
    assert configkit.fmt_time(t) == "2026-12-01T10:00:00Z"
    assert configkit.parse_time(configkit.fmt_time(t), now=0.0) == t
