"""The only place that reaches into aiohttp's private WebSocket internals.

Two things the public ``WebSocketResponse`` API cannot do, and why we need them:

- **Writing several frames with one write** (``send_text_frames``). A busy connection
  drains dozens of queued events per wake-up; sending them with ``send_frame`` one at a
  time was the largest cost of fan-out (docs/performance.md). aiohttp has no batch
  API, so we build whole frames and hand them to the writer's transport at once.
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

__all__ = ["abort", "send_text_frames", "text_frames"]


def text_frames(payloads: list[bytes]) -> bytes:
    """Unmasked, unfragmented WebSocket text frames (RFC 6455 5.2) carrying ``payloads``."""
    parts: list[bytes] = []
    for payload in payloads:
        size = len(payload)
        if size < 126:
            parts.append(bytes((0x81, size)))
        elif size < 65536:
            parts.append(struct.pack("!BBH", 0x81, 126, size))
        else:
            parts.append(struct.pack("!BBQ", 0x81, 127, size))
        parts.append(payload)
    return b"".join(parts)


async def send_text_frames(ws: web.WebSocketResponse, payloads: list[bytes]) -> None:
    """Send several messages with one write, then wait for the transport to drain as
    aiohttp's own writer does.

    Frames never interleave: aiohttp writes each of its own frames (pings and closes
    included) in one call too. Our WebSockets are made with ``compress=False``, so the
    frames need no per-message compression state.
    """
    writer = ws._writer
    if writer is None or writer.transport.is_closing():
        raise ConnectionResetError("the WebSocket is closing")
    writer.transport.write(text_frames(payloads))
    protocol = writer.protocol
    if protocol._paused:
        await protocol._drain_helper()


def abort(ws: web.WebSocketResponse) -> None:
    """Drop the connection under ``ws`` at once, unsent data and all."""
    transport = ws._req.transport if ws._req is not None else None
    if transport is not None:
        transport.abort()
