"""glibc's allocator, set for a process that makes and frees arrays of many
MiB every epoch (sketches, merged windows, rankings).

glibc serves a request above M_MMAP_THRESHOLD with its own mmap and gives it
back on free, but by default it raises that threshold to the size of every
such block freed, up to 32 MiB.  After the first freed sketch, every later
one comes from the heaps of the threads that ask (the epoch loop, the warm
thread, each query thread), where freed space is kept, not returned: the
sensor measured 150 MiB more RSS under query load for it (docs/api.md
"Resources").  A fixed threshold keeps large arrays on mmap, at the cost of
page faults when memory is used again (bench/malloc_cost: ~15% more CPU per
epoch of 100k flows with a derived sketch and a window merged).  An
operator's MALLOC_MMAP_THRESHOLD_ wins.  Elsewhere than glibc, nothing is done.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20  # blocks from 1 MiB up are mapped on their own, and unmapped when freed


def _libc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def keep_large_blocks_mapped() -> bool:
    """Fix the mmap threshold at MMAP_THRESHOLD; True if it was set here."""
    libc = _libc()
    if libc is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def trim() -> None:
    """Give the heaps' free space back (after compiling: LLVM's working memory)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
