"""backoff_delay: pure, bounded, growing, jittered, deterministic for a seeded rng."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vwell_pbx.ami.backoff import backoff_delay, backoff_step


def test_first_attempt_is_about_initial() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(0, initial=0.5, maximum=30.0, rng=rng) for _ in range(200)]
    assert all(0.25 <= d <= 0.5 for d in delays)
    assert max(delays) - min(delays) > 0.1  # jittered, not constant


def test_grows_exponentially_then_caps() -> None:
    steps = [backoff_step(n, initial=0.5, maximum=30.0) for n in range(10)]
    assert steps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    rng = random.Random(2)
    assert all(
        15.0 <= backoff_delay(50, initial=0.5, maximum=30.0, rng=rng) <= 30.0 for _ in range(100)
    )


def test_same_seed_same_delays() -> None:
    first = [backoff_delay(n, initial=0.1, maximum=5, rng=random.Random(7)) for n in range(8)]
    second = [backoff_delay(n, initial=0.1, maximum=5, rng=random.Random(7)) for n in range(8)]
    assert first == second


def test_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10**9, initial=1.0, maximum=60.0, rng=random.Random(0)) <= 60.0


@pytest.mark.parametrize(
    ("attempt", "initial", "maximum"),
    [(-1, 1.0, 2.0), (0, 0.0, 2.0), (0, -1.0, 2.0), (0, 3.0, 2.0)],
)
def test_rejects_nonsense(attempt: int, initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, initial=initial, maximum=maximum, rng=random.Random(0))


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    initial=st.floats(min_value=1e-3, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_within_half_step_and_step(
    attempt: int, initial: float, extra: float, seed: int
) -> None:
    maximum = initial + extra
    step = backoff_step(attempt, initial=initial, maximum=maximum)
    delay = backoff_delay(attempt, initial=initial, maximum=maximum, rng=random.Random(seed))
    assert step / 2 <= delay <= step <= maximum
    assert step >= min(initial, maximum)
    # The upper bound never shrinks as failures accumulate.
    assert backoff_step(attempt + 1, initial=initial, maximum=maximum) >= step
