"""Helpers for the tests of calls in the running server (real sockets everywhere).

Pushed events are read from real WebSockets (``tests.support.WsClient``). To know that
a connection got *everything* about a scenario, and nothing more, a test sends a
sentinel after it: a ``dispatchEvent`` named ``call.zz-sentinel``, which every
``call.*`` subscription receives (client events pass every guard). The bus keeps each
connection's order, so what arrived before the sentinel is all there was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support import ADMIN, ApiClient, WsClient, until

SENTINEL = "call.zz-sentinel"


async def events_until(ws: WsClient, name: str, within: float = 10.0) -> list[dict[str, Any]]:
    """Pushed events up to and including the first called ``name``."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            event = await ws.events.get()
            got.append(event)
            if event.get("name") == name:
                return got


async def settle(api: ApiClient, *sockets: WsClient) -> list[list[dict[str, Any]]]:
    """Send the sentinel; return what each socket received before it."""
    answer = await api.post("dispatchEvent", creds=ADMIN, event={"name": SENTINEL})
    assert answer["err"] is None, answer
    return [(await events_until(ws, SENTINEL))[:-1] for ws in sockets]


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.02
) -> None:
    """Wait until ``await check()`` is true (polled), at most ``within`` seconds."""
    await until(check, within, what="the call state", every=every)


async def subscribe(ws: WsClient, creds: dict[str, str], **argument: Any) -> dict[str, Any]:
    """``onEvent`` on ``ws``; the answer (asserted to be a success)."""
    answer = await ws.call("onEvent", creds=creds, **argument)
    assert answer["err"] is None, answer
    return answer


def names(events: list[dict[str, Any]]) -> list[str]:
    """The events' names, in order."""
    return [event["name"] for event in events]


def call_object(event: dict[str, Any]) -> dict[str, Any]:
    """A pushed call event without its ``name`` (and resume id, when there is one)."""
    return {key: value for key, value in event.items() if key not in ("name", "eventId")}
