"""Fixtures for the offline analyzer against the capture corpus and its tshark oracle.

The corpus (``../shared/pcaps`` next to the repository, or ``$NETSPECTRA_PCAPS``)
holds real captures, ``MANIFEST.tsv`` and ``oracle/oracle.py``, an independent
counter built on tshark.  The oracle is run here, once per session, with the
options that match the XDP parser's semantics (see ``ORACLE_ARGS``); its JSON goes
to a temporary directory, or to ``$NETSPECTRA_ORACLE_CACHE`` to reuse it across runs
(entries are keyed by the file's sha256, the options and the tshark version).

No root is needed.  tshark is: without it (or without the corpus) the module is
skipped with a reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("NETSPECTRA_PCAPS", REPO.parent / "shared" / "pcaps"))
ORACLE = CORPUS / "oracle" / "oracle.py"

# The link-layer paths in front of the outermost IP header that the parser
# decodes: Ethernet or Linux cooked v1/v2 ("sll") with at most NS_MAX_VLAN (4)
# 802.1Q/802.1ad tags (tshark calls a 0x8100 tag "vlan" and a 0x88a8 tag
# "ieee8021ad"; each is one "X:ethertype" step; it also decodes 0x9100 as
# "vlan", which the parser does not: no IP frame of the corpus has one), then
# optionally a PPPoE session ("pppoes:ppp") or an MPLS label stack ("mpls",
# IP straight after the bottom label); raw IP ("raw"), LINKTYPE_IPV4/IPV6
# ("(raw)": no link layer at all) and BSD NULL/LOOP ("null").  IP under a
# fifth tag, a pseudowire, PPP, NFLOG, IPNET ... is non-IP for us, and the
# oracle counts it so (ip_under_excluded_encap).  SCTP ports are in our key.
ONLY_ENCAP = r"(eth|sll):ethertype(:(vlan|ieee8021ad):ethertype){0,4}(:pppoes:ppp|:mpls)?|raw|\(raw\)|null"
ORACLE_ARGS = ("--sctp-ports", "--only-encap", ONLY_ENCAP)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, reason: str) -> None:
    if ok:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the corpus tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def read_manifest() -> list[dict]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def manifest_or_empty() -> list[dict]:
    """For parametrization at collection time: [] when the corpus is absent."""
    try:
        return read_manifest()
    except OSError:
        return []


def tshark_version(tshark: str) -> str:
    out = subprocess.run([tshark, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else "unknown"


class Oracle:
    """The oracle's JSON per capture, computed for every file on first use."""

    def __init__(self, cache: Path, tshark: str):
        self.cache = cache
        self.tshark = tshark
        self.version = tshark_version(tshark)
        tag = hashlib.sha256(repr((ORACLE_ARGS, self.version)).encode()).hexdigest()[:12]
        self.manifest = {row["file"]: row for row in read_manifest()}
        self._path = {name: cache / f"{name}.{row['sha256'][:16]}.{tag}.json" for name, row in self.manifest.items()}
        self._data: dict[str, dict] = {}
        self.seconds = 0.0

    def _run(self, name: str) -> float:
        out = self._path[name]
        if out.exists():
            return 0.0
        tmp = out.with_suffix(".tmp")
        cmd = [
            sys.executable,
            str(ORACLE),
            str(CORPUS / name),
            "--tshark",
            self.tshark,
            *ORACLE_ARGS,
            "--out",
            str(tmp),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        tmp.replace(out)
        return json.loads(out.read_text())["tshark_seconds"]

    def _fill(self) -> None:
        todo = [n for n in self.manifest if not self._path[n].exists()]
        # Largest first, so the long one does not finish alone at the end.
        todo.sort(key=lambda n: -int(self.manifest[n]["size_bytes"]))
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            self.seconds += sum(pool.map(self._run, todo))

    def __getitem__(self, name: str) -> dict:
        if name not in self._data:
            if not self._path[name].exists():
                self._fill()
            data = json.loads(self._path[name].read_text())
            assert data["sha256"] == self.manifest[name]["sha256"], f"{name}: corpus file differs from MANIFEST.tsv"
            self._data[name] = data
        return self._data[name]

    def run_on(self, path: Path) -> dict:
        """The oracle on a file outside the corpus (not cached)."""
        out = path.with_name(path.name + ".oracle.json")
        cmd = [sys.executable, str(ORACLE), str(path), "--tshark", self.tshark, *ORACLE_ARGS, "--out", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        return json.loads(out.read_text())


@pytest.fixture(scope="session")
def corpus() -> Path:
    require((CORPUS / "MANIFEST.tsv").is_file() and ORACLE.is_file(), f"capture corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def oracle(corpus, tmp_path_factory) -> Oracle:
    tshark = os.environ.get("TSHARK") or shutil.which("tshark")
    require(tshark is not None, "tshark not installed (scripts/deps.sh installs it)")
    cache = os.environ.get("NETSPECTRA_ORACLE_CACHE")
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
    return Oracle(Path(cache) if cache else tmp_path_factory.mktemp("oracle"), tshark)
