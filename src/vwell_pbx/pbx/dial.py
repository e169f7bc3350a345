"""Click-to-call: an ``Originate`` built from configurable templates (the ``dial`` method).

The PBX first rings ``from`` (a local extension); when it is picked up, the PBX dials
``to``. The defaults reproduce the original on a Yeastar PBX::

    Action: Originate
    Channel: SIP/{from}
    Context: DLPN_DialPlan{from}
    Exten: {to}
    Priority: 1
    Async: yes
    CallerID: {to}
    Timeout: <ms>

Templates know two placeholders, ``{from}`` and ``{to}``; ``{{`` and ``}}`` are literal
braces. Unlike ``str.format`` they allow no attribute or index access. The values put
in are normalised numbers (``\\+?[0-9*#]+``, see ``numbers``), so a client cannot
inject anything through them; ``build_originate`` checks that again.

With ``wait`` the call waits for the event that carries the same ActionID and says what
became of the call, and reports its ``Reason`` as an ``OriginateOutcome``: Asterisk 1.6
and later (Yeastar's 1.8-based firmware included) send ``OriginateResponse``
(``Response: Success|Failure``), Asterisk 1.4 sent ``OriginateSuccess`` or
``OriginateFailure``; all three are accepted (``ORIGINATE_RESULT_EVENTS``). ``Reason``
and ``Uniqueid`` are read as they come; a ``Uniqueid`` of ``<unknown>`` (1.6+) or
``<null>`` (1.4) means no channel was made. When ``Reason`` is missing or not a number,
1.4's event name still tells success from failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Final

from vwell_pbx.ami.answers import ORIGINATE_RESULT_EVENTS
from vwell_pbx.pbx.errors import InvalidArgument, raise_for_response
from vwell_pbx.pbx.numbers import check_normalised
from vwell_pbx.protocol import Message

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

MAX_DIAL_TIMEOUT_MS: Final = 10 * 60 * 1000
"""Longest ring time accepted for ``from`` (ten minutes)."""

_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAMES: Final = frozenset({"from", "to"})


def _check_template(where: str, template: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``template`` has an unknown placeholder."""
    for match in _PLACEHOLDER.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None or match.group(1) not in _NAMES:
            raise ValueError(
                f"{where}: {token!r} is not a placeholder; use {{from}} or {{to}} "
                "(and {{{{ or }}}} for a literal brace)"
            )


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{from}``/``{to}`` in a template already checked by ``DialTemplates``."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return _PLACEHOLDER.sub(substitute, template)


@dataclass(frozen=True, slots=True)
class DialTemplates:
    """Templates of the ``Originate`` fields; ``variables`` become ``Variable: k=v``.

    Construction raises ``ValueError`` naming the field (``dial.channel``) when a
    template uses a placeholder other than ``{from}`` / ``{to}``.
    """

    channel: str = "SIP/{from}"
    context: str = "DLPN_DialPlan{from}"
    exten: str = "{to}"
    priority: str = "1"
    callerid: str = "{to}"
    variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("channel", "context", "exten", "priority", "callerid"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"dial.{name} must be a string")
            _check_template(f"dial.{name}", value)
        for name in ("channel", "exten", "priority"):
            if not getattr(self, name):
                raise ValueError(f"dial.{name} must not be empty")
        for key, value in self.variables.items():
            if not key or "=" in key:
                raise ValueError(f"dial.variables: {key!r} is not a variable name")
            _check_template(f"dial.variables.{key}", value)


class OriginateOutcome(Enum):
    """What became of an originated call, from the ``Reason`` of its result event."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    HUNG_UP = "hung_up"
    CONGESTION = "congestion"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def from_reason(cls, reason: int | None) -> OriginateOutcome:
        """Map Asterisk's ``Reason`` code (``AST_CONTROL_*``) to an outcome."""
        return _REASONS.get(reason, cls.UNKNOWN) if reason is not None else cls.UNKNOWN


_REASONS: Final = {
    4: OriginateOutcome.ANSWERED,
    5: OriginateOutcome.BUSY,
    3: OriginateOutcome.NO_ANSWER,
    1: OriginateOutcome.HUNG_UP,
    8: OriginateOutcome.CONGESTION,
    0: OriginateOutcome.FAILED,
}


