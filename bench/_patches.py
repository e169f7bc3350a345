"""Prototypes of proposed changes to src/, applied by monkeypatching inside the bench
server process only (``python -m bench --patched`` runs the server with and without
them side by side). Nothing here changes the package; each patch is the smallest
version of a change proposed in docs/performance.md, so its effect can be measured.

- ``guard_cache``: a role's event guard ran ``fnmatchcase`` over every event rule of
  the role (and a security check) for every delivery. When none of the role's rules
  has field conditions, the decision depends only on the event name and its
  ``Privilege``, so it is cached per (role, name, privilege) in a bounded dict.
- ``get_no_timeout``: ``Subscriber.get()`` entered ``asyncio.timeout(None)`` on every
  wait of every connection's sender; with no timeout it now just awaits the future.
- ``batch_send``: ``_Connection._send_loop`` wrote each queued frame with its own
  ``send_frame`` (one ``transport.write``, usually one ``send()`` syscall, per frame);
  it now frames everything ``get()`` returned and writes it in one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

_CACHE_SIZE = 4096


def guard_cache() -> None:
    """Cache role event decisions when the role's rules are name-only."""
    from vwell_pbx.api.roles import Role  # noqa: PLC0415

    original = Role.allows_event
    name_only: dict[int, bool] = {}
    decisions: dict[tuple[int, object, object], bool] = {}

    def allows_event(self: Role, fields: Mapping[str, Any], *,
                     extensions: Collection[str] = ()) -> bool:
        role_id = id(self)
        simple = name_only.get(role_id)
        if simple is None:
            simple = name_only[role_id] = not any(rule.fields for rule in self.events)
        name, privilege = fields.get("Event"), fields.get("Privilege")
        if not simple or not isinstance(name, str) or not isinstance(privilege, str | None):
            return original(self, fields, extensions=extensions)
        key = (role_id, name, privilege)
        decision = decisions.get(key)
        if decision is None:
            decision = original(self, fields, extensions=extensions)
            if len(decisions) >= _CACHE_SIZE:
                decisions.clear()
            decisions[key] = decision
        return decision

    Role.allows_event = allows_event  # type: ignore[method-assign]


def get_no_timeout() -> None:
    """``Subscriber.get()`` without ``asyncio.timeout`` when there is no timeout."""
    from vwell_pbx.events.bus import Subscriber  # noqa: PLC0415

    async def get(self: Subscriber, timeout: float | None = None) -> list[bytes]:  # noqa: ASYNC109
        if not self._queue and not self._closed and (timeout is None or timeout > 0):
            if self._waiter is not None:
                raise RuntimeError("Subscriber.get() is already being awaited")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                if timeout is None:
                    await waiter
                else:
                    try:
                        async with asyncio.timeout(timeout):
                            await waiter
                    except TimeoutError:
                        return []
            finally:
                self._waiter = None
        items = self._queue
        if not items:
            return []
        self._queue = []
        return items

    Subscriber.get = get  # type: ignore[method-assign]


class _Collect:
    """Stands in for the transport while a batch of frames is framed."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def batch_send() -> None:
    """One transport write per batch of queued frames."""
    from aiohttp import WSMsgType  # noqa: PLC0415

    from vwell_pbx.web.app import _Connection  # noqa: PLC0415

    async def _send_loop(self: Any) -> None:
        ws = self._ws
        while not ws.closed:
            items = await self._subscriber.get()
            if len(items) == 1:
                await ws.send_frame(items[0], WSMsgType.TEXT)
                continue
            writer = ws._writer
            if writer is None or writer._closing:
                return
            real = writer.transport
            collect = _Collect()
            writer.transport = collect
            try:
                for frame in items:
                    writer._write_websocket_frame(frame, WSMsgType.TEXT, 0)
            finally:
                writer.transport = real
            real.write(b"".join(collect.parts))
            if writer._output_size > writer._limit:
                writer._output_size = 0
                if writer.protocol._paused:
                    await writer.protocol._drain_helper()

    _Connection._send_loop = _send_loop  # type: ignore[method-assign]


PATCHES = {"guard_cache": guard_cache, "get_no_timeout": get_no_timeout,
           "batch_send": batch_send}


def apply(names: list[str]) -> None:
    """Apply the named patches."""
    for name in names:
        PATCHES[name]()
