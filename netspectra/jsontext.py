"""json.dumps written piece by piece, for documents too large to hold as Python objects.

Contract: "".join(pieces(v)) == json.dumps(v') where v' is v with every Chunks
replaced by the value its text spells (default separators, ensure_ascii), so
a streamed document is byte-identical to the one json.dumps made of the whole.
A Chunks may stand as a dict value at any depth (not inside a list); dict
keys must be str.  Only dicts are walked; every other value is one json.dumps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TextIO

__all__ = ["Chunks", "array", "pieces", "write"]


class Chunks:
    """A JSON value given as its text, in pieces produced when it is written."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[str]):
        self.parts = parts


def array(items: Iterable[str]) -> Chunks:
    """A JSON array from the text of its elements (or of runs of elements,
    already joined by ", ")."""

    def parts():
        yield "["
        first = True
        for text in items:
            yield text if first else ", " + text
            first = False
        yield "]"

    return Chunks(parts())


def pieces(value) -> Iterator[str]:
    if isinstance(value, Chunks):
        yield from value.parts
    elif isinstance(value, dict):
        sep = "{"
        for k, v in value.items():
            if not isinstance(k, str):  # json.dumps would turn it into a string its own way
                raise TypeError(f"jsontext: dict key {k!r} is not a str")
            yield sep + json.dumps(k) + ": "
            yield from pieces(v)
            sep = ", "
        yield "{}" if sep == "{" else "}"
    else:
        yield json.dumps(value)


def write(value, out: TextIO) -> None:
    for p in pieces(value):
        out.write(p)
