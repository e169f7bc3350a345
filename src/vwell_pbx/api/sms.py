"""SMS as clients see them: the record, the ``sms.*`` events, and who may see which SMS.

**The record** (camelCase, flat, so that ``onEvent`` field filters work on it):

- every SMS: ``smsId``, ``direction`` (``out`` | ``in``), ``status``, ``pbx``,
  ``span`` (the GSM span or chan_dongle device; ``null`` until known), ``text``,
  ``createdAt``, ``updatedAt`` (ISO 8601 UTC, milliseconds), ``detail``;
- outgoing: ``tel``, ``backend``, ``login``, ``login2`` (the sender), ``key``,
  ``attempts``, ``error`` (why it failed, or why its fate is unknown), ``pbxSmsId``
  (the PBX's own id, ``yeastar-tg`` and ``dongle``), ``nextAttemptAt``, ``expiresAt``,
  ``acceptedAt``, ``doneAt``; ``status`` is ``queued``, ``sending``, ``sent``,
  ``failed`` or ``unknown``;
- incoming: ``fromNumber``, ``receivedAt``, ``pbxTime`` (the PBX's own timestamp, as
  sent), ``undecodable`` (the bytes could not all be read as text), ``raw`` (base64 of
  the bytes as received, when undecodable), ``partial`` and ``parts`` (a long SMS and
  whether parts are missing); ``status`` is ``received``.

**Events:** ``sms.status`` (an outgoing SMS changed status: the record plus ``name``)
and ``sms.received`` (an incoming SMS was stored).

**Who sees what** (events, ``smsStatus``, ``smsHistory``): the sender sees their own
outgoing SMS; a role with ``sms_spans`` sees the incoming SMS of those spans (``"*"``:
all); a role with ``sms_all`` (supervisor) or ``admin`` sees every SMS. The raw PBX
events that carry an incoming SMS (``ReceivedSMS``, ``DongleNewSMS``,
``DongleNewSMSBase64``) follow the same span rule, so they cannot be used to read
around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from vwell_pbx.api.auth import Principal
from vwell_pbx.api.roles import Role
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.pbx.sms import INCOMING_EVENTS, SmsOutbox
from vwell_pbx.storage import SmsRow, SmsStore, SmsVisibility

__all__ = [
    "SMS_EVENTS",
    "SMS_ID",
    "SMS_RECEIVED",
    "SMS_STATUS",
    "SmsOffice",
    "iso_time",
    "parse_time",
    "sms_event",
    "sms_json",
    "sms_visible",
    "visibility",
]

SMS_STATUS: Final = "sms.status"
SMS_RECEIVED: Final = "sms.received"
SMS_EVENTS: Final = frozenset({SMS_STATUS, SMS_RECEIVED})
"""The server's SMS events (lower-case names, as ``BusEvent.name_key``)."""

SMS_ID: Final = re.compile(r"[0-9a-f]{32}")
"""What an ``smsId`` looks like (the outbox and inbox make them: ``uuid4().hex``)."""


@dataclass(frozen=True, slots=True)
class SmsOffice:
    """The server's SMS: the outbox that sends them and the store that keeps them all."""

    outbox: SmsOutbox[SmsRow]
    store: SmsStore


def iso_time(epoch: float | None) -> str | None:
    """``1700000001.122`` -> ``"2023-11-14T22:13:21.122Z"`` (UTC, milliseconds)."""
    if epoch is None:
        return None
    millis = round(epoch * 1000)
    seconds, fraction = divmod(millis, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{fraction:03d}Z"


_EPOCH: Final = re.compile(r"\d{1,12}(\.\d{1,6})?")


def parse_time(value: str | int | float, *, argument: str) -> float:
    """Epoch seconds from epoch seconds or an ISO 8601 time (UTC when it has no zone).

    Raises ``ValueError`` naming ``argument`` with the accepted forms.
    """
    expected = f"argument.{argument} must be ISO 8601 (2024-05-01T10:00:00Z) or epoch seconds"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        number = float(value)
    elif _EPOCH.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{expected}, got {value[:40]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        number = moment.timestamp()
    if not math.isfinite(number) or not 0 <= number < 1e11:
        raise ValueError(f"{expected}, got {value!r:.40}")
    return number


def sms_json(row: SmsRow) -> dict[str, Any]:
    """The record of ``row`` as clients see it (module docstring)."""
    record: dict[str, Any] = {
        "smsId": row.sms_id,
        "direction": row.direction,
        "status": row.status,
        "pbx": row.pbx,
        "span": row.span,
        "text": row.text,
        "createdAt": iso_time(row.created_at),
        "updatedAt": iso_time(row.updated_at),
        "detail": row.detail,
    }
    if row.direction == "in":
        record.update(
            fromNumber=row.number,
            receivedAt=iso_time(row.created_at),
            pbxTime=row.pbx_time,
            undecodable=row.undecodable,
            raw=row.raw,
            partial=row.partial,
            parts=row.parts,
        )
        return record
    record.update(
        tel=row.number,
        backend=row.backend,
        login=row.login,
        login2=row.login2,
        key=row.client_key,
        attempts=row.attempts,
        error=row.error,
        pbxSmsId=row.pbx_sms_id,
        nextAttemptAt=iso_time(row.next_attempt_at) if row.status == "queued" else None,
        expiresAt=iso_time(row.expires_at),
        acceptedAt=iso_time(row.accepted_at),
        doneAt=iso_time(row.done_at),
    )
    return record


def sms_event(row: SmsRow) -> BusEvent:
    """``sms.received`` for an incoming SMS, ``sms.status`` for an outgoing one."""
    name = SMS_RECEIVED if row.direction == "in" else SMS_STATUS
    return BusEvent(fields={**sms_json(row), "name": name}, name=name)


def visibility(role: Role, principal: Principal) -> SmsVisibility:
    """What ``principal`` (of ``role``) may read of the stored SMS."""
    return SmsVisibility(
        everything=role.sms_all,
        login=principal.login,
        login2=principal.login2,
        spans=tuple(sorted(role.sms_spans - {"*"})),
        all_spans="*" in role.sms_spans,
    )


def _text(fields: Mapping[str, object], *keys: str) -> str | None:
    for key in keys:
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def raw_event_span(fields: Mapping[str, object]) -> str | None:
    """The span (or device) a raw incoming-SMS event of the PBX is about."""
    span = _text(fields, "GsmSpan", "Device")
    if span is not None:
        return span
    port = _text(fields, "GsmPort")
    return str(int(port) + 1) if port is not None and port.isdigit() else None


def sms_visible(role: Role, principal: Principal, event: BusEvent) -> bool:
    """For an SMS event (the server's or the PBX's raw ones): may ``principal`` see it?"""
    if role.sms_all:
        return True
    fields = event.fields
    if event.name_key in INCOMING_EVENTS:
        return role.sees_sms_of_span(raw_event_span(fields))
    if fields.get("direction") == "in":
        span = fields.get("span")
        return role.sees_sms_of_span(span if isinstance(span, str) else None)
    return fields.get("login") == principal.login and fields.get("login2") == principal.login2


def row_visible(role: Role, principal: Principal, row: SmsRow) -> bool:
    """May ``principal`` read ``row`` (``smsStatus``)?"""
    if role.sms_all:
        return True
    if row.direction == "in":
        return role.sees_sms_of_span(row.span)
    return row.login == principal.login and row.login2 == principal.login2