@dataclass(frozen=True, slots=True)
class DialResult:
    """What ``dial`` learnt: the queued answer and, when waited for, the outcome.

    ``outcome``, ``reason``, ``uniqueid`` and ``event`` are ``None`` without ``wait``;
    ``uniqueid`` is also ``None`` when Asterisk reports ``<unknown>`` (a failed call).
    """

    action_id: str
    queued: Message
    outcome: OriginateOutcome | None
    reason: int | None
    uniqueid: str | None
    event: Message | None


def build_originate(
    templates: DialTemplates, from_: str, to: str, timeout_ms: int
) -> list[tuple[str, str]]:
    """The ``Originate`` action's fields (without ActionID, which the client adds).

    ``from_`` and ``to`` must be normalised numbers and ``timeout_ms`` a ring time in
    1..``MAX_DIAL_TIMEOUT_MS``; ``InvalidArgument`` otherwise.
    """
    check_normalised(from_, argument="from")
    check_normalised(to, argument="to")
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
        raise InvalidArgument("timeout", "must be a whole number of milliseconds")
    if not 0 < timeout_ms <= MAX_DIAL_TIMEOUT_MS:
        raise InvalidArgument(
            "timeout", f"must be between 1 and {MAX_DIAL_TIMEOUT_MS} ms, got {timeout_ms}"
        )
    values = {"from": from_, "to": to}
    fields = [
        ("Action", "Originate"),
        ("Channel", render(templates.channel, values)),
        ("Context", render(templates.context, values)),
        ("Exten", render(templates.exten, values)),
        ("Priority", render(templates.priority, values)),
        ("Async", "yes"),
        ("CallerID", render(templates.callerid, values)),
        ("Timeout", str(timeout_ms)),
    ]
    fields.extend(
        ("Variable", f"{key}={render(value, values)}") for key, value in templates.variables.items()
    )
    return fields


def _reason(event: Message) -> int | None:
    raw = (event.get("Reason") or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() else None


# Asterisk 1.4's result events say the verdict in their name; used when Reason is absent.
_BY_NAME: Final = {
    "originatesuccess": OriginateOutcome.ANSWERED,
    "originatefailure": OriginateOutcome.FAILED,
}
_NO_CHANNEL: Final = frozenset({"", "<unknown>", "<null>"})


def outcome_of(event: Message) -> tuple[OriginateOutcome, int | None, str | None]:
    """``(outcome, reason, uniqueid)`` from an ``OriginateResponse``, ``OriginateSuccess``
    or ``OriginateFailure`` event (see the module docstring)."""
    reason = _reason(event)
    uniqueid = event.get("Uniqueid")
    if uniqueid is None or uniqueid.strip() in _NO_CHANNEL:
        uniqueid = None
    if reason is None:
        outcome = _BY_NAME.get(event.name.lower(), OriginateOutcome.UNKNOWN)
    else:
        outcome = OriginateOutcome.from_reason(reason)
    return outcome, reason, uniqueid


async def dial(
    client: AmiClient,
    templates: DialTemplates,
    *,
    from_: str,
    to: str,
    timeout_ms: int,
    wait: bool,
    wait_timeout: float,
    action_timeout: float,
    on_accepted: Callable[[str, str], None] | None = None,
) -> DialResult:
    """Originate a call from ``from_`` to ``to``; with ``wait``, report its outcome.

    ``on_accepted(action_id, channel)`` is called as soon as the PBX accepted the
    Originate (before its outcome), with the wire ActionID and the ``Channel`` it
    rings first, so that a call tracker can recognise the call it makes.

    Raises ``InvalidArgument`` for bad numbers or timeout, ``PbxRejected`` when the PBX
    answers ``Response: Error`` (``Extension does not exist.``), and the AMI client's
    errors unchanged: ``PbxUnavailable``, and ``ActionTimeout`` when the answer (or,
    with ``wait``, the result event within ``wait_timeout`` seconds) is late.
    """
    fields = build_originate(templates, from_, to, timeout_ms)
    result = await client.send_action(
        fields,
        timeout=action_timeout,
        followup=ORIGINATE_RESULT_EVENTS if wait else None,
        followup_timeout=wait_timeout if wait else None,
    )
    # The client starts no followup for an error answer, so nothing is left waiting.
    raise_for_response(result.response, unsupported="this PBX has no Originate action")
    if on_accepted is not None:
        channel = next(value for key, value in fields if key == "Channel")
        on_accepted(result.action_id, channel)
    if not wait or result.followup is None:
        return DialResult(result.action_id, result.response, None, None, None, None)
    event = await result.followup
    outcome, reason, uniqueid = outcome_of(event)
    return DialResult(result.action_id, result.response, outcome, reason, uniqueid, event)
