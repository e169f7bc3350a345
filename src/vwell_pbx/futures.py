"""Small asyncio helpers that no layer owns, so that every layer may import them.

Nothing here knows about AMI, the PBX or the API; it sits beside ``errors`` and
``config`` at the bottom of the package (the sans-IO ``protocol`` layer does not need it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, TypeVar

_T = TypeVar("_T")


def fail_quietly(future: asyncio.Future[_T], exc: BaseException) -> None:
    """Fail a future that its owner may never await, without "never retrieved" noise.

    Used for answers nobody may be waiting for any more (an AMI followup the caller
    dropped, an SMS job whose caller gave up). Reading ``exception()`` once marks the
    error as seen; a caller that does await the future still gets it raised. A future
    that is already done is left alone.
    """
    if not future.done():
        future.set_exception(exc)
        future.exception()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, again_after: float = 0.1) -> None:
    """Cancel ``tasks`` and return once every one of them has ended.

    A task can lose a cancellation: on Python 3.11, ``asyncio.wait_for`` returns the
    result instead of raising when the future it waits for completes at the moment the
    task is cancelled, and a loop around it then simply goes on. So the cancellation is
    repeated every ``again_after`` seconds until each task has ended. Exceptions of the
    tasks are not raised here (they were cancelled: nobody wants their outcome); a
    cancellation of the caller is.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after)
