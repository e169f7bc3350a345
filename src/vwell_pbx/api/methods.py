"""Every API method: one decorated function each, its argument schema right above it.

Method functions receive a validated schema instance and a ``Call`` (who is calling,
with which role, on which PBX) and return the method's own answer fields; the
envelope (``err``, ``errCode``, ``reqId``) is added by dispatch. They raise the
layers' own exceptions; ``api.errors`` maps those to ``errCode``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import orjson
from pydantic import Field, StringConstraints, field_validator

from vwell_pbx.api.calls import active_calls_for_subscription
from vwell_pbx.api.envelope import Arguments, action_answer, argument_error, pbx_message
from vwell_pbx.api.errors import BadRequest, Forbidden, NotFound
from vwell_pbx.api.registry import METHODS, method
from vwell_pbx.api.roles import channel_claims
from vwell_pbx.api.sms import SMS_ID, parse_time, row_visible, sms_json
from vwell_pbx.api.sms import visibility as sms_visibility
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.events.filters import EventFilter
from vwell_pbx.events.ids import EventIdError, parse_event_id
from vwell_pbx.pbx.channels import device_extension
from vwell_pbx.pbx.dial import dial as originate_call
from vwell_pbx.pbx.errors import PbxRejected
from vwell_pbx.pbx.redirect import redirect as redirect_call
from vwell_pbx.storage import SmsHistoryQuery, SmsRow

if TYPE_CHECKING:
    from vwell_pbx.api.service import Call

FieldScalar = str | int | float | bool
FieldValue = FieldScalar | list[FieldScalar]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]


def _ami_text(value: FieldScalar) -> str:
    """AMI spells flags as words; everything else is its plain text form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- send ---------------------------------------------------------------------------


