"""Event bus: subscriptions with filters, and never-blocking fan-out to connections.

``filters`` compiles what a client asks for (``onEvent``); ``bus`` indexes the
subscriptions, stamps each event with its ``eventId`` (``ids``) and offers its JSON,
serialised once, to the bounded queue of every connection that wants it; ``replay``
keeps the newest events for clients that resume after a reconnect.
"""

from vwell_pbx.events.bus import (
    BusEvent,
    BusStats,
    EventBus,
    EventError,
    Resumption,
    Subscriber,
    SubscriptionLimit,
    event_id_of,
)
from vwell_pbx.events.filters import EventFilter, FilterError
from vwell_pbx.events.ids import EventIdError, EventPosition, parse_event_id
from vwell_pbx.events.replay import ReplayBuffer

__all__ = [
    "BusEvent",
    "BusStats",
    "EventBus",
    "EventError",
    "EventFilter",
    "EventIdError",
    "EventPosition",
    "FilterError",
    "ReplayBuffer",
    "Resumption",
    "Subscriber",
    "SubscriptionLimit",
    "event_id_of",
    "parse_event_id",
]
