"""The few libbpf calls bcc 0.26 does not offer, through ctypes.

bcc compiles and loads; libbpf.so.1 (a dependency of bcc's packages) attaches
XDP as a bpf_link, queries an interface's XDP program, runs a program on a
crafted packet and drains hash maps in batches.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os

BPF_XDP = 37  # enum bpf_attach_type
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
MODE_FLAGS = {"auto": 0, "generic": XDP_FLAGS_SKB_MODE, "native": XDP_FLAGS_DRV_MODE}

_lib = None


def lib() -> ct.CDLL:
    global _lib
    if _lib is None:
        _lib = ct.CDLL("libbpf.so.1", use_errno=True)
        _lib.bpf_link_create.argtypes = [ct.c_int, ct.c_int, ct.c_int, ct.c_void_p]
        _lib.bpf_xdp_query_id.argtypes = [ct.c_int, ct.c_int, ct.POINTER(ct.c_uint32)]
        _lib.bpf_xdp_query.argtypes = [ct.c_int, ct.c_int, ct.c_void_p]
        _lib.bpf_xdp_detach.argtypes = [ct.c_int, ct.c_uint32, ct.c_void_p]
        _lib.bpf_prog_test_run_opts.argtypes = [ct.c_int, ct.c_void_p]
        _lib.bpf_map_lookup_and_delete_batch.argtypes = [
            ct.c_int,
            ct.c_void_p,
            ct.c_void_p,
            ct.c_void_p,
            ct.c_void_p,
            ct.POINTER(ct.c_uint32),
            ct.c_void_p,
        ]
        _lib.bpf_map_update_elem.argtypes = [ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_uint64]
    return _lib


class BpfError(OSError):
    pass


def _check(rc: int, what: str) -> int:
    if rc < 0:
        # libbpf returns -errno (and also sets errno)
        code = -rc if rc != -1 else ct.get_errno()
        raise BpfError(code, f"{what}: {os.strerror(code)}")
    return rc


class _LinkCreateOpts(ct.Structure):
    _fields_ = [("sz", ct.c_size_t), ("flags", ct.c_uint32), ("_pad", ct.c_uint32), ("_union", ct.c_uint64 * 8)]


def xdp_link(prog_fd: int, ifindex: int, mode: str = "auto") -> int:
    """Attach as a bpf_link: the kernel detaches it when its last fd closes,
    so a crashed or killed agent leaves nothing behind."""
    opts = _LinkCreateOpts(sz=ct.sizeof(_LinkCreateOpts), flags=MODE_FLAGS[mode])
    return _check(lib().bpf_link_create(prog_fd, ifindex, BPF_XDP, ct.byref(opts)), "bpf_link_create")


def xdp_query_id(ifindex: int, mode: str = "auto") -> int:
    """ID of the XDP program attached to ifindex (0 = none)."""
    pid = ct.c_uint32(0)
    _check(lib().bpf_xdp_query_id(ifindex, MODE_FLAGS[mode], ct.byref(pid)), "bpf_xdp_query_id")
    return pid.value


class _XdpQueryOpts(ct.Structure):
    _fields_ = [
        ("sz", ct.c_size_t),
        ("prog_id", ct.c_uint32),
        ("drv_prog_id", ct.c_uint32),
        ("hw_prog_id", ct.c_uint32),
        ("skb_prog_id", ct.c_uint32),
        ("attach_mode", ct.c_uint8),
    ]


ATTACH_MODES = {0: "none", 1: "native", 2: "generic", 3: "offload", 4: "multi"}


def xdp_attach_mode(ifindex: int) -> str:
    """How the interface's XDP program runs: native, generic, ... or none."""
    opts = _XdpQueryOpts(sz=ct.sizeof(_XdpQueryOpts))
    _check(lib().bpf_xdp_query(ifindex, 0, ct.byref(opts)), "bpf_xdp_query")
    return ATTACH_MODES.get(opts.attach_mode, str(opts.attach_mode))


def xdp_detach(ifindex: int, mode: str = "auto") -> None:
    _check(lib().bpf_xdp_detach(ifindex, MODE_FLAGS[mode], None), "bpf_xdp_detach")


class _TestRunOpts(ct.Structure):
    _fields_ = [
        ("sz", ct.c_size_t),
        ("data_in", ct.c_void_p),
        ("data_out", ct.c_void_p),
        ("data_size_in", ct.c_uint32),
        ("data_size_out", ct.c_uint32),
        ("ctx_in", ct.c_void_p),
        ("ctx_out", ct.c_void_p),
        ("ctx_size_in", ct.c_uint32),
        ("ctx_size_out", ct.c_uint32),
        ("retval", ct.c_uint32),
        ("repeat", ct.c_int),
        ("duration", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("cpu", ct.c_uint32),
        ("batch_size", ct.c_uint32),
    ]


def test_run(prog_fd: int, packet: bytes, repeat: int = 1) -> tuple[int, int]:
    """Run an XDP program on one packet (BPF_PROG_TEST_RUN).
    Returns (XDP action, mean ns per run as measured by the kernel)."""
    buf = ct.create_string_buffer(bytes(packet), len(packet))
    opts = _TestRunOpts(
        sz=ct.sizeof(_TestRunOpts),
        data_in=ct.cast(buf, ct.c_void_p),
        data_size_in=len(packet),
        repeat=max(1, repeat),
    )
    _check(lib().bpf_prog_test_run_opts(prog_fd, ct.byref(opts)), "bpf_prog_test_run")
    return opts.retval, opts.duration


def map_update(fd: int, key: ct._SimpleCData, value: ct._SimpleCData) -> None:
    _check(lib().bpf_map_update_elem(fd, ct.byref(key), ct.byref(value), 0), "bpf_map_update_elem")


def lookup_and_delete_batch(fd: int, keys, values, batch: int) -> int:
    """Move up to len(keys) entries of a hash map into the numpy buffers
    `keys` and `values`, deleting them.  Returns how many were moved."""
    lb = lib()
    total = 0
    out = ct.c_uint32(0)
    in_ptr = None
    cap = len(keys)
    while total < cap:
        n = min(batch, cap - total)
        count = ct.c_uint32(n)
        rc = lb.bpf_map_lookup_and_delete_batch(
            fd,
            in_ptr,
            ct.byref(out),
            keys[total:].ctypes.data,
            values[total:].ctypes.data,
            ct.byref(count),
            None,
        )
        err = ct.get_errno() if rc < 0 else 0
        if rc < 0 and rc != -1:
            err = -rc
        total += count.value
        if rc < 0:
            if err == errno.ENOENT:  # no more entries
                break
            if err == errno.ENOSPC and count.value == 0 and n < cap - total:
                batch *= 2  # a bucket holds more than `batch` entries
                continue
            raise BpfError(err, f"bpf_map_lookup_and_delete_batch: {os.strerror(err)}")
        in_ptr = ct.byref(out)
    return total
