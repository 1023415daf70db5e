"""netspectra.malloc: with the mmap threshold fixed, a large array freed goes
back to the system even after glibc would have raised its threshold."""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from netspectra import malloc
    if sys.argv[1] == "fixed":
        assert malloc.keep_large_blocks_mapped()
    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) >> 10  # MiB
    first = np.ones(16 << 20, np.uint8)  # mapped; freeing it raises glibc's own threshold to 16 MiB
    del first
    before = anon()
    big = np.ones(8 << 20, np.uint8)  # by default now from the heap...
    pin = np.ones(1000, np.uint8)  # ...below a small block that keeps the heap's top in use
    del big
    print(anon() - before)
    """
)


def grown(mode: str) -> int:
    env = {"MALLOC_ARENA_MAX": "1"}  # one heap: the same on every machine
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout)


def test_a_freed_large_array_is_returned_with_the_threshold_fixed():
    assert grown("default") >= 7  # glibc's default keeps the 8 MiB: what the sensor did before
    assert grown("fixed") <= 1


def test_the_operators_setting_wins(monkeypatch):
    from netspectra import malloc

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert malloc.keep_large_blocks_mapped() is False
