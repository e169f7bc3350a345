"""Yeastar GSM spans, their CLI output and the SMS text encodings, without any I/O.

Span number = GSM port number + 1 (a Yeastar convention), so GSM port 1 is span 2.

Texts printed by the simulated CLI (documented here because no capture of a real
Yeastar answer exists in the repository):

* ``gsm show spans``: one line per span, ``GSM span N: Power on, Provisioned, <state>,
  Active,Standard`` where ``<state>`` is ``Up`` (ready), ``Down`` (SIM present, not
  registered) or ``Undetected SIM Card`` (no SIM).
* ``gsm show span N``: ``Key: Value`` lines; ``State: READY`` when the span can send,
  ``State: NOT READY`` otherwise. Unknown span: ``GSM span N does not exist``.
* ``gsm send sms N NUMBER "TEXT"``: no output when queued (MyPBX only confirms that
  the command ran); ``GSM span N is not ready`` / ``GSM span N does not exist`` when it
  cannot be sent; a malformed line prints the usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote, unquote

SEND_SMS_USAGE: Final = 'Usage: gsm send sms <span> <destination> "<message>" [id]'


@dataclass
class SpanState:
    """One GSM span (port) of the simulated gateway; mutable so tests can flip it."""

    number: int
    ready: bool = True
    sim_present: bool = True
    signal: int = 20
    network: str = "Registered (Home network)"

    @property
    def can_send(self) -> bool:
        """True when an SMS or a call can leave through this span."""
        return self.ready and self.sim_present


@dataclass(frozen=True, slots=True, kw_only=True)
class SentSms:
    """An SMS the simulator was asked to send, with the text as the PBX decoded it."""

    via: Literal["command", "smscommand", "dongle"]
    number: str
    text: str
    span: int | None = None
    device: str | None = None
    sms_id: str | None = None
    ok: bool = True


def default_spans() -> list[SpanState]:
    """One ready span, number 2 (GSM port 1)."""
    return [SpanState(number=2)]


def _span_state_word(span: SpanState) -> str:
    if not span.sim_present:
        return "Undetected SIM Card"
    return "Up" if span.ready else "Down"


def show_spans(spans: Sequence[SpanState]) -> list[str]:
    """Output of ``gsm show spans``."""
    return [
        f"GSM span {s.number}: Power on, Provisioned, {_span_state_word(s)}, Active,Standard"
        for s in spans
    ]


def show_span(span: SpanState | None, number: int) -> list[str]:
    """Output of ``gsm show span N``."""
    if span is None:
        return [f"GSM span {number} does not exist"]
    network = span.network if span.sim_present else "Unregistered"
    return [
        f"Status: Power on, Provisioned, {_span_state_word(span)}, Active,Standard",
        "Type: CPE",
        "Manufacturer: Quectel",
        "Model Name: M35",
        f"Model IMEI: 86{span.number:013d}",
        "Revision: M35FAR01A01",
        "Network Name: SIMULATED",
        f"Network Status: {network}",
        f"Signal Quality (0,31): {span.signal if span.sim_present else 0}",
        f"SIM IMSI: {'25001' + format(span.number, '010d') if span.sim_present else ''}",
        "SIM SMS Center Number: +79000000000",
        f"State: {'READY' if span.can_send else 'NOT READY'}",
    ]


def split_cli_args(line: str) -> list[str]:
    """Split a CLI line the way Asterisk's ``parse_args`` does.

    Whitespace separates words, ``"`` toggles quoting and ``\\`` makes the next
    character literal (so ``\\"`` is a quote inside a quoted text).
    """
    args: list[str] = []
    current: list[str] = []
    in_word = False
    quoted = False
    escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
            in_word = True
        elif char == "\\":
            escaped = True
            in_word = True
        elif char == '"':
            quoted = not quoted
            in_word = True
        elif char.isspace() and not quoted:
            if in_word:
                args.append("".join(current))
                current = []
                in_word = False
        else:
            current.append(char)
            in_word = True
    if in_word:
        args.append("".join(current))
    return args


@dataclass(frozen=True, slots=True)
class SendSmsCommand:
    """A parsed ``gsm send sms SPAN NUMBER TEXT [ID]`` line (text still as written)."""

    span: int
    number: str
    text: str
    sms_id: str | None


def parse_send_sms(line: str) -> SendSmsCommand | None:
    """Parse ``gsm send sms ...``; ``None`` if the line does not have that shape."""
    args = split_cli_args(line)
    if len(args) not in (6, 7) or [a.lower() for a in args[:3]] != ["gsm", "send", "sms"]:
        return None
    try:
        span = int(args[3])
    except ValueError:
        return None
    return SendSmsCommand(
        span=span, number=args[4], text=args[5], sms_id=args[6] if len(args) == 7 else None
    )


def url_encode(text: str) -> str:
    """Percent-encoding of UTF-8, as TG gateways put SMS text on the AMI wire."""
    return quote(text, safe="")


def url_decode(text: str) -> str:
    """Inverse of :func:`url_encode` (``+`` stays a plus sign)."""
    return unquote(text)


def split_parts(text: str, parts: int) -> list[str]:
    """Cut ``text`` into ``parts`` non-empty pieces (fewer if the text is too short)."""
    parts = max(1, min(parts, max(1, len(text))))
    size = -(-len(text) // parts) if text else 0
    if size == 0:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]
