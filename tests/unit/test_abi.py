"""netspectra/bpf/netspectra.h vs netspectra/abi.py: one ABI, written twice.

The C side is the compiler's word, not a hand-made table: the header is
parsed only to learn *which* structs, fields and constants exist; gcc then
prints sizeof/offsetof/values of exactly those, and every one of them must
match abi.py -- and every field and constant abi.py has must exist in C.
Adding a field or a constant on one side only fails here.

No root needed; needs gcc and /usr/include/linux/types.h.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from netspectra import abi

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "netspectra" / "bpf" / "netspectra.h"
SENSOR = ROOT / "netspectra" / "bpf" / "sensor.c"

# C struct -> abi dtype.  struct ns_regs has no dtype (the agent views the
# registers as bytes); it is checked against abi.REGS_PER_BLOCK below.
DTYPES = {
    "ns_key": abi.KEY,
    "ns_flow": abi.FLOW,
    "ns_counter": abi.COUNTER,
    "ns_totals": abi.TOTALS,
    "ns_task": abi.TASK,
    "ns_config": abi.CONFIG,
    "ns_ctl": abi.CTL,
    "ns_cand": abi.CAND,
    "ns_seen": abi.SEEN,
}
NO_DTYPE = {"ns_regs"}

SCALARS = {"__u8": "u1", "__u16": "<u2", "__u32": "<u4", "__u64": "<u8"}

FIELD_RE = re.compile(r"^(struct\s+\w+|__u8|__u16|__u32|__u64)\s+(\w+)\s*((?:\[\s*\w+\s*\]\s*)*);$")


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def parse_header(text: str):
    """({struct: [(ctype, field, dim or None)]}, [define names with a value])."""
    src = strip_comments(text)
    structs = {}
    for m in re.finditer(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", src, flags=re.S):
        fields = []
        for decl in m.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            fm = FIELD_RE.match(decl + ";")
            assert fm, f"struct {m.group(1)}: cannot read declaration {decl!r} (teach test_abi.py)"
            dims = tuple(re.findall(r"\[\s*(\w+)\s*\]", fm.group(3))) or None
            fields.append((fm.group(1), fm.group(2), dims))
        assert m.group(1) not in structs, f"struct {m.group(1)} defined twice"
        structs[m.group(1)] = fields
    defines = []
    for m in re.finditer(r"^\s*#\s*define\s+(\w+)(?:[ \t]+(\S[^\n]*))?$", src, flags=re.M):
        if m.group(2) is None:  # include guard
            assert m.group(1) == "NETSPECTRA_H", f"#define {m.group(1)} without a value"
            continue
        defines.append(m.group(1))
    return structs, defines


@pytest.fixture(scope="module")
def header():
    return parse_header(HEADER.read_text())


@pytest.fixture(scope="module")
def c_side(header, tmp_path_factory):
    """Compile a probe against the real header; returns (layout, values):
    layout[struct] = {"size": n, "fields": {name: (offset, size, elem_size)}},
    values[define] = int."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    structs, defines = header
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/types.h>",
        '#include "netspectra.h"',
        "int main(void) {",
    ]
    for s, fields in structs.items():
        lines.append(f'  printf("S {s} %zu\\n", sizeof(struct {s}));')
        for _, f, dim in fields:
            elem = f"sizeof(((struct {s} *)0)->{f}{'[0]' * len(dim or ())})"
            lines.append(
                f'  printf("F {s} {f} %zu %zu %zu\\n", offsetof(struct {s}, {f}), '
                f"sizeof(((struct {s} *)0)->{f}), {elem});"
            )
    for d in defines:
        lines.append(f'  printf("D {d} %llu\\n", (unsigned long long)({d}));')
    lines += ["  return 0;", "}"]
    d = tmp_path_factory.mktemp("abi")
    (d / "probe.c").write_text("\n".join(lines) + "\n")
    r = subprocess.run(
        ["gcc", "-std=gnu11", "-Wall", "-Werror", f"-I{HEADER.parent}", "-o", str(d / "probe"), str(d / "probe.c")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, f"probe does not compile:\n{r.stderr}"
    out = subprocess.run([str(d / "probe")], capture_output=True, text=True, check=True).stdout
    layout, values = {}, {}
    for line in out.splitlines():
        kind, *rest = line.split()
        if kind == "S":
            layout[rest[0]] = {"size": int(rest[1]), "fields": {}}
        elif kind == "F":
            layout[rest[0]]["fields"][rest[1]] = tuple(int(x) for x in rest[2:])
        else:
            values[rest[0]] = int(rest[1])
    return layout, values


# ------------------------------------------------------------------ parsing


def test_parser_reads_the_header_it_is_meant_to():
    """The header parser itself: it must see every struct and constant
    (otherwise the comparisons below would silently check nothing)."""
    structs, defines = parse_header(HEADER.read_text())
    assert set(structs) == set(DTYPES) | NO_DTYPE
    assert [f for _, f, _ in structs["ns_key"]] == ["src", "dst", "sport", "dport", "proto", "pad"]
    assert {"NS_NCOUNTERS", "NS_HASH_MUL", "NS_C_ALL", "NS_F_PROTO", "NS_TASK_SS"} <= set(defines)
    # and it refuses what it cannot read rather than skipping it
    with pytest.raises(AssertionError):
        parse_header("struct x { int a, b; };")


def test_every_struct_has_a_mirror(header):
    structs, _ = header
    missing = set(structs) - set(DTYPES) - NO_DTYPE
    assert not missing, f"structs without an abi.py dtype: {missing}"
    gone = (set(DTYPES) | NO_DTYPE) - set(structs)
    assert not gone, f"abi.py mirrors structs the header no longer has: {gone}"


# ------------------------------------------------------------------ structs


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_struct_matches_dtype(name, header, c_side):
    structs, _ = header
    layout, _ = c_side
    dt = DTYPES[name]
    c = layout[name]
    assert dt.itemsize == c["size"], f"sizeof(struct {name}) = {c['size']}, abi itemsize {dt.itemsize}"
    assert list(dt.names) == [f for _, f, _ in structs[name]], f"struct {name}: field names/order differ"
    for ctype, f, dim in structs[name]:
        off, size, elem = c["fields"][f]
        sub, doff = dt.fields[f][:2]
        assert doff == off, f"{name}.{f}: offset C {off}, abi {doff}"
        assert sub.itemsize == size, f"{name}.{f}: size C {size}, abi {sub.itemsize}"
        base = sub.base if dim else sub
        if dim:
            assert len(sub.shape) == len(dim), f"{name}.{f}: C has {len(dim)} dimensions, abi {sub.shape}"
            assert int(np.prod(sub.shape)) == size // elem, (
                f"{name}.{f}: C has {size // elem} elements, abi {sub.shape}"
            )
        else:
            assert sub.shape == (), f"{name}.{f}: abi has an array, C a scalar"
        if ctype in SCALARS:
            assert base == np.dtype(SCALARS[ctype]), f"{name}.{f}: C {ctype}, abi {base}"
        else:
            inner = ctype.split()[1]
            assert inner in DTYPES, f"{name}.{f}: nested struct {inner} has no dtype"
            assert base == DTYPES[inner], f"{name}.{f}: abi nests {base}, C struct {inner}"


def test_regs_block(c_side):
    layout, _ = c_side
    assert layout["ns_regs"]["size"] == abi.REGS_PER_BLOCK
    assert layout["ns_regs"]["fields"]["r"] == (0, abi.REGS_PER_BLOCK, 1)


def test_key_is_whole_words(c_side):
    layout, values = c_side
    assert layout["ns_key"]["size"] == 8 * values["NS_KEY_WORDS"] == 8 * abi.KEY_WORDS


def test_field_masks_cover_the_c_fields(c_side):
    """field_wmask(F_x) keeps exactly the bytes of field x as the compiler lays it out."""
    layout, values = c_side
    fields = layout["ns_key"]["fields"]
    by_bit = {
        values["NS_F_SRC_IP"]: "src",
        values["NS_F_DST_IP"]: "dst",
        values["NS_F_SRC_PORT"]: "sport",
        values["NS_F_DST_PORT"]: "dport",
        values["NS_F_PROTO"]: "proto",
    }
    for bit, f in by_bit.items():
        off, size, _ = fields[f]
        want = bytearray(layout["ns_key"]["size"])
        want[off : off + size] = b"\xff" * size
        got = b"".join(w.to_bytes(8, "little") for w in abi.field_wmask(bit))
        assert got == bytes(want), f"field_wmask({f}) wrong"


# ------------------------------------------------------------------ constants


def abi_value(define: str):
    """The abi.py name a header constant mirrors (None: not mirrored)."""
    name = define.removeprefix("NS_")
    if name.startswith("C_") and name != "C_NOUTCOMES":
        key = name[2:].lower()
        return abi.C.get(key)
    if name == "C_NOUTCOMES":
        return abi.NOUTCOMES
    return getattr(abi, name, None)


def test_every_constant_matches(header, c_side):
    _, defines = header
    _, values = c_side
    assert set(values) == set(defines)
    for d in defines:
        v = abi_value(d)
        assert v is not None, f"#define {d} has no counterpart in abi.py"
        assert v == values[d], f"{d}: C {values[d]:#x}, abi {v:#x}"


def test_counter_slots_in_order(c_side):
    """abi.COUNTERS is the NS_C_* slots in index order, one name per slot."""
    _, values = c_side
    slots = {k: v for k, v in values.items() if k.startswith("NS_C_") and k != "NS_C_NOUTCOMES"}
    order = sorted(slots, key=slots.get)
    assert [slots[k] for k in order] == list(range(values["NS_NCOUNTERS"])), "NS_C_* slots not 0..NCOUNTERS-1"
    assert tuple(k.removeprefix("NS_C_").lower() for k in order) == abi.COUNTERS
    assert abi.NCOUNTERS == values["NS_NCOUNTERS"]
    assert abi.TOTALS.fields["c"][0].shape == (values["NS_NCOUNTERS"],)
    # the groups the header comment promises
    assert abi.OUTCOMES == tuple(k.removeprefix("NS_C_").lower() for k in order if k.startswith("NS_C_OUT_"))
    assert abi.PROTO_CLASSES == tuple(k.removeprefix("NS_C_").lower() for k in order if k.startswith("NS_C_PROTO_"))
    assert values["NS_C_NOUTCOMES"] == values["NS_C_PROTO_TCP"] == len(abi.OUTCOMES) + 1


def test_abi_constants_all_exist_in_c(c_side):
    """The reverse direction: abi.py's mirrored constants all come from the header."""
    _, values = c_side
    mirrored = {
        n
        for n in dir(abi)
        if n.isupper()
        and isinstance(getattr(abi, n), int)
        and (
            n.startswith(("F_", "TASK_", "MAX_", "HASH_", "FMIX_", "TS_", "FLOW_", "SEEN_"))
            or n in ("NSETS", "KEY_WORDS", "ABI_VERSION", "CLOCK_LATE_NS")
        )
    }
    for n in mirrored:
        assert f"NS_{n}" in values, f"abi.{n} has no #define NS_{n}"
    for name in abi.COUNTERS:
        assert f"NS_C_{name.upper()}" in values, f"abi counter {name!r} has no NS_C_ slot"
    assert abi.FIELD_BITS == {
        "src_ip": values["NS_F_SRC_IP"],
        "dst_ip": values["NS_F_DST_IP"],
        "src_port": values["NS_F_SRC_PORT"],
        "dst_port": values["NS_F_DST_PORT"],
        "proto": values["NS_F_PROTO"],
    }
    assert len(abi.FIELD_BITS) == len([k for k in values if k.startswith("NS_F_")])
    assert abi.CONFIG.fields["tasks"][0].shape == (values["NS_MAX_TASKS"],)
    assert abi.CONFIG.fields["fieldset_wmask"][0].shape == (values["NS_MAX_FIELDSETS"], values["NS_KEY_WORDS"])


# ------------------------------------------------------------------ maps

TABLE_RE = re.compile(r"^\s*(BPF_[A-Z0-9_]+)\s*\((.*?)\)\s*;", re.M | re.S)
# macros whose map name is the 4th argument (type, key, value, name, ...)
NAME_4TH = {"BPF_F_TABLE", "BPF_TABLE", "BPF_TABLE_PINNED", "BPF_F_TABLE_PINNED"}
TABLE_MACROS = NAME_4TH | {
    "BPF_ARRAY",
    "BPF_HASH",
    "BPF_PERCPU_ARRAY",
    "BPF_PERCPU_HASH",
    "BPF_LRU_HASH",
    "BPF_RINGBUF_OUTPUT",
    "BPF_PERF_OUTPUT",
    "BPF_ARRAY_OF_MAPS",
    "BPF_HASH_OF_MAPS",
    "BPF_QUEUE",
    "BPF_STACK",
    "BPF_PROG_ARRAY",
    "BPF_DEVMAP",
    "BPF_CPUMAP",
    "BPF_XSKMAP",
}


def declared_tables(src: str) -> list[str]:
    names = []
    for m in TABLE_RE.finditer(strip_comments(src)):
        macro, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if macro not in TABLE_MACROS:
            continue
        names.append(args[3] if macro in NAME_4TH else args[0])
    return names


def test_table_parser():
    src = 'BPF_F_TABLE("array", u32, struct x, t1, 4, 0);\n/* BPF_ARRAY(no, u32, 1); */\nBPF_ARRAY(t2, u32, 1);\n'
    assert declared_tables(src) == ["t1", "t2"]


def test_map_names_match_sensor():
    names = declared_tables(SENSOR.read_text())
    assert len(names) == len(set(names)), f"duplicate tables: {names}"
    assert set(names) == set(abi.MAP_NAMES)
    assert len(abi.MAP_NAMES) == len(set(abi.MAP_NAMES))
