"""The event bus: fan-out of PBX and client events to subscribed connections.

Modelled on websockets' ``broadcast()``: publishing never awaits. Each connection has
a :class:`Subscriber` with a bounded outbound queue that its own sender task drains;
:meth:`EventBus.publish` only appends the event's bytes to the queues of the
connections that want it. A connection whose queue is full is marked overflowed, its
``on_overflow`` callback runs once (the web layer closes it), and the event is counted
as dropped for it. So the AMI reader and every other subscriber go on at full speed
whatever one slow client does.

Besides subscribers, the bus has *listeners* (:meth:`EventBus.listen`): in-process
callbacks that see the :class:`BusEvent` itself, synchronously, inside ``publish`` (the
event stream's replay buffer, webhooks). They have no queue and are not counted in
:class:`BusStats`.

Invariants:

1. ``publish`` runs synchronously and never blocks; it may be called re-entrantly from
   ``on_overflow``, a guard or a listener only to (un)subscribe or stop listening,
   which is safe because the index and the listeners are copy-on-write (iteration
   always walks an immutable snapshot). A listener's exception is logged, never
   raised to the publisher.
2. An event is serialised once (:meth:`BusEvent.payload`), after it got its id;
   every subscriber gets the very same ``bytes`` object, and the replay buffer keeps
   it (its byte bound counts it), so a resume sends those bytes again.
3. A subscriber gets an event at most once per publish, however many of its
   subscriptions match.
4. A once-subscription is removed by the first event that matches it and that its
   subscriber is allowed to see (guard), even if another of its subscriptions
   already delivered that event.
5. Each queue holds at most ``max_queue`` items and each subscriber at most
   ``max_subscriptions`` subscriptions (:class:`SubscriptionLimit` past it).

Per event, only candidate subscriptions are looked at: those indexed under the
event's lowercased name, those whose name is any or a wildcard, and, within each,
subscriptions with an exact-valued field filter (``CallerIDNum: "+7978..."``) are
found through a second index on that field's value, so 1,000 operators each watching
``Newchannel`` for their own number cost two dict look-ups per event, not 1,000
filter evaluations.

**Event ids and resuming.** ``publish`` stamps every event with the next
``eventId`` (``events.ids``: ``<run>-<n>``), put into its fields before the one
serialisation, so every subscriber, listener and webhook sees it; then it records the
event in the replay buffer (``events.replay``). :meth:`EventBus.subscribe_since`
replays the buffered events after a client's last ``eventId`` and subscribes in the
same synchronous step, so nothing published meanwhile can fall between the two or
come twice. It reports a *gap* when it cannot vouch for the replay:

6. An id of another run, or one this run never made, is a gap (nothing replayed).
7. An id whose successors the buffer has already evicted is a gap (the rest is
   replayed).
8. An event the bus told a publisher to skip (:meth:`EventBus.interested` answered
   ``False``) takes a number of its own, never used for an event, and is remembered
   by name (at most ``MAX_SKIPPED_NAMES`` names; past that, the memory is emptied and
   its newest number kept as a floor). A resume whose subscription could have wanted
   a skipped event numbered after its id is a gap.

So that short absences are not gaps, a connection that goes away is *disconnected*
(:meth:`EventBus.disconnect`), not just unsubscribed: the names of its subscriptions
stay interesting for ``resume_grace`` seconds (at most ``MAX_LINGERING_NAMES`` names;
past that, every event stays interesting until the deadline), so their events are
published into the buffer although nobody receives them live. Only events nobody else
wants pay for this in :meth:`interested`: a clock read and one or two dict look-ups
while something lingers, and the skip record (a counter and a dict store) when the
event is skipped; a wanted name costs what it did.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

import orjson

from vwell_pbx.errors import VwellError
from vwell_pbx.events.filters import EventFilter, glob_match, scalar_text
from vwell_pbx.events.ids import EventPosition, check_run_id, new_run_id
from vwell_pbx.events.replay import ReplayBuffer
from vwell_pbx.protocol import Message

__all__ = [
    "DEFAULT_RESUME_GRACE",
    "EVENT_ID_KEY",
    "MAX_LINGERING_NAMES",
    "MAX_SKIPPED_NAMES",
    "BusEvent",
    "BusStats",
    "EventBus",
    "EventError",
    "Resumption",
    "Subscriber",
    "SubscriptionLimit",
    "event_id_of",
]

log = logging.getLogger(__name__)

#: Keys a client event may not set: the bus sets them, so that a ``dispatchEvent``
#: can never pass for a PBX event or another user's, nor forge an event id.
_RESERVED_CLIENT_KEYS = frozenset({"name", "origin", "login", "login2", "eventid"})

#: The field every published event carries its id in (always its last key).
EVENT_ID_KEY = "eventId"

#: ``[events] resume_grace_seconds``: how long a gone connection's names stay wanted.
DEFAULT_RESUME_GRACE = 60.0
#: Names of gone connections' subscriptions remembered at once (invariant 8's grace).
MAX_LINGERING_NAMES = 1024
#: Names of skipped events remembered at once (invariant 8).
MAX_SKIPPED_NAMES = 4096

# Publish stamps are global, not per bus, so a Subscriber shared by two buses can
# never mistake one bus's stamp for the other's.
_stamps = itertools.count(1)


class EventError(VwellError):
    """A client event (dispatchEvent) is malformed; the message says what is wrong."""


class SubscriptionLimit(VwellError):
    """A subscriber already has as many subscriptions as it may."""


@dataclass(slots=True, init=False)
class BusEvent:
    """One event as it travels to subscribers.

    ``fields`` is exactly what is pushed (serialised once, by :meth:`payload`); it must
    not be changed after the event is published. For PBX events every value is a
    string or a list of strings; a client event may carry any JSON value.
    """

    fields: dict[str, object]
    name: str
    #: True for events a client sent with dispatchEvent (never for PBX events).
    dispatched: bool = False
    #: For an event about a call (``call.*``): the local extensions the call involved.
    #: Not pushed; guards may use it to show a user only the calls of their own
    #: extensions. ``None`` for every other event. Set only for a call event, whose
    #: fields are the call object plus ``name`` (no ``Event`` or ``Privilege``): guards
    #: rely on that.
    extensions: frozenset[str] | None = None
    #: Lowercased name: the key of the bus's name index.
    name_key: str = field(init=False)
    _lowered: dict[str, str | list[str]] | None = field(init=False, default=None, repr=False)
    _lowered_cache: dict[str, str | list[str] | None] | None = field(
        init=False, default=None, repr=False
    )
    _keys: dict[str, str | tuple[str, ...]] | None = field(init=False, default=None, repr=False)
    _payload: bytes | None = field(init=False, default=None, repr=False)
    #: The ``eventId`` the bus stamped at publish (``""`` before).
    event_id: str = field(init=False, default="")
    #: Its number within the run (0 before publish): the replay buffer's order.
    seq: int = field(init=False, default=0)

    def __init__(
        self,
        fields: dict[str, object],
        name: str,
        dispatched: bool = False,
        extensions: frozenset[str] | None = None,
    ) -> None:
        # Written out rather than generated: the dataclass's __init__ called
        # __post_init__ for name_key, a second Python call (about 1,000 CPU
        # instructions) for every event published.
        self.fields = fields
        self.name = name
        self.dispatched = dispatched
        self.extensions = extensions
        key = _name_keys.get(name)
        self.name_key = key if key is not None else _new_name_key(name)
        self._lowered = None
        self._lowered_cache = None
        self._keys = None
        self._payload = None
        self.event_id = ""
        self.seq = 0

    @classmethod
    def from_message(cls, message: Message, *, pbx: str | None = None) -> BusEvent:
        """An AMI event: its headers (repeated ones as lists), plus ``name`` and, when
        several PBXs are configured, ``pbx``."""
        headers = message.headers
        name = headers[0][1]  # message.name, without the property's call
        # Fast path: with no repeated key (in any spelling) the headers are already
        # the dict Message.to_dict() would build, at a quarter of the cost.
        fields: dict[str, object] = dict(headers)
        unique = len(fields) == len(headers)
        fields["name"] = name
        if pbx is not None:
            fields["pbx"] = pbx
        keys = None
        if unique:
            keys, index, distinct = _layout_of(fields, message)
            # The channel registry and the call tracker read the message next: with
            # the index of this layout, their look-ups need no scan of the headers, and
            # the tracker reads these fields (it never reads the bus's own keys: name,
            # pbx, eventId) unless two of their names differ only in case.
            if distinct:
                message.adopt_header_index(index, fields)
            else:
                message.adopt_header_index(index)
                keys = None
        if keys is None:
            fields = cast("dict[str, object]", message.to_dict())
            fields["name"] = name
            if pbx is not None:
                fields["pbx"] = pbx
            keys = None
        event = cls(fields=fields, name=name)
        event._keys = keys
        return event

    @classmethod
    def from_client(cls, event: Mapping[str, object], *, login: str, login2: str) -> BusEvent:
        """A client's event (dispatchEvent), marked ``origin: "api"`` with the sender's
        ``login``/``login2``. Keys the bus sets are dropped from the client's object in
        any spelling, so a client can never forge them. Raises :class:`EventError`.

        The event is serialised here once as a check, so an unserialisable one fails
        the request (the bus serialises it again once it carries its id).
        """
        name = event.get("name")
        if not isinstance(name, str) or not name.strip():
            raise EventError("event.name must be a non-empty string")
        fields: dict[str, object] = {}
        for key, value in event.items():
            if not isinstance(key, str):
                raise EventError("event field names must be strings")
            if key.lower() not in _RESERVED_CLIENT_KEYS:
                fields[key] = value
        fields["name"] = name
        fields["origin"] = "api"
        fields["login"] = login
        fields["login2"] = login2
        try:
            orjson.dumps(fields)
        except orjson.JSONEncodeError as exc:
            raise EventError(f"event cannot be sent as JSON: {exc}") from exc
        return cls(fields=fields, name=name, dispatched=True)

    @property
    def lowered(self) -> dict[str, str | list[str]]:
        """Lowercased keys -> lowercased string values, for matching; built once.

        Scalars are stringified as filters do; null, objects and lists of non-scalars
        (client events only) are left out, so no filter matches them. Keys that differ
        only in case are merged into one list. Matching itself uses the cheaper
        :meth:`lowered_value`, which lowers only the fields a filter asks about.
        """
        lowered = self._lowered
        if lowered is None:
            lowered = {}
            for key in _key_map(self.fields):
                value = self.lowered_value(key)
                if value is not None:
                    lowered[key] = value
            self._lowered = lowered
        return lowered

    def lowered_value(self, key: str) -> str | list[str] | None:
        """The lowercased value of the field ``key`` (given lowercased), as in
        :attr:`lowered`, or ``None``; each field is lowered at most once per event."""
        cache = self._lowered_cache
        if cache is None:
            cache = self._lowered_cache = {}
        elif key in cache:
            return cache[key]
        keys = self._keys
        if keys is None:
            keys = self._keys = _key_map(self.fields)
        spelling = keys.get(key)
        value: str | list[str] | None
        if spelling is None:
            value = None
        elif isinstance(spelling, str):
            value = _lower_value(self.fields[spelling])
        else:
            merged: list[str] = []
            for each in spelling:
                part = _lower_value(self.fields[each])
                if part is not None:
                    merged.extend([part] if isinstance(part, str) else part)
            value = merged or None
        cache[key] = value
        return value

    def payload(self) -> bytes:
        """The pushed JSON, serialised on the first call and cached (call it only after
        publish, when ``eventId`` is in the fields)."""
        payload = self._payload
        if payload is None:
            payload = self._payload = orjson.dumps(self.fields)
        return payload


_EVENT_ID_MARK = b'"' + EVENT_ID_KEY.encode() + b'":"'


def event_id_of(payload: bytes) -> str | None:
    """The ``eventId`` in a published event's JSON (the bytes subscribers are sent), or
    ``None`` if there is none. Cheap: the bus always writes it as the last key."""
    if not payload.endswith(b'"}'):
        return None
    start = payload.rfind(_EVENT_ID_MARK)
    if start < 0:
        return None
    value = payload[start + len(_EVENT_ID_MARK) : -2]
    if b'"' in value or b"\\" in value:
        return None
    return value.decode("ascii", "replace")


# Event name -> its lowercased form: a few dozen names make nearly all the traffic, and
# lower() makes a new string each time. Bounded like _key_maps (client events' names).
_NAME_KEY_CACHE_SIZE = 4096
_name_keys: dict[str, str] = {}


def _new_name_key(name: str) -> str:
    """``name.lower()``, remembered in ``_name_keys`` (emptied when full)."""
    key = name.lower()
    if len(_name_keys) >= _NAME_KEY_CACHE_SIZE:
        _name_keys.clear()
    _name_keys[name] = key
    return key


# Events of one kind from one PBX always spell their keys the same way, so the map
# from lowercased key to spelling is cached by the tuple of keys: lowering a dozen
# keys per event costs more than everything else the bus does for it. Bounded: the
# cache is simply emptied when full (client events may bring arbitrary keys).
_KEY_MAP_CACHE_SIZE = 4096
_key_maps: dict[tuple[str, ...], dict[str, str | tuple[str, ...]]] = {}


def _key_map(fields: Mapping[str, object]) -> dict[str, str | tuple[str, ...]]:
    """Lowercased key -> the key as spelled in ``fields`` (a tuple of spellings when
    several differ only in case)."""
    keys = tuple(fields)
    mapping = _key_maps.get(keys)
    if mapping is None:
        mapping = {}
        for key in keys:
            lkey = key.lower()
            old = mapping.get(lkey)
            if old is None:
                mapping[lkey] = key
            else:
                mapping[lkey] = (old, key) if isinstance(old, str) else (*old, key)
        if len(_key_maps) >= _KEY_MAP_CACHE_SIZE:
            _key_maps.clear()
        _key_maps[keys] = mapping
    return mapping


_Layout = tuple[dict[str, str | tuple[str, ...]], Mapping[str, int], bool]
# PBX events' field names (as _key_map is keyed) -> their _Layout. Bounded like _key_maps.
_pbx_layouts: dict[tuple[str, ...], _Layout] = {}


def _layout_of(fields: Mapping[str, object], message: Message) -> _Layout:
    """``_key_map(fields)``, ``message.header_index()`` and whether no two names of
    ``fields`` differ only in case, for ``fields`` made of the message's headers (no
    name repeated as spelled) plus the keys the bus adds: equal field names then mean
    equal header names (and the index is the same for all messages with the same
    header names), so all three are remembered by them."""
    keys = tuple(fields)
    layout = _pbx_layouts.get(keys)
    if layout is None:
        key_map = _key_map(fields)
        layout = (key_map, message.header_index(), len(key_map) == len(fields))
        if len(_pbx_layouts) >= _KEY_MAP_CACHE_SIZE:
            _pbx_layouts.clear()
        _pbx_layouts[keys] = layout
    return layout


def _lower_value(value: object) -> str | list[str] | None:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):
        items = [scalar_text(item) for item in value]
        return [item.lower() for item in items if item is not None] or None
    text = scalar_text(value)
    return None if text is None else text.lower()


class Subscriber:
    """One connection's (WebSocket or event stream) side of the bus.

    Holds the bounded outbound queue that events and API answers share, and the
    connection's event permission (``guard``). The connection's sender task loops on
    :meth:`get` and writes what it returns.

    Bound: at most ``max_queue`` items queued. Past it the subscriber is *overflowed*
    for good: ``on_overflow(self)`` is called once (the owner closes the connection)
    and every later offer is refused. A closed subscriber refuses offers silently.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_decided",
        "_held",
        "_limit",
        "_on_overflow",
        "_queue",
        "_replied",
        "_stamp",
        "_waiter",
        "delivered",
        "guard",
        "max_queue",
        "max_subscriptions",
        "overflowed",
    )

    def __init__(
        self,
        *,
        max_queue: int,
        max_subscriptions: int,
        on_overflow: Callable[[Subscriber], None] | None = None,
        guard: Callable[[BusEvent], bool] | None = None,
    ) -> None:
        """Make a subscriber; ``guard(event)`` says whether it may see an event."""
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if max_subscriptions < 0:
            raise ValueError("max_subscriptions must not be negative")
        self.max_queue = max_queue
        self.max_subscriptions = max_subscriptions
        self.guard = guard
        self._on_overflow = on_overflow
        self._queue: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        # The sender's pause (hold_writes); a reply queued since the last get.
        self._held: asyncio.Future[None] | None = None
        self._replied = False
        self._closed = False
        self.overflowed = False
        # max_queue while accepting, 0 once overflowed or closed: one comparison
        # decides an offer on the fast path (the bus inlines it). While the sender
        # holds its writes, half of max_queue: the offer that reaches it takes the slow
        # path (offer), which ends the hold, so a held queue never nears the bound.
        self._limit = max_queue
        #: Items accepted into the queue (events and replies) since creation.
        self.delivered = 0
        # Publish bookkeeping (EventBus only): the stamp of the last event this
        # subscriber was considered for, and whether it was allowed to see it.
        self._stamp = 0
        self._decided = False

    @property
    def queued(self) -> int:
        """Items waiting in the queue."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def offer(self, data: bytes) -> bool:
        """Queue ``data`` without blocking; ``False`` if it was refused (full or closed).

        The first refusal for lack of room marks the subscriber overflowed and calls
        ``on_overflow``; it is never called again for this subscriber.
        """
        queue = self._queue
        if len(queue) >= self._limit:
            if not self._limit:
                return False
            if len(queue) < self.max_queue:  # a held sender's half-way mark: write now
                self.release()
            else:
                self._limit = 0
                self.overflowed = True
                if self._on_overflow is not None:
                    self._on_overflow(self)
                return False
        queue.append(data)
        self.delivered += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def put_nowait_reply(self, data: bytes) -> bool:
        """Queue an API answer in the same queue as events, with the same bound; it
        ends a :meth:`hold_writes` at once (answers are never held back)."""
        self._replied = True
        self.release()
        return self.offer(data)

    async def get(self, timeout: float | None = None) -> list[bytes]:  # noqa: ASYNC109
        """Wait for at least one item and return everything queued, oldest first.

        Returns ``[]`` after ``timeout`` seconds, or at once when the subscriber is
        closed and empty. Only one task may wait at a time (the connection's sender).
        """
        if not self._queue and not self._closed and (timeout is None or timeout > 0):
            if self._waiter is not None:
                raise RuntimeError("Subscriber.get() is already being awaited")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                if timeout is None:
                    await waiter  # the sender's hot path: no timer to arm per wake-up
                else:
                    async with asyncio.timeout(timeout):
                        await waiter
            except TimeoutError:
                return []
            finally:
                self._waiter = None
        items = self._queue
        if not items:
            return []
        self._queue = []
        self._replied = False
        return items

    async def hold_writes(self) -> None:
        """Wait until :meth:`release` (or a reply is queued, or the subscriber closes),
        letting events queue meanwhile without waking anyone.

        The sender calls it after a write, so that what the next few AMI reads
        publish goes out in one write, not one per read (the caller arranges the
        release). Returns at once when a reply was queued since the last :meth:`get`
        or the subscriber is closed, and ends early when the queue fills half-way: a
        hold never brings a reading client near ``max_queue``. Only the task that
        calls :meth:`get` may call it.
        """
        if self._replied or self._limit != self.max_queue or self.max_queue < 2:
            return  # a reply to send, overflowed or closed, or no room to hold in
        held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held = held
        self._limit = max(1, self.max_queue // 2)
        try:
            await held
        finally:
            self._held = None
            if self._limit:  # not overflowed or closed meanwhile
                self._limit = self.max_queue

    def release(self) -> None:
        """End a :meth:`hold_writes` (no effect when none is waiting)."""
        held = self._held
        if held is not None and not held.done():
            if self._limit:
                self._limit = self.max_queue
            held.set_result(None)

    def close(self) -> None:
        """Refuse further items and wake a waiting :meth:`get` (which drains what is
        left) or :meth:`hold_writes`."""
        self._closed = True
        self._limit = 0
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.release()


@dataclass(frozen=True, slots=True)
class BusStats:
    """Counters since the bus was made, and the current sizes."""

    published: int
    delivered: int
    dropped: int
    subscriptions: int
    subscribers: int
    #: Events and bytes of JSON in the replay buffer now.
    replay_events: int = 0
    replay_bytes: int = 0
    #: Subscriptions made with ``since`` (resumes), and how many of them had a gap.
    resumes: int = 0
    resume_gaps: int = 0


@dataclass(frozen=True, slots=True)
class Resumption:
    """What :meth:`EventBus.subscribe_since` did: the subscription, the replay, the gap."""

    #: The new subscription's id (for a once-subscription that a replayed event
    #: already ended, an id that names no live subscription).
    subscription_id: str
    #: The buffered events after ``since`` that match and that the subscriber may
    #: see, oldest first (at most one for a once-subscription).
    events: list[BusEvent]
    #: True when events after ``since`` may be missing from ``events`` (invariants 6-8).
    gap: bool
    #: The newest id when the subscription started: everything after it that matches
    #: is delivered live.
    last_event_id: str


class _Subscription:
    """One live subscription and where it sits in the index."""

    __slots__ = (
        "active",
        "bucket",
        "filter",
        "id",
        "index_key",
        "index_values",
        "once",
        "subscriber",
        "test",
    )

    def __init__(
        self, sid: str, subscriber: Subscriber, flt: EventFilter, once: bool, bucket: _Bucket
    ) -> None:
        self.id = sid
        self.subscriber = subscriber
        self.filter = flt
        self.once = once
        self.bucket = bucket
        self.active = True
        self.index_key: str | None = None
        self.index_values: frozenset[str] = frozenset()
        # What still has to be checked once the index picked this subscription: the
        # name only when the bucket is the any/wildcard one, the fields when there are
        # any, nothing at all for a plain name subscription.
        self.test: Callable[[BusEvent], bool] | None
        if bucket.name_key is None and flt.name_glob is not None:
            self.test = flt.matches
        elif flt.field_tests:
            self.test = flt.matches_fields
        else:
            self.test = None


class _Listener:
    """One :meth:`EventBus.listen` callback and its filter."""

    __slots__ = ("active", "callback", "filter")

    def __init__(self, flt: EventFilter, callback: Callable[[BusEvent], object]) -> None:
        self.filter = flt
        self.callback = callback
        self.active = True


class _Bucket:
    """The subscriptions for one event name (or for any/wildcard names).

    ``plain`` holds those that must be checked one by one; ``indexed`` maps a field
    key to {lowercased exact value: subscriptions}. Both are copy-on-write: replaced,
    never mutated, while ``publish`` may be walking them.
    """

    __slots__ = ("indexed", "name_key", "plain", "size")

    def __init__(self, name_key: str | None) -> None:
        self.name_key = name_key
        self.plain: tuple[_Subscription, ...] = ()
        self.indexed: tuple[tuple[str, dict[str, tuple[_Subscription, ...]]], ...] = ()
        self.size = 0

    def add(self, sub: _Subscription) -> None:
        key = self._index_field(sub.filter)
        if key is None:
            self.plain = (*self.plain, sub)
        else:
            tests = {test[0]: test for test in sub.filter.field_tests}
            values = tests[key][1]
            table = self._table(key)
            if table is None:
                table = {}
                self.indexed = (*self.indexed, (key, table))
            for value in values:
                table[value] = (*table.get(value, ()), sub)
            sub.index_key = key
            sub.index_values = values
        self.size += 1

    def remove(self, sub: _Subscription) -> None:
        if sub.index_key is None:
            self.plain = tuple(s for s in self.plain if s is not sub)
        else:
            table = self._table(sub.index_key)
            assert table is not None
            for value in sub.index_values:
                rest = tuple(s for s in table.get(value, ()) if s is not sub)
                if rest:
                    table[value] = rest
                else:
                    table.pop(value, None)
            if not table:
                self.indexed = tuple(pair for pair in self.indexed if pair[1] is not table)
        self.size -= 1

    def _table(self, key: str) -> dict[str, tuple[_Subscription, ...]] | None:
        for table_key, table in self.indexed:
            if table_key == key:
                return table
        return None

    def _index_field(self, flt: EventFilter) -> str | None:
        """The field to index ``flt`` by: one whose values are all exact, preferring a
        key the bucket already indexes (so an event costs one look-up per key)."""
        candidates = [key for key, exact, globs in flt.field_tests if exact and not globs]
        if not candidates:
            return None
        for key in candidates:
            if self._table(key) is not None:
                return key
        return candidates[0]


class EventBus:
    """Subscriptions and fan-out; see the module docstring for the invariants."""

    def __init__(
        self,
        *,
        id_factory: Callable[[], str] | None = None,
        run_id: str | None = None,
        replay: ReplayBuffer | None = None,
        resume_grace: float = DEFAULT_RESUME_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``id_factory`` makes subscription ids (default ``"s1"``, ``"s2"``, ...); ids
        need only be unique per subscriber. ``run_id`` names this run in event ids
        (default: random, ``events.ids.new_run_id``); ``replay`` is the buffer resumes
        read (default: ``ReplayBuffer()``'s bounds); ``resume_grace`` the seconds a
        disconnected subscriber's names stay interesting (0: not at all); ``clock``
        the monotonic time those seconds are measured on."""
        if id_factory is None:
            counter = itertools.count(1)

            def id_factory() -> str:
                return f"s{next(counter)}"

        if resume_grace < 0:
            raise ValueError("resume_grace must not be negative")
        self._new_id = id_factory
        self._buckets: dict[str, _Bucket] = {}
        self._any = _Bucket(None)
        self._owned: dict[Subscriber, dict[str, _Subscription]] = {}
        self._listeners: tuple[_Listener, ...] = ()
        # How many listeners want each lowercased name (None: any or a wildcard name),
        # so that interested() stays a dict look-up.
        self._listened: dict[str | None, int] = {}
        self._subscriptions = 0
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._run = check_run_id(run_id) if run_id is not None else new_run_id()
        self._id_prefix = self._run + "-"
        # The number of the newest event id made or skipped (invariant 8); never reused.
        self._seq = 0
        self._replay = replay if replay is not None else ReplayBuffer()
        self._resume_grace = resume_grace
        self._clock = clock
        # Lowercased name (None: every name) -> monotonic deadline: names of gone
        # subscribers' subscriptions that stay interesting (bounded, see disconnect).
        self._lingering: dict[str | None, float] = {}
        # Lowercased name -> number of the newest skipped event of that name; numbers
        # at or below _skip_floor may have been forgotten (invariant 8).
        self._skipped: dict[str, int] = {}
        self._skip_floor = 0
        self._resumes = 0
        self._resume_gaps = 0

    @property
    def run_id(self) -> str:
        """The run part of this bus's event ids."""
        return self._run

    @property
    def last_event_id(self) -> str:
        """The id of the newest event published or skipped (``<run>-0`` before any):
        what a subscription made now has seen everything up to."""
        return self._id_prefix + str(self._seq)

    @property
    def replay(self) -> ReplayBuffer:
        """The replay buffer every published event is recorded in."""
        return self._replay

    @property
    def stats(self) -> BusStats:
        """A snapshot of the counters."""
        return BusStats(
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
            subscriptions=self._subscriptions,
            subscribers=len(self._owned),
            replay_events=len(self._replay),
            replay_bytes=self._replay.bytes,
            resumes=self._resumes,
            resume_gaps=self._resume_gaps,
        )

    def interested(self, name: str) -> bool:
        """Whether any subscription could want an event called ``name``: lets the AMI
        reader skip building a :class:`BusEvent` nobody would receive.

        Names of recently disconnected subscribers count as wanted (module docstring).
        ``False`` means the caller skips the event: the bus remembers that an event of
        this name was skipped, so that a resume which would have wanted it reports a
        gap (invariant 8).
        """
        if self._any.size > 0 or None in self._listened:
            return True
        key = name.lower()
        if key in self._buckets or key in self._listened:
            return True
        if self._lingering and self._lingers(key):
            return True
        seq = self._seq = self._seq + 1
        skipped = self._skipped
        skipped[key] = seq
        if len(skipped) > MAX_SKIPPED_NAMES:  # forget them all; the floor still says "maybe"
            self._skip_floor = seq
            skipped.clear()
        return False

    def _lingers(self, key: str) -> bool:
        """Whether ``key`` (or every name) is still wanted by a gone subscriber; drops
        the deadlines it finds expired."""
        lingering = self._lingering
        now = self._clock()
        for each in (key, None):
            deadline = lingering.get(each)
            if deadline is not None:
                if deadline > now:
                    return True
                del lingering[each]
        return False

    def listen(
        self, flt: EventFilter, callback: Callable[[BusEvent], object]
    ) -> Callable[[], None]:
        """Call ``callback(event)`` for every published event matching ``flt``, and
        return a function that stops it (calling it again does nothing).

        The callback runs synchronously inside :meth:`publish`, after the subscribers
        were offered the event, with no guard: it must be quick, must not await, and
        must not change ``event.fields``. An exception it raises is logged, never
        passed to the publisher.
        """
        listener = _Listener(flt, callback)
        self._listeners = (*self._listeners, listener)
        key = flt.name_key
        self._listened[key] = self._listened.get(key, 0) + 1

        def stop() -> None:
            if not listener.active:
                return
            listener.active = False
            self._listeners = tuple(each for each in self._listeners if each is not listener)
            left = self._listened[key] - 1
            if left:
                self._listened[key] = left
            else:
                del self._listened[key]

        return stop

    def subscribe(self, subscriber: Subscriber, flt: EventFilter, *, once: bool = False) -> str:
        """Add a subscription and return its id; :class:`SubscriptionLimit` past the
        subscriber's ``max_subscriptions``."""
        owned = self._check_room(subscriber)
        sid = self._new_id()
        if owned is not None and sid in owned:
            raise RuntimeError(f"subscription id factory returned {sid!r} twice")
        if flt.name_key is None:
            bucket = self._any
        else:
            bucket = self._buckets.get(flt.name_key) or _Bucket(flt.name_key)
            self._buckets[flt.name_key] = bucket
        sub = _Subscription(sid, subscriber, flt, once, bucket)
        bucket.add(sub)
        if owned is None:
            owned = self._owned[subscriber] = {}
        owned[sid] = sub
        self._subscriptions += 1
        return sid

    def subscribe_since(
        self,
        subscriber: Subscriber,
        flt: EventFilter,
        since: EventPosition,
        *,
        once: bool = False,
    ) -> Resumption:
        """Replay the buffered events after ``since`` that match ``flt`` and that the
        subscriber's guard allows, then subscribe, all in one synchronous step: an event
        is either in the replay or delivered live, never both, never neither.

        Whether something may be missing is :attr:`Resumption.gap` (invariants 6-8);
        with a gap, what the buffer still holds after ``since`` is replayed all the
        same (nothing for an id of another run: the buffer cannot say what came after
        it). A once-subscription that a replayed event satisfies is not created.
        :class:`SubscriptionLimit` as for :meth:`subscribe`, before anything else.
        """
        self._check_room(subscriber)
        self._resumes += 1
        events: list[BusEvent] = []
        if since.run != self._run or since.seq > self._seq:
            gap = True
        else:
            gap = not self._replay.covers(since.seq) or self._skipped_after(flt, since.seq)
            guard = subscriber.guard
            for event in self._replay.after(since.seq):
                if flt.matches(event) and (guard is None or guard(event)):
                    events.append(event)
                    if once:
                        break
        if gap:
            self._resume_gaps += 1
        last_event_id = self.last_event_id
        if once and events:
            subscription_id = self._new_id()  # ended by its replayed event, as if live
        else:
            subscription_id = self.subscribe(subscriber, flt, once=once)
        return Resumption(
            subscription_id=subscription_id, events=events, gap=gap, last_event_id=last_event_id
        )

    def _check_room(self, subscriber: Subscriber) -> dict[str, _Subscription] | None:
        """The subscriber's subscriptions; :class:`SubscriptionLimit` if it has no room."""
        owned = self._owned.get(subscriber)
        count = 0 if owned is None else len(owned)
        if count >= subscriber.max_subscriptions:
            raise SubscriptionLimit(
                f"a connection may have at most {subscriber.max_subscriptions} subscriptions"
            )
        return owned

    def _skipped_after(self, flt: EventFilter, seq: int) -> bool:
        """Whether an event ``flt`` could want was skipped after number ``seq``."""
        if self._skip_floor > seq:
            return True
        skipped = self._skipped
        if flt.name_key is not None:
            return skipped.get(flt.name_key, 0) > seq
        glob = flt.name_glob
        return any(
            number > seq and (glob is None or glob_match(glob, name))
            for name, number in skipped.items()
        )

    def disconnect(self, subscriber: Subscriber) -> int:
        """Remove every subscription of a connection that went away, and keep their
        names interesting for ``resume_grace`` seconds so that their events still reach
        the replay buffer for a resume (module docstring). Returns how many."""
        owned = self._owned.get(subscriber)
        if owned and self._resume_grace > 0:
            lingering = self._lingering
            now = self._clock()
            deadline = now + self._resume_grace
            if len(lingering) >= MAX_LINGERING_NAMES:
                for key in [key for key, until in lingering.items() if until <= now]:
                    del lingering[key]
            for sub in owned.values():
                key = sub.filter.name_key  # None for every name and for wildcard names
                if key not in lingering and len(lingering) >= MAX_LINGERING_NAMES:
                    key = None  # out of room: keep everything interesting instead
                if lingering.get(key, 0.0) < deadline:
                    lingering[key] = deadline
        return self.unsubscribe_all(subscriber)

    def unsubscribe(self, subscriber: Subscriber, subscription_id: str) -> int:
        """Remove one of ``subscriber``'s own subscriptions by id; returns 0 or 1."""
        owned = self._owned.get(subscriber)
        sub = None if owned is None else owned.get(subscription_id)
        if sub is None:
            return 0
        self._remove(sub)
        return 1

    def unsubscribe_name(self, subscriber: Subscriber, name: str) -> int:
        """Remove all of ``subscriber``'s subscriptions whose name is ``name``
        (case-insensitive; ``""`` and ``"*"`` mean the any-event ones, ``"Dial*"`` the
        ones subscribed with that very pattern). Returns how many."""
        wanted = name.lower() if name.strip("*") else "*"
        return self._remove_where(subscriber, lambda sub: sub.filter.name_pattern == wanted)

    def unsubscribe_all(self, subscriber: Subscriber) -> int:
        """Remove every subscription of ``subscriber``; returns how many."""
        return self._remove_where(subscriber, lambda sub: True)

    def subscriptions(self, subscriber: Subscriber) -> Iterator[tuple[str, EventFilter, bool]]:
        """(id, filter, once) of each of ``subscriber``'s subscriptions."""
        owned = self._owned.get(subscriber, {})
        for sub in list(owned.values()):
            yield sub.id, sub.filter, sub.once

    def publish(self, event: BusEvent) -> int:
        """Stamp ``event`` with the next ``eventId``, offer it to every subscriber with a
        matching subscription, record it for replay, and call the listeners; never
        awaits. Returns how many subscribers took it."""
        self._published += 1
        seq = self._seq = self._seq + 1
        event_id = self._id_prefix + str(seq)
        fields = event.fields
        if EVENT_ID_KEY in fields:  # always the last key (event_id_of reads it there)
            del fields[EVENT_ID_KEY]
        fields[EVENT_ID_KEY] = event_id
        event.event_id = event_id
        event.seq = seq
        # Serialised once for everyone (subscribers and the buffer), here rather than
        # in a method (a Python call per event), into an exactly sized ``bytes``:
        # orjson's result holds a buffer of at least 4 KiB whatever its length, ten
        # times a typical event, and the replay buffer keeps thousands of them (and a
        # slow client's queue up to ``ws_queue_size``).
        event._payload = memoryview(orjson.dumps(fields)).tobytes()
        stamp = next(_stamps)
        reached = 0
        bucket = self._buckets.get(event.name_key)
        if bucket is not None:
            reached += self._fan_out(bucket, event, stamp)
        anywhere = self._any
        if anywhere.size:
            # Any-event subscriptions (supervisors' "*") are nearly always plain: then
            # straight to _offer, without _fan_out's Python call.
            if anywhere.indexed:
                reached += self._fan_out(anywhere, event, stamp)
            else:
                reached += self._offer(anywhere.plain, event, stamp)
        self._replay.record(event)
        listeners = self._listeners
        if listeners:
            for listener in listeners:
                if listener.active and listener.filter.matches(event):
                    try:
                        listener.callback(event)
                    except Exception:  # the AMI reader must never see a listener's bug
                        log.exception("event listener %r failed", listener.callback)
        return reached

    def _fan_out(self, bucket: _Bucket, event: BusEvent, stamp: int) -> int:
        reached = 0
        if bucket.plain:
            reached += self._offer(bucket.plain, event, stamp)
        if bucket.indexed:
            lowered_value = event.lowered_value
            for key, table in bucket.indexed:
                value = lowered_value(key)
                if value is None:
                    continue
                if isinstance(value, str):
                    candidates = table.get(value)
                    if candidates:
                        reached += self._offer(candidates, event, stamp)
                else:
                    for item in value:
                        candidates = table.get(item)
                        if candidates:
                            reached += self._offer(candidates, event, stamp)
        return reached

    def _offer(self, candidates: tuple[_Subscription, ...], event: BusEvent, stamp: int) -> int:
        """The hot loop: kept flat, with Subscriber.offer's fast path inlined."""
        reached = 0
        data = event._payload
        for sub in candidates:
            if not sub.active:
                continue
            subscriber = sub.subscriber
            test = sub.test
            if subscriber._stamp == stamp:
                # Already decided for this event through another subscription; only a
                # once-subscription still needs to know whether it fired (invariant 4).
                if sub.once and subscriber._decided and (test is None or test(event)):
                    self._remove(sub)
                continue
            if test is not None and not test(event):
                continue
            subscriber._stamp = stamp
            guard = subscriber.guard
            if guard is not None and not guard(event):
                subscriber._decided = False
                continue
            subscriber._decided = True
            if sub.once:
                self._remove(sub)
            if data is None:
                data = event.payload()
            queue = subscriber._queue
            if len(queue) < subscriber._limit:
                queue.append(data)
                subscriber.delivered += 1
                waiter = subscriber._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                reached += 1
            elif subscriber.offer(data):  # the slow path: overflow bookkeeping
                reached += 1
            else:
                self._dropped += 1
        self._delivered += reached
        return reached

    def _remove_where(
        self, subscriber: Subscriber, predicate: Callable[[_Subscription], bool]
    ) -> int:
        owned = self._owned.get(subscriber)
        if not owned:
            return 0
        doomed = [sub for sub in owned.values() if predicate(sub)]
        for sub in doomed:
            self._remove(sub)
        return len(doomed)

    def _remove(self, sub: _Subscription) -> None:
        if not sub.active:
            return
        sub.active = False
        bucket = sub.bucket
        bucket.remove(sub)
        if bucket.size == 0 and bucket.name_key is not None:
            self._buckets.pop(bucket.name_key, None)
        owned = self._owned[sub.subscriber]
        del owned[sub.id]
        if not owned:
            del self._owned[sub.subscriber]
        self._subscriptions -= 1
