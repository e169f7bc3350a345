"""Reconnect delays: capped exponential backoff with "equal jitter".

Pure functions: no clock, no sleeping; randomness comes from the caller's ``rng`` so
tests are deterministic. The reconnect loop of ``AmiClient`` calls ``backoff_delay``
with the number of consecutive failed attempts and sleeps for the result.

Equal jitter keeps half of the exponential step and randomises the other half: every
delay lies in ``[step / 2, step]`` with ``step = min(maximum, initial * 2**attempt)``.
So the first retry waits about ``initial`` (never less than ``initial / 2``, which
keeps a refusing PBX from being hammered), the delay never exceeds ``maximum``, and
clients that lost the same PBX at the same moment spread their reconnects out.
"""

from __future__ import annotations

import random

# 2**64 * any sane ``initial`` is far past any sane ``maximum``; capping the exponent
# keeps the arithmetic finite for absurd attempt counts.
_MAX_EXPONENT = 64


def backoff_step(attempt: int, *, initial: float, maximum: float) -> float:
    """The upper bound of the delay for ``attempt``: ``min(maximum, initial * 2**attempt)``."""
    _check(attempt, initial, maximum)
    return min(maximum, initial * 2.0 ** min(attempt, _MAX_EXPONENT))


def backoff_delay(attempt: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt number ``attempt`` (0 = first retry).

    The result lies in ``[step / 2, step]`` where ``step = backoff_step(...)``; it is
    never above ``maximum`` and, for ``attempt == 0``, between ``initial / 2`` and
    ``initial``. Raises ``ValueError`` for a negative attempt, a non-positive
    ``initial`` or a ``maximum`` below ``initial``.
    """
    step = backoff_step(attempt, initial=initial, maximum=maximum)
    half = step / 2.0
    # min(): float rounding must never push the result past the documented bound.
    return min(step, half + rng.uniform(0.0, half))


def _check(attempt: int, initial: float, maximum: float) -> None:
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not initial > 0:
        raise ValueError(f"initial must be > 0, got {initial}")
    if maximum < initial:
        raise ValueError(f"maximum ({maximum}) must be >= initial ({initial})")
