"""tasks.layout(): where tasks land in the shared arrays and what the kernel reads."""

import numpy as np
import pytest

from netspectra import abi
from netspectra.config import default_tasks
from netspectra.tasks import TaskSpec, hh_per_cpu, layout


def test_default_layout_folds_five_field_sets():
    lay = layout(default_tasks(), ncpus=2)
    cfg = lay.config[0]
    # src_ip (src task, spread key, fan-in element), the 5-tuple, dst_ip, (src_ip, dst_ip), dst_port
    assert cfg["nfieldsets"] == 5
    names = {abi.fields_from_names(("src_ip",)): 0}
    for t in lay.tasks:
        row = cfg["tasks"][t.index]
        assert tuple(cfg["fieldset_wmask"][row["key_set"]]) == abi.field_wmask(t.spec.fields)
        assert tuple(row["key_wmask"]) == abi.field_wmask(t.spec.fields)
        if t.spec.kind == "superspread":
            assert tuple(cfg["fieldset_wmask"][row["elem_set"]]) == abi.field_wmask(t.spec.elem_fields)
    assert cfg["tasks"][lay.by_name("src").index]["key_set"] == names[abi.F_SRC_IP]
    # unused slots are off
    assert all(cfg["tasks"][i]["kind"] == abi.TASK_OFF for i in range(len(lay.tasks), abi.MAX_TASKS))


def test_arrays_do_not_overlap():
    specs = [
        TaskSpec("a", "countmin", ("src_ip",), depth=3, width=1024),
        TaskSpec("b", "superspread", ("dst_ip",), ("src_ip",), width=4096, registers=64),
        TaskSpec("c", "countmin", ("dst_port",), depth=2, width=64),
    ]
    lay = layout(specs)
    cm = [(t.offset, t.offset + t.size) for t in lay.kind("countmin")]
    assert cm == [(0, 3 * 1024), (3 * 1024, 3 * 1024 + 2 * 64)]
    (ss,) = lay.kind("superspread")
    assert (ss.offset, ss.size) == (0, 4096 // 8)  # one pool of 4096 one-byte registers
    assert lay.config[0]["tasks"][ss.index]["depth"] == 1
    assert lay.cm_cells >= cm[-1][1] and lay.ss_blocks >= ss.size


@pytest.mark.parametrize("thr,ncpus,want", [(0, 4, 0), (1, 4, 1), (1000, 1, 1000), (1000, 3, 334), (8, 8, 1)])
def test_per_cpu_threshold_is_pigeonhole(thr, ncpus, want):
    """If a key reaches thr over all CPUs, some CPU saw at least hh_per_cpu."""
    got = hh_per_cpu(thr, ncpus)
    assert got == want
    if thr:
        assert got * ncpus >= thr and (got - 1) * ncpus < thr


def test_too_many_tasks_refused():
    with pytest.raises(ValueError, match="at most 8"):
        layout([TaskSpec(f"t{i}", "countmin", ("src_ip",)) for i in range(9)])


def test_config_record_is_the_abi_dtype():
    lay = layout(default_tasks())
    assert lay.config.dtype == abi.CONFIG and lay.config.nbytes == abi.CONFIG.itemsize
    assert np.all(lay.config[0]["tasks"]["depth"][: len(lay.tasks)] > 0)
