"""``Cable``: a TCP forwarder on loopback that a test can cut, to take a real server
"down" for one client without stopping it for everyone else.

Nothing is simulated: bytes go through real sockets to the real server. ``cut()``
aborts every open connection and then either resets new ones at once (``"reset"``, as
a server that is gone) or accepts them and never forwards a byte (``"silent"``, as a
host that stopped answering); ``mend()`` lets traffic through again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

__all__ = ["Cable"]

Mode = Literal["pass", "reset", "silent"]


class Cable:
    """Forward ``127.0.0.1:port`` to ``host:target_port``; use as ``async with``."""

    def __init__(self, host: str, target_port: int) -> None:
        self._host = host
        self._target_port = target_port
        self.mode: Mode = "pass"
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Cable:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut("reset")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def cut(self, mode: Literal["reset", "silent"] = "reset") -> None:
        """Abort every open connection; new ones are reset or left unanswered."""
        self.mode = mode
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def mend(self) -> None:
        """Forward new connections again."""
        self.mode = "pass"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode == "silent":
            return  # held open, never answered, until cut() or the end
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            sink.transport.abort()
