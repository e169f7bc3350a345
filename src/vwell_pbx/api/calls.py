"""Calls in the API: the methods ``calls`` and ``callHistory``, the active calls a
``call.*`` subscription answers with, and how call events become bus events and
history rows.

What a user sees of calls is decided here, in the API layer (the event bus knows
nothing of roles): a role with ``own_calls_only`` (the built-in ``operator``) or
``own_extensions_only`` sees only calls that involved one of the user's own extensions
(``Role.sees_call``), in ``call.*`` events (the connection's guard, ``api.guards``),
in ``calls``, in ``callHistory`` (as a condition of the query) and in a subscription's
answer; other roles see every call their event rules allow.

**History cursors.** ``callHistory`` answers ``next``, an opaque cursor for the
following page: the position of the page's last row (start time and row id) and a
fingerprint of the query it belongs to, signed with HMAC-SHA256 under a key kept in
the database (``KeyStore``, so that every instance and every restart accepts it). A
cursor that was altered, or that belongs to another query, user restriction or
database, is refused with ``bad_request`` naming ``argument.before``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

import orjson
from pydantic import Field, field_validator

from vwell_pbx.api.envelope import Arguments
from vwell_pbx.api.errors import BadRequest, Forbidden
from vwell_pbx.api.registry import method
from vwell_pbx.calls import CALL_EVENT_NAMES, CallEvent, CallSnapshot, Direction, EndReason
from vwell_pbx.events.bus import EVENT_ID_KEY, BusEvent
from vwell_pbx.events.filters import EventFilter, glob_match
from vwell_pbx.pbx.errors import NotSupported
from vwell_pbx.storage import CallRecord, HistoryPosition, HistoryQuery
from vwell_pbx.storage.calls import MAX_QUERY_EXTENSIONS

if TYPE_CHECKING:
    from vwell_pbx.api.roles import Role
    from vwell_pbx.api.service import Call, PbxLink

__all__ = [
    "CURSOR_KEY_NAME",
    "MAX_HISTORY_LIMIT",
    "active_calls_for_subscription",
    "call_bus_event",
    "record_of",
]

MAX_HISTORY_LIMIT: Final = 1000
"""Most calls one ``callHistory`` page may ask for."""

CURSOR_KEY_NAME: Final = "call-history-cursor"
"""The ``KeyStore`` key that signs history cursors."""

HISTORY_FLUSH_TIMEOUT: Final = 1.0
"""Seconds ``callHistory`` waits at most for this instance's queued calls to be written
before it reads the history."""

_CURSOR_VERSION: Final = 1
_MAX_MOMENT_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z


# --- how calls travel ------------------------------------------------------------


def call_bus_event(event: CallEvent) -> BusEvent:
    """A call event as the bus carries it: the call object plus ``name``, with the
    call's extensions for the guards (not pushed). A call object has no ``Event`` or
    ``Privilege`` field in any case, which the guards rely on (``api.guards``)."""
    # fields, name, dispatched, extensions: positional, since matching keywords is
    # a third of the cost of making a BusEvent. The fields are the very message the
    # tracker built, not a copy (about 1,500 CPU instructions per call event with the
    # copy's later release): nothing else is sent it, and the bus's one change to it,
    # eventId as the last key, is what every reader of the event after this sees
    # (CallEvent.message says so; record_of leaves it out).
    fields: dict[str, object] = event.message  # type: ignore[assignment]
    return BusEvent(fields, event.name, False, event.extensions)


def _epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def record_of(call: CallSnapshot | CallEvent) -> CallRecord:
    """An ended call (its snapshot, or its ``call.ended`` event) as the history stores
    it (run by the history writer, off the event path): the filter columns and the
    call object as JSON."""
    if isinstance(call, CallEvent):
        # Read from the event's message, the call object already made for the bus:
        # the snapshot (CallEvent.call) and its to_dict() would rebuild it (a third of
        # this function's CPU instructions). The message is the call object's keys in
        # order, then name, then the eventId the bus appended: not the call object's.
        document = call.message.copy()
        del document["name"]
        document.pop(EVENT_ID_KEY, None)
    else:
        document = call.to_dict()
    started_at = cast("str", document["startedAt"])
    ended_at = cast("str | None", document["endedAt"])
    started_ms = _epoch_ms(started_at)
    return CallRecord(
        pbx=cast("str", document["pbx"]),
        call_id=cast("str", document["callId"]),
        started_ms=started_ms,
        ended_ms=_epoch_ms(ended_at) if ended_at else started_ms,
        direction=cast("str", document["direction"]),
        end_reason=cast("str | None", document["endReason"]) or "unknown",
        from_number=cast("str | None", document["fromNumber"]),
        to_number=cast("str | None", document["toNumber"]),
        extensions=tuple(sorted(call.extensions)),
        document=orjson.dumps(document).decode(),
        originated=document["originated"] is True,
    )


# --- who sees which call ---------------------------------------------------------


def _visible(role: Role, own: tuple[str, ...], calls: Iterable[CallSnapshot]) -> list[CallSnapshot]:
    return [snapshot for snapshot in calls if role.sees_call(snapshot.extensions, own)]


def _links(call: Call, pbx: str | None) -> list[PbxLink]:
    """The PBX named by ``argument.pbx`` (dispatch checked the name), else every PBX."""
    return [call.pbx] if pbx is not None else list(call.api.links.values())


def subscribed_call_names(flt: EventFilter) -> list[str]:
    """The call event names a subscription's name covers (exactly or by a wildcard);
    none for an any-event subscription (``*``)."""
    if flt.name_key is not None:
        return [name for name in CALL_EVENT_NAMES if name == flt.name_key]
    if flt.name_glob is None:
        return []
    return [name for name in CALL_EVENT_NAMES if glob_match(flt.name_glob, name)]


def active_calls_for_subscription(call: Call, flt: EventFilter) -> list[dict[str, Any]] | None:
    """The active calls a new subscription would be shown (``calls`` in its answer),
    or ``None`` when it is not a ``call.*`` subscription.

    A call is listed when the subscription's field filters match it and the user
    could receive one of the subscribed call events about it (role event rules and
    ``Role.sees_call``), so a page opened mid-call shows exactly what its events
    will update.
    """
    names = subscribed_call_names(flt)
    if not names:
        return None
    role = call.role
    own = call.principal.extensions
    listed: list[dict[str, Any]] = []
    for link in call.api.links.values():
        if link.calls is None:
            continue
        for snapshot in _visible(role, own, link.calls.active()):
            fields = snapshot.to_dict()
            for name in names:
                event = BusEvent(
                    fields={**fields, "name": name}, name=name, extensions=snapshot.extensions
                )
                rule_fields = cast("dict[str, str | list[str]]", event.fields)
                if flt.matches_fields(event) and role.allows_event(rule_fields, extensions=own):
                    listed.append(fields)
                    break
    return listed


def _own_extension(call: Call, extension: str | None) -> None:
    """A user who sees only their own calls may ask only about their own extensions."""
    if extension is None or not call.role.sees_own_calls_only:
        return
    if extension not in call.principal.extensions:
        raise Forbidden(
            f"argument.extension: extension {extension} is not one of yours "
            f"(role {call.role.name!r} sees only the calls of your own extensions)"
        )


# --- calls -----------------------------------------------------------------------


class CallsArgs(Arguments):
    """``calls``: the active calls."""

    UNKNOWN_KEYS_ARE_ERRORS: ClassVar[bool] = True

    extension: str | None = Field(
        None, min_length=1, max_length=64, description="only calls that involve this extension"
    )
    number: str | None = Field(None, max_length=64, description="only calls from or to it")
    direction: Direction | None = Field(None, description="inbound|outbound|internal|unknown")


@method(
    "calls",
    CallsArgs,
    needs_pbx=False,
    summary="The active calls (call objects), optionally filtered by extension, number "
    "or direction.",
    answer={"calls": "the active calls, oldest first"},
)
async def calls(call: Call, args: CallsArgs) -> dict[str, Any]:
    """List the live calls the caller may see."""
    _own_extension(call, args.extension)
    number = (
        call.settings.phone.normalise(args.number, argument="number")
        if args.number is not None
        else None
    )
    links = _links(call, args.pbx)
    if all(link.calls is None for link in links):
        raise NotSupported("call tracking is off in this server's configuration ([calls])")
    listed: list[dict[str, Any]] = []
    for link in links:
        if link.calls is None:
            continue
        for snapshot in _visible(call.role, call.principal.extensions, link.calls.active()):
            if args.extension is not None and args.extension not in snapshot.extensions:
                continue
            if number is not None and number not in (snapshot.from_number, snapshot.to_number):
                continue
            if args.direction is not None and snapshot.direction != args.direction:
                continue
            listed.append(snapshot.to_dict())
    return {"calls": listed}


# --- callHistory -----------------------------------------------------------------


def parse_moment(text: str) -> int:
    """``2024-05-01T10:00:00Z`` (ISO 8601; no zone = UTC) or epoch seconds -> epoch ms.

    Raises ``ValueError`` saying what is accepted.
    """
    raw = text.strip()
    seconds: float | None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = None
    if seconds is None:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(
                f"must be ISO 8601 (2024-05-01T10:00:00Z) or epoch seconds, got {raw[:40]!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not (math.isfinite(seconds) and 0 <= seconds <= _MAX_MOMENT_SECONDS):
        raise ValueError("must be between 1970 and 9999")
    return round(seconds * 1000)


class CallHistoryArgs(Arguments):
    """``callHistory``: ended calls from the history, newest first, page by page."""

    UNKNOWN_KEYS_ARE_ERRORS: ClassVar[bool] = True

    since: str | None = Field(
        None, max_length=64, description="calls that started at or after it (ISO 8601 or epoch s)"
    )
    until: str | None = Field(
        None, max_length=64, description="calls that started before it (ISO 8601 or epoch s)"
    )
    extension: str | None = Field(
        None, min_length=1, max_length=64, description="only calls that involved this extension"
    )
    number: str | None = Field(None, max_length=64, description="only calls from or to it")
    direction: Direction | None = Field(None, description="inbound|outbound|internal|unknown")
    endReason: EndReason | None = Field(None, description="only calls that ended so")  # noqa: N815
    limit: int = Field(100, description=f"calls per page (1..{MAX_HISTORY_LIMIT})")
    before: str | None = Field(
        None, max_length=512, description="`next` of the previous page (an opaque cursor)"
    )

    @field_validator("since", "until")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        if value is not None:
            parse_moment(value)
        return value

    @field_validator("limit")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if not 1 <= value <= MAX_HISTORY_LIMIT:
            raise ValueError(f"must be between 1 and {MAX_HISTORY_LIMIT}, got {value}")
        return value


def _fingerprint(query: HistoryQuery) -> str:
    """What a cursor is bound to: everything of the query but its page and size."""
    facts = [
        sorted(query.extensions) if query.extensions is not None else None,
        query.number,
        query.direction,
        query.end_reason,
        query.pbx,
        query.since_ms,
        query.until_ms,
    ]
    return hashlib.sha256(orjson.dumps(facts)).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(key: bytes, position: HistoryPosition, query: HistoryQuery) -> str:
    """The signed cursor of the page after ``position`` (see the module docstring)."""
    payload = orjson.dumps(
        [_CURSOR_VERSION, position.started_ms, position.row, _fingerprint(query)]
    )
    signature = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode_cursor(key: bytes, cursor: str, query: HistoryQuery) -> HistoryPosition:
    """The position a cursor carries; ``BadRequest`` if it is not one of ``query``'s."""
    refused = BadRequest(
        "argument.before is not a cursor of this query: pass the `next` of the previous "
        "page, with the same filters"
    )
    body, _, signature = cursor.partition(".")
    try:
        payload = _unb64(body)
        expected = hmac.new(key, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(_unb64(signature), expected):
            raise refused
        version, started_ms, row, fingerprint = orjson.loads(payload)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise refused from None
    if version != _CURSOR_VERSION or fingerprint != _fingerprint(query):
        raise refused
    if not (isinstance(started_ms, int) and isinstance(row, int)):
        raise refused
    return HistoryPosition(started_ms, row)


def _history_extensions(call: Call, extension: str | None) -> tuple[str, ...] | None:
    """The extensions the query is restricted to: the one asked for, or for a role
    that sees only its own calls the user's own; ``None`` for no restriction."""
    if extension is not None:
        _own_extension(call, extension)
        return (extension,)
    if not call.role.sees_own_calls_only:
        return None
    own = tuple(call.principal.extensions)
    if len(own) > MAX_QUERY_EXTENSIONS:
        raise BadRequest(
            f"argument.extension is required: you have more than {MAX_QUERY_EXTENSIONS} "
            "extensions; ask for one at a time"
        )
    return own


@method(
    "callHistory",
    CallHistoryArgs,
    needs_pbx=False,
    summary="Ended calls from the history, newest first, filtered by time, extension, "
    "number, direction and endReason; `before` pages with the previous answer's `next`.",
    answer={
        "calls": "the call objects of this page, newest first",
        "next": "the cursor of the next page (pass it as `before`), or null at the end",
    },
)
async def call_history(call: Call, args: CallHistoryArgs) -> dict[str, Any]:
    """One page of the stored call history."""
    api = call.api
    if api.call_history is None or api.keys is None:
        raise NotSupported("this server keeps no call history")
    query = HistoryQuery(
        extensions=_history_extensions(call, args.extension),
        number=(
            call.settings.phone.normalise(args.number, argument="number")
            if args.number is not None
            else None
        ),
        direction=args.direction,
        end_reason=args.endReason,
        pbx=args.pbx,
        since_ms=parse_moment(args.since) if args.since is not None else None,
        until_ms=parse_moment(args.until) if args.until is not None else None,
        limit=args.limit + 1,  # one more than asked: is there a next page?
    )
    since_ms, until_ms = query.since_ms, query.until_ms
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise BadRequest("argument.until must be later than argument.since")
    key = await api.keys.get(CURSOR_KEY_NAME)
    if args.before is not None:
        position = decode_cursor(key, args.before, query)
        query = replace(query, before=position)
    writer = api.history_writer
    if writer is not None and writer.pending:
        # Read your writes: a call that just ended may still wait in this instance's
        # queue. Bounded; past it the page is what is stored (never an error).
        await writer.flush(HISTORY_FLUSH_TIMEOUT)
    rows = await api.call_history.history(query)
    page = rows[: args.limit]
    next_cursor = encode_cursor(key, page[-1].position, query) if len(rows) > args.limit else None
    return {"calls": [orjson.loads(row.document) for row in page], "next": next_cursor}
