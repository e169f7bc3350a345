"""The AMI feeder: a minimal raw-socket AMI server that blasts pre-encoded events.

It is not the simulator: the simulator builds every event from a call model and
encodes it through the codec, which costs more per event than the server under test
spends on it, so at the rates measured here it would be the bottleneck. The feeder
speaks just enough AMI for the server's client and the baselines: the banner,
``Login`` (plain or MD5, any credentials), ``Challenge``, ``Ping``, ``Logoff``, and
``CoreShowChannels`` with an empty list (the call tracker reads it after each connect).

Events come from a ``bench.feeds.Feed`` (recorded calls with identifiers of their own,
or Newchannel events), encoded up to their last header, ``Timestamp``, whose value (the
send time, what the receivers compute delivery latency from) is filled in per batch.
A token bucket ticks every ``TICK`` seconds and writes everything due in one ``write``
per connection. When
a connection's write buffer passes ``MAX_BUFFER`` (the reader cannot keep up) the
feeder stops adding to it, so what a step reports as sent is what was really offered.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from bench.feeds import Feed

TICK = 0.002
MAX_BUFFER = 4 * 1024 * 1024
MAX_BATCH = 5000
BANNER = b"Asterisk Call Manager/9.0.0\r\n"

_ACTION = re.compile(rb"(?im)^action:\s*(\S+)")
_ACTION_ID = re.compile(rb"(?im)^actionid:\s*([^\r\n]*)")
_USERNAME = re.compile(rb"(?im)^username:\s*([^\r\n]*)")


@dataclass(slots=True)
class BlastResult:
    """What one blast offered."""

    sent: int
    seconds: float
    #: Ticks at which some connection's buffer was full (events held back).
    backlogged_ticks: int
    #: Deliveries of these events the subscribers must receive (``Feed.take``).
    expected: int = 0

    @property
    def rate(self) -> float:
        """Events per second actually written."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class _AmiSession(asyncio.Protocol):
    def __init__(self, feeder: AmiFeeder) -> None:
        self.feeder = feeder
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        #: The ``Username`` it logged in with: which target (process) it belongs to.
        self.username = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(BANNER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.feeder.sessions.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        transport = self.transport
        assert transport is not None
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            action, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            name_match = _ACTION.search(action)
            id_match = _ACTION_ID.search(action)
            name = name_match.group(1).lower() if name_match else b""
            action_id = b"ActionID: " + id_match.group(1) + b"\r\n" if id_match else b""
            if name == b"ping":
                transport.write(
                    b"Response: Success\r\n" + action_id + b"Ping: Pong\r\n"
                    b"Timestamp: %.6f\r\n\r\n" % time.time()
                )
            elif name == b"login":
                user_match = _USERNAME.search(action)
                self.username = user_match.group(1).decode().strip() if user_match else ""
                transport.write(
                    b"Response: Success\r\n"
                    + action_id
                    + b"Message: Authentication accepted\r\n\r\n"
                )
                self.feeder.sessions.add(self)
            elif name == b"challenge":
                transport.write(
                    b"Response: Success\r\n" + action_id + b"Challenge: 123456789\r\n\r\n"
                )
            elif name == b"coreshowchannels":
                # An empty channel list, as an idle Asterisk answers: the call tracker
                # rebuilds its calls from it after every connect.
                transport.write(
                    b"Response: Success\r\n" + action_id + b"EventList: start\r\n"
                    b"Message: Channels will follow\r\n\r\n"
                    b"Event: CoreShowChannelsComplete\r\n" + action_id + b"EventList: Complete\r\n"
                    b"ListItems: 0\r\n\r\n"
                )
            elif name == b"logoff":
                transport.write(
                    b"Response: Goodbye\r\n"
                    + action_id
                    + b"Message: Thanks for all the fish.\r\n\r\n"
                )
                transport.close()
                return
            else:
                transport.write(
                    b"Response: Error\r\n" + action_id + b"Message: Invalid/unknown command\r\n\r\n"
                )


class AmiFeeder:
    """``async with AmiFeeder() as feeder``: listens on 127.0.0.1, ``feeder.port``."""

    def __init__(self) -> None:
        self.sessions: set[_AmiSession] = set()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AmiFeeder:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AmiSession(self), "127.0.0.1", 0, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.abort()
        await asyncio.wait_for(self._server.wait_closed(), 5)

    async def wait_logged_in(self, count: int = 1, within: float = 10.0) -> None:
        """Wait until ``count`` AMI clients have logged in."""
        async with asyncio.timeout(within):
            while len(self.sessions) < count:  # noqa: ASYNC110  (set by data_received)
                await asyncio.sleep(0.01)

    async def blast(
        self,
        feed: Feed,
        rate: float,
        duration: float,
        *,
        only: set[Any] | None = None,
    ) -> BlastResult:
        """Send ``feed``'s events at ``rate``/s for ``duration`` s, to every logged-in
        connection or to those in ``only`` (see ``sessions``)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + duration
        sent = 0
        expected = 0
        backlogged = 0
        while True:
            now = loop.time()
            if now >= deadline:
                break
            due = min(int(rate * (now - start)) - sent, MAX_BATCH)
            transports = [
                s.transport
                for s in self.sessions
                if s.transport is not None and (only is None or s in only)
            ]
            if due > 0 and transports:
                if any(t.get_write_buffer_size() > MAX_BUFFER for t in transports):
                    backlogged += 1
                else:
                    heads, deliveries = feed.take(due)
                    stamp = b"%.6f\r\n\r\n" % time.time()
                    data = stamp.join(heads) + stamp
                    for transport in transports:
                        transport.write(data)
                    sent += due
                    expected += deliveries
            await asyncio.sleep(TICK)
        return BlastResult(
            sent=sent,
            seconds=loop.time() - start,
            backlogged_ticks=backlogged,
            expected=expected,
        )

    def write_buffered(self, only: set[Any] | None = None) -> int:
        """Bytes written to the sessions (or those in ``only``) not yet sent."""
        return sum(
            s.transport.get_write_buffer_size()
            for s in self.sessions
            if s.transport is not None and (only is None or s in only)
        )
