"""Throwaway network namespaces joined by a veth pair, for the demo and tests.

    with VethPair() as v:          # ns v.ns_a: v.dev_a  <-->  ns v.ns_b: v.dev_b
        with v.inside_b(): ...     # this thread in ns b (attach the sensor here)
        v.send(frames)             # raw frames out of dev_a, into dev_b

Names are unique per process and call; everything is removed on exit, even
after an exception.  The host's own interfaces are never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def inside(ns: str):
    """Run the calling thread in network namespace `ns`, then return."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(target)
        os.close(home)


class VethPair:
    def __init__(self, mtu: int = 1600, tag: str | None = None, links: int = 1):
        t = tag or secrets.token_hex(3)
        self.ns_a, self.ns_b = f"nsp-{t}-a", f"nsp-{t}-b"
        # links: veth pairs between the two namespaces (several sensors, one each)
        self.links = [(f"nspa{t}", f"nspb{t}")] + [(f"nspa{t}{i}", f"nspb{t}{i}") for i in range(1, links)]
        self.dev_a, self.dev_b = self.links[0]
        self.mtu = mtu
        self._socks: dict[int, socket.socket] = {}

    def __enter__(self) -> VethPair:
        try:
            _ip("netns", "add", self.ns_a)
            _ip("netns", "add", self.ns_b)
            for ns in (self.ns_a, self.ns_b):  # no IPv6 ND/MLD chatter: only our frames cross
                subprocess.run(
                    ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"],
                    check=True, capture_output=True,
                )  # fmt: skip
            for i, (dev_a, dev_b) in enumerate(self.links):
                _ip("link", "add", dev_a, "netns", self.ns_a, "mtu", str(self.mtu), "type", "veth",
                    "peer", "name", dev_b, "netns", self.ns_b, "mtu", str(self.mtu))  # fmt: skip
                for ns, dev, addr in ((self.ns_a, dev_a, f"10.199.{i}.1/30"), (self.ns_b, dev_b, f"10.199.{i}.2/30")):
                    _ip("-n", ns, "addr", "add", addr, "dev", dev)
                    _ip("-n", ns, "link", "set", dev, "up")
            for ns in (self.ns_a, self.ns_b):
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        for ns in (self.ns_a, self.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def inside_a(self):
        return inside(self.ns_a)

    def inside_b(self):
        return inside(self.ns_b)

    def ifindex_b(self) -> int:
        with self.inside_b():
            return socket.if_nametoindex(self.dev_b)

    def sender(self, link: int = 0) -> socket.socket:
        """An AF_PACKET socket on the link's dev_a: each send() puts one frame on the wire."""
        if link not in self._socks:
            with self.inside_a():
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                s.bind((self.links[link][0], 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            self._socks[link] = s
        return self._socks[link]

    def send(self, frames, link: int = 0) -> int:
        """Send every frame (over link `link`); retry on a full queue so none is lost on our side."""
        s = self.sender(link)
        n = 0
        for f in frames:
            while True:
                try:
                    s.send(f)
                    break
                except BlockingIOError:
                    continue
                except OSError as e:
                    if e.errno == 105:  # ENOBUFS: queue full, try again
                        continue
                    raise
            n += 1
        return n
