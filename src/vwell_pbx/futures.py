"""Small asyncio helpers that no layer owns, so that every layer may import them.

Nothing here knows about AMI, the PBX or the API; it sits beside ``errors`` and
``config`` at the bottom of the package (the sans-IO ``protocol`` layer does not need it).
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

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
