"""Start-up of the sensor without a kernel: the compilation runs in a worker
thread the main thread waits for, so Ctrl-C is seen at once (the live test is
tests/kernel/test_cli.py::test_ctrl_c_or_sigterm_while_compiling_exits_cleanly)."""

import _thread
import io
import os
import signal
import threading
import time

import pytest

from netspectra.kernel.program import KernelError
from netspectra.sensor import Interrupted, compile_program


def test_compile_program_says_what_it_does_and_returns_the_program():
    err = io.StringIO()
    assert compile_program("eth7", lambda: "prog", err) == "prog"
    assert err.getvalue() == "netspectra: compiling the XDP program for eth7 (bcc, a few seconds)...\n"


def test_compile_program_raises_the_builds_error_in_the_caller():
    def build():
        raise KernelError("cannot compile or load bpf/sensor.c: boom")

    with pytest.raises(KernelError, match="boom"):
        compile_program("eth7", build, io.StringIO())


def test_ctrl_c_during_a_compilation_does_not_wait_for_it():
    release = threading.Event()
    threading.Timer(0.2, _thread.interrupt_main).start()  # what SIGINT's default handler does
    t0 = time.monotonic()
    try:
        with pytest.raises(Interrupted, match="interrupted while compiling; nothing attached") as e:
            compile_program("eth7", lambda: release.wait(30), io.StringIO(), poll_s=0.05)
        assert e.value.compiling  # the caller must leave with os._exit: the build still runs
        assert time.monotonic() - t0 < 5
    finally:
        release.set()


def test_sigterm_during_a_compilation_is_a_clean_stop_and_the_handler_is_restored():
    release = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    try:
        with pytest.raises(Interrupted, match="SIGTERM while compiling; nothing attached") as e:
            compile_program("eth7", lambda: release.wait(30), io.StringIO(), poll_s=0.05)
        assert e.value.compiling and e.value.status == 0  # systemctl stop: exit 0, as once attached
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        release.set()
