"""`netspectra analyze --json` is streamed, and its text is byte for byte the
whole document it used to build in memory (tests/helpers/analyze_json.py),
on every real capture of the corpus: whole, per epoch, and with --top."""

from __future__ import annotations

import pytest

from tests.helpers.analyze_json import reference, streamed

from .conftest import CORPUS, require

CAPTURES = sorted(p for p in CORPUS.glob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap"))


@pytest.mark.parametrize("epoch,top", [(None, None), (60.0, 3)], ids=["whole", "epoch60s-top3"])
def test_streamed_json_is_the_whole_document_on_every_real_capture(epoch, top):
    require(len(CAPTURES) > 50, f"capture corpus {CORPUS} missing")
    options = [*(["--epoch", f"{epoch:g}s"] if epoch else []), *(["--top", str(top)] if top else [])]
    unreadable = 0
    for path in CAPTURES:
        ref = reference([str(path)], epoch, top)
        code, out = streamed([str(path)], *options)
        if ref is None:  # refused before any output, as before
            assert (code, out) == (2, ""), path.name
            unreadable += 1
            continue
        assert code in (0, 1), path.name  # 1: damaged, the report covers what came before
        assert out == ref, path.name
    assert unreadable < len(CAPTURES) // 4
