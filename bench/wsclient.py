"""A minimal WebSocket client (asyncio.Protocol) for the load side.

The load generator shares one core among up to a thousand receivers, so each must
cost as little as possible: no per-frame objects beyond the payload, latency taken
from the ``Timestamp`` the feeder put into the event (the same regular expression
finds it in our JSON and in the baseline's raw AMI text). Only frames that carry it
count as events; others (the server's own ``call.*`` events, which a catch-all
subscriber also receives) are counted apart, in ``other``. Answers to requests (any
frame with an ``errCode`` key) resolve futures by ``reqId``. Pings are answered,
so the server's heartbeat never closes an idle connection.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

_TS = re.compile(rb"Timestamp\W+([0-9]+\.[0-9]+)")
_MASK = b"\x00\x00\x00\x00"  # a valid (if predictable) mask: the payload goes as is
_req_ids = itertools.count(1)


@dataclass(slots=True)
class Recorder:
    """Events received by a group of clients: count and delivery latencies (s) of the
    feeder's events, and how many other pushed messages came."""

    events: int = 0
    latencies: list[float] = field(default_factory=list)
    other: int = 0

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self.events = 0
        self.latencies = []
        self.other = 0


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + _MASK + payload


class WsClient(asyncio.Protocol):
    """One WebSocket connection; ``await WsClient.connect(host, port, recorder)``."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.answers: dict[object, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._buffer = b""
        self._upgraded = False

    @classmethod
    async def connect(
        cls, host: str, port: int, recorder: Recorder, *, path: str = "/api", within: float = 30.0
    ) -> WsClient:
        """Open the TCP connection and complete the opening handshake."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            _transport, client = await loop.create_connection(lambda: cls(recorder), host, port)
            assert client.transport is not None
            key = base64.b64encode(os.urandom(16)).decode()
            client.transport.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await client.handshake
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        for future in self.answers.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))

    def send_json(self, envelope: object) -> None:
        """Send one text frame."""
        assert self.transport is not None
        self.transport.write(_frame(0x1, orjson.dumps(envelope)))

    async def call(self, envelope: dict[str, Any], within: float = 30.0) -> dict[str, Any]:
        """Send a request (a ``reqId`` is added) and wait for its answer."""
        req_id = f"r{next(_req_ids)}"
        envelope["argument"]["reqId"] = req_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[req_id] = future
        self.send_json(envelope)
        try:
            return await asyncio.wait_for(future, within)
        finally:
            self.answers.pop(req_id, None)

    def close(self) -> None:
        """Drop the connection (no closing handshake: it is only a load generator)."""
        if self.transport is not None:
            self.transport.abort()

    def _upgrade(self, buffer: bytes) -> bytes | None:
        """Read the handshake's answer from ``buffer``; what follows it, or ``None``
        while it is incomplete or when the server refused the upgrade."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self._buffer = buffer
            return None
        status = buffer[: buffer.find(b"\r\n")]
        if b" 101 " not in status + b" ":
            self.handshake.set_exception(ConnectionError(status.decode(errors="replace")))
            assert self.transport is not None
            self.transport.abort()
            return None
        self._upgraded = True
        self.handshake.set_result(None)
        return buffer[end + 4 :]

    def data_received(self, data: bytes) -> None:
        joined = self._buffer + data if self._buffer else data
        buffer = joined if self._upgraded else self._upgrade(joined)
        if buffer is None:
            return
        # The load side's hot path (up to 300,000 frames/s on one core), kept flat on
        # purpose: per frame only its header is read, to find where it ends; the feed's
        # timestamps are then taken from the whole run of text frames by one C-level
        # ``findall``. Exact because each feed event carries one ``Timestamp`` and no
        # other frame (the server's ``call.*`` events) carries one: the run's matches
        # are its events, its other text frames are ``other``.
        # bench/wsclient_check.py checks it against a frame-by-frame reading.
        now = time.time()
        position = 0
        run_start = 0  # where the current run of text frames began
        texts = 0  # text frames in the run
        size = len(buffer)
        while size - position >= 2:
            length = buffer[position + 1] & 0x7F
            if length < 126:
                start = position + 2
            elif length == 126:
                start = position + 4
                if start > size:
                    break
                length = buffer[position + 2] << 8 | buffer[position + 3]
            else:
                start = position + 10
                if start > size:
                    break
                length = int.from_bytes(buffer[position + 2 : start], "big")
            end = start + length
            if end > size:
                break
            if buffer[position] == 0x81:  # a whole text frame (what the servers send)
                texts += 1
            else:
                if texts:
                    self._texts(buffer, run_start, position, texts, now)
                    texts = 0
                self._frame(buffer[position] & 0x0F, buffer[start:end], now)
                run_start = end
            position = end
        if texts:
            self._texts(buffer, run_start, position, texts, now)
        self._buffer = buffer[position:]

    def _texts(self, buffer: bytes, start: int, end: int, frames: int, now: float) -> None:
        """``frames`` whole text frames in ``buffer[start:end]``."""
        if buffer.find(b'"errCode"', start, end) >= 0:
            # An answer is among them (rare: requests are made before a step):
            # frame by frame, as answers must be told from events.
            self._one_by_one(buffer, start, end, now)
            return
        stamps = _TS.findall(buffer, start, end)
        recorder = self.recorder
        recorder.events += len(stamps)
        recorder.other += frames - len(stamps)
        recorder.latencies += [now - float(stamp) for stamp in stamps]

    def _one_by_one(self, buffer: bytes, position: int, end: int, now: float) -> None:
        """Whole text frames in ``buffer[position:end]``, each on its own."""
        while position < end:
            length = buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                length = buffer[start] << 8 | buffer[start + 1]
                start += 2
            elif length == 127:
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            position = start + length
            self._data(buffer[start:position], now)

    def _frame(self, opcode: int, payload: bytes, now: float) -> None:
        """A frame other than a whole text frame: data (binary, or text with another
        header), or a control frame."""
        if opcode in {0x1, 0x2}:
            self._data(payload, now)
        else:
            self._control(opcode, payload)

    def _data(self, payload: bytes, now: float) -> None:
        """A data frame: an answer to one of ours, a timed feed event, or another event."""
        if b'"errCode"' in payload:
            self._answer(payload)
            return
        match = _TS.search(payload)
        if match is not None:
            self.recorder.events += 1
            self.recorder.latencies.append(now - float(match.group(1)))
        else:
            self.recorder.other += 1

    def _control(self, opcode: int, payload: bytes) -> None:
        """A control frame: a ping is answered, a close ends the connection."""
        assert self.transport is not None
        if opcode == 0x9:
            self.transport.write(_frame(0xA, payload))
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
            self.transport.abort()

    def _answer(self, payload: bytes) -> None:
        answer = orjson.loads(payload)
        future = self.answers.get(answer.get("reqId"))
        if future is not None and not future.done():
            future.set_result(answer)


async def connect_many(
    host: str,
    port: int,
    count: int,
    recorder: Recorder,
    *,
    concurrency: int = 100,
    within: float = 60.0,
) -> list[WsClient]:
    """Open ``count`` connections, at most ``concurrency`` handshakes at a time."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> WsClient:
        async with semaphore:
            return await WsClient.connect(host, port, recorder, within=within)

    return list(await asyncio.gather(*(one() for _ in range(count))))
