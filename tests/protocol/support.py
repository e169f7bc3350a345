"""Feeding helpers shared by the protocol tests.

Every parse in these tests goes through ``outcome``: the bytes are fed to a fresh
``AmiParser`` in the given pieces, ``next_event`` is drained after each piece, and the
items produced (plus the error, if any) are returned. ``parse_every_way`` checks that
whole, byte-by-byte and random splits all agree, which is rule 8 of the codec.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vwell_pbx.protocol import (
    NEED_DATA,
    AmiParser,
    Greeting,
    Message,
    MissingAction,
    RemoteProtocolError,
)

Item = Greeting | Message | MissingAction


@dataclass(frozen=True)
class Outcome:
    """What a parser made of a byte stream: the items, then maybe an error."""

    items: list[Item]
    error: RemoteProtocolError | None
    buffered: int  # parser.buffered at the end (0 when nothing is left over)


def pieces_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, duplicates allowed)."""
    out: list[bytes] = []
    start = 0
    for cut in sorted(cuts):
        out.append(data[start:cut])
        start = cut
    out.append(data[start:])
    return out


def random_pieces(data: bytes, rng: random.Random, max_cuts: int = 12) -> list[bytes]:
    """``data`` cut at up to ``max_cuts`` random offsets."""
    if not data:
        return [data]
    cuts = [rng.randint(0, len(data)) for _ in range(rng.randint(1, max_cuts))]
    return pieces_at(data, cuts)


def outcome(pieces: Sequence[bytes], **parser_kwargs: Any) -> Outcome:
    """Feed ``pieces`` one by one, draining the parser after each."""
    parser = AmiParser(**parser_kwargs)
    items: list[Item] = []
    try:
        for piece in pieces:
            parser.receive_data(piece)
            while (item := parser.next_event()) is not NEED_DATA:
                assert isinstance(item, Greeting | Message | MissingAction)
                items.append(item)
    except RemoteProtocolError as exc:
        return Outcome(items, exc, parser.buffered)
    return Outcome(items, None, parser.buffered)


def parse_every_way(data: bytes, *, random_runs: int = 20, **parser_kwargs: Any) -> Outcome:
    """Parse ``data`` whole, byte by byte and in random splits; all must agree.

    Returns the outcome of the whole feed. The random splits are seeded from the data,
    so a failure reproduces.
    """
    whole = outcome([data], **parser_kwargs)
    ways = {"byte by byte": [data[i : i + 1] for i in range(len(data))]}
    rng = random.Random(zlib.crc32(data))
    for run in range(random_runs):
        ways[f"random split {run}"] = random_pieces(data, rng)
    for name, pieces in ways.items():
        other = outcome(pieces, **parser_kwargs)
        assert other.items == whole.items, name
        assert (other.error is None) == (whole.error is None), name
        if whole.error is None:
            assert other.buffered == whole.buffered, name
    return whole


def parse_ok(data: bytes, *, random_runs: int = 20, **parser_kwargs: Any) -> list[Item]:
    """Items of a stream that must parse completely, every way, with nothing left over."""
    result = parse_every_way(data, random_runs=random_runs, **parser_kwargs)
    assert result.error is None, result.error
    assert result.buffered == 0
    return result.items


def msg(*pairs: tuple[str, str], output: Iterable[str] | None = None) -> Message:
    """Shorthand for ``Message.build``."""
    return Message.build(*pairs, output=output)
