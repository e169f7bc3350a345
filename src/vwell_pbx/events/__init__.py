"""Event bus: subscriptions with filters, and never-blocking fan-out to connections.

``filters`` compiles what a client asks for (``onEvent``); ``bus`` indexes the
subscriptions and offers each event's JSON, serialised once, to the bounded queue of
every connection that wants it.
"""

from vwell_pbx.events.bus import (
    BusEvent,
    BusStats,
    EventBus,
    EventError,
    Subscriber,
    SubscriptionLimit,
)
from vwell_pbx.events.filters import EventFilter, FilterError

__all__ = [
    "BusEvent",
    "BusStats",
    "EventBus",
    "EventError",
    "EventFilter",
    "FilterError",
    "Subscriber",
    "SubscriptionLimit",
]
