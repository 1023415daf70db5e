"""Generate the committed gRPC/protobuf stubs from proto/netspectra/v1/*.proto.

    python scripts/gen_proto.py            # rewrite netspectra/api/v1/
    python scripts/gen_proto.py --out DIR  # write DIR/netspectra/api/v1/ (the drift test)

The .proto files are mapped to the import path netspectra/api/v1/ so the
generated modules import each other as netspectra.api.v1.* with no rewriting.
Output depends on the grpcio-tools version, pinned in pyproject.toml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "netspectra" / "v1"
PACKAGE = Path("netspectra/api/v1")
HEADER = "# DO NOT EDIT: generated from proto/netspectra/v1/{name} by scripts/gen_proto.py (`make proto`).\n"


def generate(out_root: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    dest = out_root / PACKAGE
    dest.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PACKAGE.as_posix()}={PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(f"{PACKAGE.as_posix()}/{p.name}" for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for p in protos:
        stem = p.stem
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            f = dest / f"{stem}{suffix}"
            f.write_text(HEADER.format(name=p.name) + f.read_text())
            written.append(f)
    init = dest / "__init__.py"
    init.write_text(HEADER.format(name="*.proto"))
    return [init, *written]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repository)")
    a = ap.parse_args()
    for f in generate(a.out):
        print(f, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
