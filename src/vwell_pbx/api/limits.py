"""Token buckets for per-user request and SMS rates (pure: the clock is an argument)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` spends one if it can."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        """Spend one token at time ``now``; ``False`` when the bucket is empty."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until one token is available (0 when one is)."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class KeyedBuckets:
    """One ``TokenBucket`` per key, at most ``max_keys`` of them (least recently used go)."""

    def __init__(
        self, *, rate: float, burst: float, clock: Callable[[], float], max_keys: int = 10_000
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def take(self, key: object) -> float | None:
        """Spend a token for ``key``; ``None`` if allowed, else seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(
                rate=self._rate, burst=self._burst, tokens=self._burst, updated=now
            )
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now):
            return None
        return bucket.wait_time()