class SendArgs(Arguments):
    """``send``: one raw AMI action."""

    fields: dict[str, FieldValue] = Field(
        description="AMI headers; `action` is required; a list becomes a repeated header"
    )
    callbackAwait: bool = Field(False, description="wait for the PBX's answer")  # noqa: N815
    timeout: int | None = Field(None, ge=1, description="ms to wait (capped by configuration)")

    @field_validator("fields")
    @classmethod
    def _has_action(cls, fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
        actions = [v for k, v in fields.items() if k.lower() == "action"]
        if len(actions) != 1 or not isinstance(actions[0], str) or not actions[0].strip():
            raise ValueError("must contain exactly one `action` key with a non-empty string")
        name = actions[0].strip()
        if not _ACTION_NAME.fullmatch(name):
            raise argument_error(
                "action",
                "must be an AMI action name: letters, digits, '_' and '-' only, such as "
                f"Ping or CoreShowChannels (got {name[:40]!r})",
            )
        return fields


# What Asterisk's action names are made of (manager.c registers them so): anything else
# is a mistake or an attempt to smuggle something to the PBX, refused before it is sent.
_ACTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


@method(
    "send",
    SendArgs,
    summary="Send one raw AMI action; with callbackAwait (or fields.actionId) wait for the answer.",
    answer={
        "event": "the PBX's response as an object (when awaited)",
        "events": "the items of an event-list answer, complete (when awaited)",
        "output": "Command output as text (when awaited)",
        "actionId": "your fields.actionId, echoed",
        "written": "true when not awaited: the action was written to the PBX",
    },
)
async def send(call: Call, args: SendArgs) -> dict[str, Any]:
    """Write the action; with ``callbackAwait``/``actionId`` return the PBX's answer."""
    if len(args.fields) > call.settings.send_max_fields:
        raise BadRequest(
            f"argument.fields has {len(args.fields)} keys; at most "
            f"{call.settings.send_max_fields} are allowed"
        )
    client_action_id: str | None = None
    pairs: list[tuple[str, str]] = []
    for key, value in args.fields.items():
        if key.lower() == "actionid":
            client_action_id = _ami_text(value) if not isinstance(value, list) else None
            continue
        if isinstance(value, list):
            pairs.extend([(key, _ami_text(item)) for item in value])
        else:
            pairs.append((key, _ami_text(value)))
    if pairs[0][0].lower() != "action":  # the schema allows exactly one action key
        pairs.sort(key=lambda pair: pair[0].lower() != "action")  # Action first, order kept
    # Every value of every header, repeated ones included: the role's checks must see
    # all of them (a dict of the pairs would keep only the last of a repeated header).
    sent: dict[str, list[str]] = {}
    for key, text in pairs:
        sent.setdefault(key, []).append(text)
    denial = call.role.check_action(sent)
    if denial is not None:
        raise Forbidden(denial)
    if call.role.own_extensions_only:
        _check_channel_claims(call, sent)
    client = call.pbx.client
    if not (args.callbackAwait or client_action_id is not None):
        await client.write_action(pairs)
        return {"written": True}
    result = await client.send_action(pairs, timeout=call.settings.wait_seconds(args.timeout))
    if result.response.name.lower() == "error":
        message = result.response.get("Message") or "the PBX answered Error"
        if result.output and message.lower() == "command output follows":
            message = result.output.strip().splitlines()[0]  # "No such command '...'"
        raise PbxRejected(message, result.response, result=result, action_id=client_action_id)
    return action_answer(result.response, result, client_action_id)


def _check_channel_claims(call: Call, sent: Mapping[str, list[str]]) -> None:
    """For ``own_extensions_only`` roles: every header of the action that names a
    channel must name one of the user's (``api.roles.channel_claims``)."""
    action = next(values[0] for key, values in sent.items() if key.lower() == "action")
    extensions = call.principal.extensions
    for claim in channel_claims(sent):
        where = f"argument.fields.{claim.header}"
        if claim.live:
            if call.pbx.channels.involves(claim.channel, extensions):
                continue
            problem = "is not in a live call of your extensions"
        else:
            # The dial string of the channel an Originate creates: the user's own device.
            extension = device_extension(claim.channel) or ""
            if call.role.check_extension(extension, extensions) is None:
                continue
            problem = "is not the device of one of your extensions"
        raise Forbidden(
            f"{where}: channel {claim.channel[:80]!r} {problem}, so {action} is refused "
            f"(role {call.role.name!r})"
        )


# --- dial ---------------------------------------------------------------------------


class DialArgs(Arguments):
    """``dial``: click-to-call."""

    from_: str = Field(alias="from", description="local extension the PBX rings first")
    to: str = Field(description="number connected after pick-up")
    timeout: int | None = Field(
        None, ge=1000, le=300_000, description="ms the PBX rings `from` (default 30000)"
    )
    wait: bool = Field(False, description="wait for OriginateResponse and report the outcome")


@method(
    "dial",
    DialArgs,
    summary="Click-to-call: ring `from`, then connect it to `to` (AMI Originate).",
    answer={
        "actionId": "the Originate's ActionID",
        "outcome": "answered|busy|no_answer|hung_up|congestion|failed (with wait)",
        "reason": "the PBX's Reason code (with wait)",
        "uniqueid": "the new channel's Uniqueid (with wait)",
        "callId": "the call it made, as in call events and `calls` (with wait; null if "
        "no call was made or calls are not tracked)",
    },
)
async def dial(call: Call, args: DialArgs) -> dict[str, Any]:
    """Originate a call from an extension to a number."""
    rules = call.settings.phone
    from_ = rules.normalise(args.from_, argument="from")
    to = rules.normalise(args.to, argument="to")
    _check_owned_extension(call, from_)
    ring_ms = args.timeout or call.settings.dial_timeout_ms
    live = call.pbx.calls
    sent = live.now() if live is not None else None

    def accepted(action_id: str, channel: str) -> None:
        # Before the outcome is awaited: the tracker then marks the call it makes
        # (originated, actionId) however soon its channels appear, and no call of
        # that phone that started before the action was written (another instance's).
        if live is not None:
            live.expect_originate(action_id, channel, to, sent=sent)

    result = await originate_call(
        call.pbx.client,
        call.settings.dial,
        from_=from_,
        to=to,
        timeout_ms=ring_ms,
        wait=args.wait,
        wait_timeout=min(ring_ms / 1000 + 30, call.settings.max_wait_ms / 1000),
        action_timeout=call.settings.wait_seconds(None),
        on_accepted=accepted,
    )
    answer: dict[str, Any] = {"actionId": result.action_id, "from": from_, "to": to}
    if args.wait:
        answer["outcome"] = result.outcome.value if result.outcome is not None else None
        answer["reason"] = result.reason
        answer["uniqueid"] = result.uniqueid
        # The tracker read the result event in the AMI reader before this resumed.
        answer["callId"] = live.call_id_for_action(result.action_id) if live else None
    return answer


def _check_owned_extension(call: Call, extension: str) -> None:
    denial = call.role.check_extension(extension, call.principal.extensions)
    if denial is not None:
        raise Forbidden(f"argument.from: {denial}")


# --- redirect -----------------------------------------------------------------------


class RedirectArgs(Arguments):
    """``redirect``: transfer a live call."""

    channel: NonEmpty = Field(description="the channel to move, e.g. YSGSM/11-1")
    toTel: str = Field(description="where to send it")  # noqa: N815
    extraChannel: NonEmpty | None = Field(None, description="also move this (bridged) channel")  # noqa: N815


@method(
    "redirect",
    RedirectArgs,
    summary="Transfer a live call: AMI Redirect of `channel` to `toTel`.",
    answer={"event": "the PBX's response", "channel": "the channel", "toTel": "normalised"},
)
async def redirect(call: Call, args: RedirectArgs) -> dict[str, Any]:
    """Redirect a channel (and optionally its peer) to another number."""
    to_tel = call.settings.phone.normalise(args.toTel, argument="toTel")
    _check_owned_channel(call, args.channel, "channel")
    if args.extraChannel is not None:
        _check_owned_channel(call, args.extraChannel, "extraChannel")
    response = await redirect_call(
        call.pbx.client,
        args.channel,
        to_tel,
        context=call.settings.redirect_context,
        extra_channel=args.extraChannel,
        timeout=call.settings.wait_seconds(None),
    )
    return {"event": pbx_message(response, None), "channel": args.channel, "toTel": to_tel}


def _check_owned_channel(call: Call, channel: str, argument: str) -> None:
    """For ``own_extensions_only`` roles: the channel must be in a call of the user's own
    extensions, as learnt from the PBX's events (``pbx.channels``); unknown = refused."""
    if not call.role.own_extensions_only:
        return
    if not call.pbx.channels.involves(channel, call.principal.extensions):
        raise Forbidden(
            f"argument.{argument}: channel {channel[:80]!r} is not in a live call "
            f"of your extensions (role {call.role.name!r})"
        )


# --- gsmSendSMS, smsStatus, smsHistory ------------------------------------------------


_KEY_CHARS = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


class SmsArgs(Arguments):
    """``gsmSendSMS``: an SMS through the PBX's GSM module, stored first."""

    tel: str = Field(description="recipient number")
    msg: NonEmpty = Field(description="message text (not empty after trimming)")
    key: str | None = Field(
        None,
        description="your idempotency key (at most 64 characters): the same key within "
        "24 h returns the first SMS instead of sending another",
    )
    wait: bool = Field(False, description="wait (at most `timeout`) for sent, failed or unknown")
    timeout: int | None = Field(None, ge=1, description="ms to wait with `wait`")

    @field_validator("msg")
    @classmethod
    def _bounded(cls, msg: str) -> str:
        if len(msg) > 1000:
            raise ValueError("must be at most 1000 characters")
        return msg

    @field_validator("key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        if key is not None and not _KEY_CHARS.fullmatch(key):
            raise ValueError("must be 1 to 64 characters without control characters")
        return key


@method(
    "gsmSendSMS",
    SmsArgs,
    summary="Store an SMS and send it through the PBX's GSM module (durable outbox, paced "
    "per span, retried, never sent twice); with wait, wait for its outcome.",
    answer={
        "smsId": "the SMS's id (smsStatus, smsHistory, sms.status events)",
        "status": "queued (or, with wait, sent | failed | unknown, or its status then)",
        "tel": "the normalised number",
        "span": "the GSM span or dongle device, when known",
        "backend": "yeastar | yeastar-tg | dongle",
        "duplicate": "true when `key` was used within 24 h: this is the first SMS",
        "...": "the other fields of the SMS record (docs/sms.md)",
    },
)
async def gsm_send_sms(call: Call, args: SmsArgs) -> dict[str, Any]:
    """Store the SMS in the outbox (it is sent from there); optionally wait for it."""
    tel = call.settings.phone.normalise(args.tel, argument="tel")
    office = call.sms
    row, created = await office.outbox.enqueue(
        call.pbx.name,
        tel,
        args.msg,
        login=call.principal.login,
        login2=call.principal.login2,
        key=args.key,
    )
    if args.wait:
        row = (
            await office.outbox.wait_final(row.sms_id, call.settings.wait_seconds(args.timeout))
            or row
        )
    return {**sms_json(row), "duplicate": not created}


class SmsStatusArgs(Arguments):
    """``smsStatus``: one SMS by its id."""

    smsId: str = Field(description="the id gsmSendSMS answered (or an sms.* event carried)")  # noqa: N815

    @field_validator("smsId")
    @classmethod
    def _sms_id(cls, value: str) -> str:
        folded = value.strip().lower()
        if not SMS_ID.fullmatch(folded):
            raise ValueError(
                "must be an SMS id as gsmSendSMS answered it (32 hexadecimal digits), "
                f"got {value[:40]!r}"
            )
        return folded


@method(
    "smsStatus",
    SmsStatusArgs,
    needs_pbx=False,
    summary="One SMS (outgoing or incoming) by its smsId: its record, status included.",
    answer={"...": "the SMS record (docs/sms.md)"},
)
async def sms_status(call: Call, args: SmsStatusArgs) -> dict[str, Any]:
    """Read one SMS the caller may see."""
    row = await call.sms.store.get(args.smsId)
    if row is None or not row_visible(call.role, call.principal, row):
        raise NotFound(f"argument.smsId: no SMS {args.smsId} (or not one you may see)")
    return sms_json(row)


SmsStatusName = Literal["queued", "sending", "sent", "failed", "unknown", "received"]
_HISTORY_LIMIT = 1000
_NAME_CHARS = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_PHONE_START = re.compile(r"\s*[+(\d]")


class SmsHistoryArgs(Arguments):
    """``smsHistory``: stored SMS, newest first, a page at a time."""

    direction: Literal["in", "out"] | None = Field(None, description="in | out")
    number: str | None = Field(None, description="the recipient or the sender")
    status: SmsStatusName | list[SmsStatusName] | None = Field(
        None, description="one status or a list of them"
    )
    since: str | float | None = Field(None, description="ISO 8601 or epoch seconds")
    until: str | float | None = Field(None, description="ISO 8601 or epoch seconds")
    limit: int = Field(100, ge=1, le=_HISTORY_LIMIT, description="at most 1000")
    before: str | None = Field(None, description="`next` of the previous page")

    # A misspelt filter would silently widen the page: refused, naming it.
    UNKNOWN_KEYS_ARE_ERRORS: ClassVar[bool] = True


@method(
    "smsHistory",
    SmsHistoryArgs,
    needs_pbx=False,
    summary="Stored SMS you may see, newest first: filters direction, number, status, "
    "since, until; `limit` (at most 1000) per page, `before` for the next page.",
    answer={"messages": "SMS records, newest first", "next": "`before` of the next page, or null"},
)
async def sms_history(call: Call, args: SmsHistoryArgs) -> dict[str, Any]:
    """A page of the SMS the caller may see."""
    statuses = args.status if isinstance(args.status, list) else [args.status]
    query = SmsHistoryQuery(
        visibility=sms_visibility(call.role, call.principal),
        direction=args.direction,
        number=_number_filter(call, args.number),
        statuses=tuple(status for status in statuses if status is not None),
        since=_time_filter(args.since, "since"),
        until=_time_filter(args.until, "until"),
        before=_cursor(args.before),
        limit=args.limit + 1,
    )
    rows = await call.sms.store.history(query)
    page = rows[: args.limit]
    more = len(rows) > args.limit
    return {
        "messages": [sms_json(row) for row in page],
        "next": _encode_cursor(page[-1]) if more and page else None,
    }


def _number_filter(call: Call, value: str | None) -> str | None:
    """A phone number (what starts with ``+``, ``(`` or a digit) is normalised like every
    number; a sender's name (``MTS``, ``Tele2``) is matched as it is."""
    if value is None:
        return None
    if _PHONE_START.match(value):
        return call.settings.phone.normalise(value, argument="number")
    if not _NAME_CHARS.fullmatch(value):
        raise BadRequest("argument.number must be a phone number or a sender's name")
    return value.strip()


def _time_filter(value: str | float | None, argument: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value, argument=argument)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _encode_cursor(row: SmsRow) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at!r}:{row.row_id}".encode()).decode()


def _cursor(value: str | None) -> tuple[float, int] | None:
    if value is None:
        return None
    problem = "argument.before must be the `next` value of an earlier smsHistory answer"
    try:
        text = base64.urlsafe_b64decode(value.encode("ascii")).decode("ascii")
        at, _, row_id = text.partition(":")
        cursor = (float(at), int(row_id))
    except (ValueError, UnicodeError, binascii.Error):
        raise BadRequest(problem) from None
    if not math.isfinite(cursor[0]):
        raise BadRequest(problem)
    return cursor


# --- events -------------------------------------------------------------------------


class SubscribeArgs(Arguments):
    """``onEvent`` / ``onceEvent``: subscribe this WebSocket to PBX events."""

    name: str | None = Field(
        None, max_length=200, description="event name, case-insensitive; empty or * = all"
    )
    event: dict[str, Any] | None = Field(
        None, description="{name, Field: value|[values]|'wild*'} filters"
    )
    since: str | None = Field(
        None,
        description="the eventId of the last event you received: first get the buffered "
        "events after it that match (`events`), then live ones",
    )

    @field_validator("since")
    @classmethod
    def _event_id(cls, since: str | None) -> str | None:
        if since is not None:
            try:
                parse_event_id(since)
            except EventIdError as exc:
                raise ValueError(str(exc)) from None
        return since


def _subscribe(call: Call, args: SubscribeArgs, *, once: bool) -> dict[str, Any]:
    subscriber = call.subscriber
    name = args.name
    fields: dict[str, Any] = {}
    if args.event is not None:
        fields = {k: v for k, v in args.event.items() if k.lower() != "name"}
        names = [v for k, v in args.event.items() if k.lower() == "name"]
        if names:
            if not isinstance(names[0], str):
                raise BadRequest("argument.event.name must be a string")
            name = names[0]
    flt = EventFilter.from_spec(name, fields)
    bus = call.api.bus
    # From here to the return nothing awaits: the replay, the subscription, the active
    # calls and this answer (queued by the transport as soon as it is returned) happen
    # with no event published in between, so every later event comes after the answer.
    answer: dict[str, Any]
    if args.since is None:
        subscription_id = bus.subscribe(subscriber, flt, once=once)
        answer = {
            "subscriptionId": subscription_id,
            "name": name or "*",
            "lastEventId": bus.last_event_id,
        }
    else:
        resumed = bus.subscribe_since(subscriber, flt, parse_event_id(args.since), once=once)
        answer = {
            "subscriptionId": resumed.subscription_id,
            "name": name or "*",
            "lastEventId": resumed.last_event_id,
            "gap": resumed.gap,
            # The very bytes live subscribers were sent, embedded without re-encoding.
            "events": [orjson.Fragment(event.payload()) for event in resumed.events],
        }
    active = active_calls_for_subscription(call, flt)
    if active is not None:
        answer["calls"] = active
    return answer


_SUBSCRIBE_ANSWER = {
    "subscriptionId": "id for rmEvent",
    "lastEventId": "the newest eventId when the subscription started: pass it as `since` "
    "after a reconnect if no event came meanwhile",
    "gap": "with `since`: true when events after it may be missing (another server run, "
    "or older than the replay buffer)",
    "events": "with `since`: the buffered events after it that match, oldest first",
    "calls": "for a call.* name: the active calls the subscription matches",
}


@method(
    "onEvent",
    SubscribeArgs,
    needs_pbx=False,
    needs_websocket=True,
    summary="Subscribe this WebSocket to PBX events by name and field filters; with "
    "`since`, first get what was missed.",
    answer=_SUBSCRIBE_ANSWER,
)
async def on_event(call: Call, args: SubscribeArgs) -> dict[str, Any]:
    """Subscribe until removed."""
    return _subscribe(call, args, once=False)


@method(
    "onceEvent",
    SubscribeArgs,
    needs_pbx=False,
    needs_websocket=True,
    summary="Like onEvent, but the subscription ends after the first matching event "
    "(with `since`, a buffered one counts).",
    answer=_SUBSCRIBE_ANSWER,
)
async def once_event(call: Call, args: SubscribeArgs) -> dict[str, Any]:
    """Subscribe for one matching event."""
    return _subscribe(call, args, once=True)


class UnsubscribeArgs(Arguments):
    """``rmEvent``: remove subscriptions of this connection."""

    # "" names the any-event subscriptions (onEvent with an empty name), so here it is a
    # value, not "absent".
    EMPTY_IS_A_VALUE: ClassVar[frozenset[str]] = frozenset({"name"})

    name: str | None = Field(None, description="remove every subscription with this name")
    subscriptionId: str | None = Field(None, description="remove this one subscription")  # noqa: N815
    all: bool = Field(False, description="remove every subscription of this connection")


@method(
    "rmEvent",
    UnsubscribeArgs,
    needs_pbx=False,
    needs_websocket=True,
    summary="Remove subscriptions by name, by subscriptionId, or all of them.",
    answer={"removed": "how many subscriptions were removed"},
)
async def rm_event(call: Call, args: UnsubscribeArgs) -> dict[str, Any]:
    """Unsubscribe."""
    subscriber = call.subscriber
    bus = call.api.bus
    if args.all:
        removed = bus.unsubscribe_all(subscriber)
    elif args.subscriptionId is not None:
        removed = bus.unsubscribe(subscriber, args.subscriptionId)
    elif args.name is not None:
        removed = bus.unsubscribe_name(subscriber, args.name)
    else:
        raise BadRequest("argument.name, argument.subscriptionId or argument.all=true is required")
    return {"removed": removed}


class DispatchArgs(Arguments):
    """``dispatchEvent``: an event from a client to subscribers."""

    event: dict[str, Any] = Field(description="an object with a `name`")

    @field_validator("event")
    @classmethod
    def _named(cls, event: dict[str, Any]) -> dict[str, Any]:
        name = event.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("must have a non-empty string `name`")
        return event


@method(
    "dispatchEvent",
    DispatchArgs,
    needs_pbx=False,
    summary="Deliver an event from a client to every matching subscriber, marked "
    "origin=api with the sender's login.",
    answer={"delivered": "how many connections of this server instance received it"},
)
async def dispatch_event(call: Call, args: DispatchArgs) -> dict[str, Any]:
    """Publish a client event on the bus (and, with several instances, on theirs)."""
    event = BusEvent.from_client(
        args.event, login=call.principal.login, login2=call.principal.login2
    )
    relay = call.api.relay
    relayed = None if relay is None else relay.encode(event)  # too large: refused here
    delivered = call.api.bus.publish(event)
    if relay is not None and relayed is not None:
        relay.forward(relayed)
    return {"delivered": delivered}


# --- whoami -------------------------------------------------------------------------


class WhoamiArgs(Arguments):
    """``whoami``: nothing besides the credentials."""


@method(
    "whoami",
    WhoamiArgs,
    needs_pbx=False,
    every_role=True,
    summary="Who you are and what your role allows; proves a login without side effects.",
    answer={
        "login": "your login",
        "login2": "your login2",
        "role": "your role's name",
        "extensions": "your own extensions",
        "methods": "the API methods you may call",
        "actions": "the AMI action patterns `send` may carry (case-folded)",
        "events": "the event rules your subscriptions are filtered by: [{name, fields}]",
        "ownExtensionsOnly": "true when dial, redirect and channels in send are bound to "
        "your extensions",
        "admin": "true for an admin role (everything but the session actions)",
        "smsAll": "true when you see every SMS, in and out",
        "smsSpans": "spans and devices whose incoming SMS you see (* = all)",
    },
)
async def whoami(call: Call, args: WhoamiArgs) -> dict[str, Any]:
    """Describe the caller and their role (open to every role: it shows only their own)."""
    role = call.role
    return {
        "login": call.principal.login,
        "login2": call.principal.login2,
        "role": role.name,
        "extensions": list(call.principal.extensions),
        "methods": sorted(
            name for name, each in METHODS.items() if each.every_role or role.allows_method(name)
        ),
        "actions": list(role.actions),
        "events": [
            {"name": rule.name, "fields": {key: list(values) for key, values in rule.fields}}
            for rule in role.events
        ],
        "ownExtensionsOnly": role.own_extensions_only,
        "ownCallsOnly": role.sees_own_calls_only,
        "admin": role.admin,
        "smsAll": role.sms_all,
        "smsSpans": sorted(role.sms_spans),
    }
