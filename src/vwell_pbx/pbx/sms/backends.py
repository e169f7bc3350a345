"""``make_sms_backend``: the configured backend (``[sms] backend``) with its pacing queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from vwell_pbx.pbx.sms.base import PacedSmsBackend
from vwell_pbx.pbx.sms.dongle import DongleBackend
from vwell_pbx.pbx.sms.pacing import (
    DEFAULT_INTERVAL,
    DEFAULT_QUEUE_SIZE,
    Clock,
    Sleep,
    SmsQueue,
)
from vwell_pbx.pbx.sms.yeastar import (
    DEFAULT_SPAN_CACHE_SECONDS,
    YeastarCommandBackend,
    YeastarTgBackend,
)

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

BACKENDS: Final = ("yeastar", "yeastar-tg", "dongle")
"""The values of ``sms.backend``."""


def make_sms_backend(
    client: AmiClient,
    *,
    backend: str,
    span: str | int,
    interval: float = DEFAULT_INTERVAL,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    ids: Iterator[int] | None = None,
    span_cache_seconds: float = DEFAULT_SPAN_CACHE_SECONDS,
) -> PacedSmsBackend:
    """Build the configured backend (``sms.backend``) with its own pacing queue.

    ``span``: ``"auto"`` or a span number for the Yeastar backends, a device name for
    ``dongle``. Raises ``ValueError`` naming the configuration field when a value is bad.
    """
    queue = SmsQueue(interval=interval, queue_size=queue_size, clock=clock, sleep=sleep)
    if backend == "yeastar":
        return YeastarCommandBackend(
            client, span=span, queue=queue, span_cache_seconds=span_cache_seconds, clock=clock
        )
    if backend == "yeastar-tg":
        return YeastarTgBackend(
            client,
            span=span,
            queue=queue,
            ids=ids,
            span_cache_seconds=span_cache_seconds,
            clock=clock,
        )
    if backend == "dongle":
        return DongleBackend(client, device=str(span), queue=queue)
    raise ValueError(f"sms.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
