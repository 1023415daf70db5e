"""Hostile and mistaken config files: each is one short error line, in well
under a second and a few MB, never a traceback, a hang or gigabytes.

Each bomb loads in a child process under an address-space limit, so a loader
that expands it fails the test instead of the machine."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

from netspectra.config import ConfigError, load_config

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from netspectra.config import ConfigError, load_config
    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = rss()
    t = time.perf_counter()
    try:
        load_config(sys.argv[1], env={}, ncpus=2)
        error = None
    except ConfigError as e:
        error = str(e)
    secs = time.perf_counter() - t
    print(json.dumps({"error": error, "secs": secs, "rss_kib": rss() - before}))
    """
)
AS_LIMIT = 1 << 30  # what a bomb may reach before the child fails (it took 1.8 GB)


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def load_in_child(path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    try:
        run = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=10,
            preexec_fn=_limit,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path} did not finish in 10 s")
    assert run.returncode == 0, f"child failed: {run.stderr[-300:]}"
    return json.loads(run.stdout)


def laughs(levels: int = 9) -> str:
    lines = ['  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "x:\n" + "\n".join(lines) + f"\nsensor:\n  interfaces: *l{levels - 1}\n"


def write(tmp_path, text: str) -> str:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return str(p)


def fifo(tmp_path) -> str:
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return str(p)


def tls_cert(tmp_path, cert: str) -> str:
    key = tmp_path / "server.key"
    key.write_text("not really a key\n")
    return write(tmp_path, f"api:\n  tls: {{cert: {cert}, key: {key}}}\n")


BOMBS = {
    "5000_digit_integer": (lambda t: write(t, "sensor:\n  top: " + "1" * 5000 + "\n"), "integer of 5000 characters"),
    "500_nested_lists": (lambda t: write(t, "sensor:\n  interfaces: " + "[" * 500 + "]" * 500 + "\n"), "nested more"),
    "billion_laughs": (lambda t: write(t, laughs()), "once aliases are expanded"),
    "dev_zero": (lambda t: "/dev/zero", "a character device, not a regular file"),
    "fifo": (fifo, "a FIFO, not a regular file"),
    "directory": (lambda t: str(t), "a directory, not a regular file"),
    "huge_file": (lambda t: write(t, "# " + "x" * (2 << 20) + "\n"), "larger than 256.0 KiB"),
    "tls_cert_dev_zero": (
        lambda t: tls_cert(t, "/dev/zero"),
        "api.tls.cert: cannot read /dev/zero: a character device",
    ),
    "tls_cert_fifo": (lambda t: tls_cert(t, fifo(t)), "fifo: a FIFO, not a regular file"),
    "long_value": (lambda t: write(t, "sensor:\n  mode: " + "x" * 200_000 + "\n"), "sensor.mode: 'xxx"),
    "long_key": (lambda t: write(t, "sensor:\n  ? " + "k" * 200_000 + "\n  : 1\n"), "sensor.kkk"),
    "long_alias_name": (lambda t: write(t, "sensor: *" + "a" * 200_000 + "\n"), "found undefined alias"),
}


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_one_short_line_fast_and_small(tmp_path, name):
    make, expected = BOMBS[name]
    got = load_in_child(make(tmp_path))
    error = got["error"]
    assert error is not None, "accepted"
    assert "\n" not in error and len(error) < 400, error[:500]
    assert expected in error
    assert got["secs"] < 0.5, got
    assert got["rss_kib"] < 32 << 10, got  # KiB: a few MB at most


def test_aliases_and_merge_keys_within_bounds_still_load(tmp_path):
    text = textwrap.dedent(
        """
        x:
          - &hh {packets: 5, bytes: 6}
        """
    )
    # the unknown top key x is the only error: the alias machinery itself is fine
    with pytest.raises(ConfigError, match=r"^.*config.yaml: x: unknown option"):
        load_config(write(tmp_path, text), env={}, ncpus=2)
    ok = "tasks:\n  - {name: a, kind: countmin, key: [src_ip], heavy_hitter: &hh {packets: 5, bytes: 6}}\n"
    ok += "  - {name: b, kind: countmin, key: [dst_ip], heavy_hitter: *hh}\n"
    cfg = load_config(write(tmp_path, ok), env={}, ncpus=2)
    assert [t.hh_packets for t in cfg.tasks] == [5, 5]


RULE = "alerts:\n  rules:\n    - {name: s, kind: traffic_spike, %s}\n"
NOTIFIER = "alerts:\n  notifiers:\n    - {kind: webhook, url: 'http://127.0.0.1:1/', %s}\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (RULE % "factor: .inf", "alerts.rules[0].factor: inf is not a finite number"),
        (RULE % "min_rate: .inf", "alerts.rules[0].min_rate: inf is not a finite number"),
        (RULE % "factor: '1e999'", "alerts.rules[0].factor: inf is not a finite number"),
        (NOTIFIER % "timeout: 1e30", "alerts.notifiers[0].timeout: '1e30' is longer than 100 years"),
        (NOTIFIER % "backoff: 1.0e+30", "alerts.notifiers[0].backoff: 1e+30 is longer than 100 years"),
        ("alerts:\n  repeat_interval: 99999999d\n", "alerts.repeat_interval: '99999999d' is longer than 100 years"),
        ("store:\n  retention: {raw: 1e30}\n", "store.retention.raw: '1e30' is longer than 100 years"),
        ("sensor:\n  max_kernel_memory: 99999999999GiB\n", "sensor.max_kernel_memory: '99999999999GiB' is more than"),
    ],
)
def test_values_that_can_never_work_are_refused_at_load(tmp_path, text, expected):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text), env={}, ncpus=2)
    assert expected in str(ei.value)
    assert "\n" not in str(ei.value)


def test_nan_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"alerts.rules\[0\].factor: nan is not a number"):
        load_config(write(tmp_path, RULE % "factor: .nan"), env={}, ncpus=2)


def test_huge_integer_from_the_environment_is_one_short_line(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "sensor:\n  top: ${TOP}\n"), env={"TOP": "9" * 4000}, ncpus=2)
    msg = str(ei.value)
    assert msg.startswith(f"{tmp_path}/config.yaml: sensor.top: '999") and "is not an integer" in msg
    assert len(msg) < 200
