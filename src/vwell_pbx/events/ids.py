"""Event ids: what every pushed message carries as ``eventId``, and what ``since`` reads.

An event id is ``<run>-<n>``: ``run`` names one run of the server (random, made at
start-up, 10 characters of ``[a-z2-7]``), ``n`` counts the events published on the bus
in that run, from 1. ``<run>-0`` is the position before the first event. So within one
run ids increase with ``n``, and ids of different runs differ in ``run``.

Clients must treat ids as opaque strings: keep the last one received and send it back
(``since``, ``Last-Event-ID``); never compare, parse or build them. The format may
change between releases (a client that kept an id across an upgrade gets a gap, the
same as after any restart).

Reading an id (:func:`parse_event_id`) checks only its shape; whether it is of this
run, and whether the events after it are still buffered, is the bus's business
(:meth:`vwell_pbx.events.bus.EventBus.subscribe_since`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from vwell_pbx.errors import VwellError

__all__ = [
    "MAX_EVENT_ID_LENGTH",
    "EventIdError",
    "EventPosition",
    "check_run_id",
    "new_run_id",
    "parse_event_id",
]

#: Longest id :func:`parse_event_id` accepts (a 16-character run and a 19-digit count).
MAX_EVENT_ID_LENGTH = 36

_RUN_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lowercase: safe in URLs
_RUN_LENGTH = 10  # 50 random bits: two runs share a name with odds of about 1 in 10^15

# The run part is checked more loosely than it is made ([A-Za-z0-9], up to 16), so a
# test or an embedder may choose a readable run name.
_EVENT_ID = re.compile(r"([A-Za-z0-9]{1,16})-(0|[1-9][0-9]{0,18})")


class EventIdError(VwellError):
    """Text that is not an event id (the message says what one looks like)."""


@dataclass(frozen=True, slots=True)
class EventPosition:
    """A parsed event id: the run it is from, and the count of events up to it."""

    run: str
    seq: int


def new_run_id(choice: Callable[[str], str] = secrets.choice) -> str:
    """A fresh run name; ``choice`` picks one character of a string (injectable)."""
    return "".join(choice(_RUN_ALPHABET) for _ in range(_RUN_LENGTH))


def check_run_id(run: str) -> str:
    """``run`` if it can be the run part of an id, else ``ValueError``."""
    if not re.fullmatch(r"[A-Za-z0-9]{1,16}", run):
        raise ValueError(f"a run id is 1 to 16 letters and digits, not {run[:40]!r}")
    return run


def parse_event_id(text: str) -> EventPosition:
    """The run and count of the id ``text``; :class:`EventIdError` if it is none."""
    match = _EVENT_ID.fullmatch(text) if len(text) <= MAX_EVENT_ID_LENGTH else None
    if match is None:
        raise EventIdError(
            "must be an eventId received from this server, such as 'k3v7q2ma5x-1532' "
            f"(got {text[:40]!r})"
        )
    return EventPosition(match[1], int(match[2]))
