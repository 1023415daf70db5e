"""The plain-Python per-packet sketch (netspectra/_sketch_ref.py), packet by packet."""

from __future__ import annotations

import numpy as np

from netspectra import _sketch_ref as ref
from netspectra import abi
from netspectra.sketch import SketchSet, task_params
from netspectra.tasks import COUNTMIN, Layout


def reference_arrays(lay: Layout, keys, lengths) -> tuple[np.ndarray, np.ndarray]:
    """(cm abi.COUNTER, ss uint8): every packet counted by the oracle."""
    cells = [[0, 0] for _ in range(lay.cm_cells)]
    regs = bytearray(lay.ss_blocks * abi.REGS_PER_BLOCK)
    params = [(t.spec.kind, task_params(lay, t)) for t in lay.tasks]
    for key, ln in zip(keys, lengths, strict=True):
        w = ref.key_words(key)
        for kind, p in params:
            if kind == COUNTMIN:
                ref.cm_update(cells, w, int(ln), **p)
            else:
                ref.ss_update(regs, w, **p)
    cm = np.array([tuple(c) for c in cells], dtype=abi.COUNTER)
    return cm, np.frombuffer(bytes(regs), dtype=np.uint8).copy()


def reference_sketch(lay: Layout, keys, lengths) -> SketchSet:
    return SketchSet(lay, *reference_arrays(lay, keys, lengths))
