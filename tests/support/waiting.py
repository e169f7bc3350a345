"""``until``: the one way a test waits for something to become true.

A test never sleeps to wait for something: it names the condition and how long it may
take. Values that *arrive* (an answer, an event, a frame) are awaited directly, with
their own timeout (``asyncio.timeout``, ``WsClient.call(within=...)``); ``until`` is for
state that something else changes (a counter, a registry, a connection flag), or for a
request that must eventually succeed (an async condition).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

#: How often a condition is looked at by default: small next to every ``within`` used,
#: large enough that polling costs nothing measurable on a shared two-core machine.
POLL_SECONDS = 0.005


async def until(
    condition: Callable[[], object | Awaitable[object]],
    within: float = 5.0,
    *,
    what: str = "the condition",
    every: float = POLL_SECONDS,
) -> None:
    """Return as soon as ``condition()`` is true; fail the test if it is still false
    after ``within`` seconds (an ``AssertionError`` saying ``what`` was awaited).

    ``condition`` may be a coroutine function (a request whose answer decides); give it
    a larger ``every`` so that waiting does not flood the server. The condition is
    checked first, so one that already holds costs no wait.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)
