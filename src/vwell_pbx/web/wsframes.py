"""The only place that reaches into aiohttp's private WebSocket internals.

Two things the public ``WebSocketResponse`` API cannot do, and why we need them:

- **Writing several frames with one write** (``write_text_frames``). A busy connection
  drains dozens of queued events per wake-up; sending them with ``send_frame`` one at a
  time was the largest cost of fan-out (docs/performance.md). aiohttp has no batch
  API, so we build whole frames and hand them to the writer's transport at once. A
  single frame goes the same way: ``send_frame``'s own path (a coroutine, its writer's
  bookkeeping) costs more than the write itself, and every connection pays it on every
  wake-up.
- **Dropping a client that stopped reading** (``abort``). Such a client never
  completes the closing handshake, and ``transport.close()`` (what aiohttp does when
  its close times out) waits for a full write buffer to drain, forever.

Both use ``WebSocketResponse._writer`` (its ``transport`` and ``protocol``, the
latter's ``_paused`` and ``_drain_helper``) and ``WebSocketResponse._req``. When
upgrading aiohttp, check these still exist and mean the same: tests/web
(test_slow_clients, test_transports) exercise both paths over real sockets.
"""

from __future__ import annotations

import struct

from aiohttp import web

__all__ = ["abort", "drain", "send_text_frames", "text_frames", "write_text_frames"]


class _Headers(dict[int, bytes]):
    """Frame headers by payload size, made on first use. Bound: sizes below 65,536
    (a 2- or 4-byte header) are kept, at most 65,536 entries of a few bytes."""

    def __missing__(self, size: int) -> bytes:
        if size < 126:
            header = bytes((0x81, size))
        elif size < 65536:
            header = struct.pack("!BBH", 0x81, 126, size)
        else:
            return struct.pack("!BBQ", 0x81, 127, size)
        self[size] = header
        return header


_HEADERS = _Headers()


def text_frames(payloads: list[bytes]) -> bytes:
    """Unmasked, unfragmented WebSocket text frames (RFC 6455 5.2) carrying ``payloads``."""
    headers = _HEADERS
    if len(payloads) == 1:
        payload = payloads[0]
        return headers[len(payload)] + payload
    # Headers and payloads interleaved, built by C-level calls only (no per-frame
    # bytecode): the batch of a busy connection is dozens of frames.
    parts: list[bytes] = [b""] * (2 * len(payloads))
    parts[::2] = map(headers.__getitem__, map(len, payloads))
    parts[1::2] = payloads
    return b"".join(parts)


def write_text_frames(ws: web.WebSocketResponse, payloads: list[bytes]) -> bool:
    """Write several messages with one ``transport.write``; whether the transport asks
    the writer to wait (then ``await drain(ws)`` before writing more, as aiohttp's own
    writer does).

    Frames never interleave: aiohttp writes each of its own frames (pings and closes
    included) in one call too. Our WebSockets are made with ``compress=False``, so the
    frames need no per-message compression state.
    """
    writer = ws._writer
    if writer is None or writer.transport.is_closing():
        raise ConnectionResetError("the WebSocket is closing")
    writer.transport.write(text_frames(payloads))
    return bool(writer.protocol._paused)


async def drain(ws: web.WebSocketResponse) -> None:
    """Wait until the transport under ``ws`` takes writes again (returns at once if it
    already does)."""
    writer = ws._writer
    if writer is not None and writer.protocol._paused:
        await writer.protocol._drain_helper()


async def send_text_frames(ws: web.WebSocketResponse, payloads: list[bytes]) -> None:
    """``write_text_frames``, then wait for the transport to drain if it asks to."""
    if write_text_frames(ws, payloads):
        await drain(ws)


def abort(ws: web.WebSocketResponse) -> None:
    """Drop the connection under ``ws`` at once, unsent data and all."""
    transport = ws._req.transport if ws._req is not None else None
    if transport is not None:
        transport.abort()
