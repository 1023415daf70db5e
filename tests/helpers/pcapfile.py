"""Write a classic pcap file of frames (microsecond timestamps, one per 1 µs)."""

from __future__ import annotations

import struct
from pathlib import Path


def write_pcap(path: Path, frames: list[bytes], linktype: int = 1) -> Path:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1_000_000, i % 1_000_000, len(fr), len(fr)))
            f.write(fr)
    return path
