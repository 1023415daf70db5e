"""The committed gRPC stubs (netspectra/api/v1) are exactly what
scripts/gen_proto.py makes from proto/netspectra/v1/*.proto today."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "netspectra" / "api" / "v1"


def generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stubs_match_the_proto(tmp_path):
    written = generator().generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in written}
    committed = {p.name: p.read_bytes() for p in STUBS.iterdir() if p.is_file() and p.suffix in (".py", ".pyi")}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ from proto/netspectra/v1: run `make proto` and commit the result"


def test_stubs_say_do_not_edit():
    for p in STUBS.iterdir():
        if p.suffix in (".py", ".pyi"):
            assert p.read_text().startswith("# DO NOT EDIT: generated from proto/netspectra/v1/"), p.name


def test_every_rpc_of_the_proto_is_served():
    from netspectra.api.queries import Queries
    from netspectra.api.v1 import sensor_pb2

    service = sensor_pb2.DESCRIPTOR.services_by_name["Sensor"]
    unary = [m.name for m in service.methods if not m.server_streaming]
    streams = [m.name for m in service.methods if m.server_streaming]
    assert sorted(streams) == ["StreamAlerts", "StreamEpochs"]
    for name in unary:
        assert callable(getattr(Queries, name, None)), name
