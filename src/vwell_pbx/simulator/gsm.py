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

Incoming SMS (``incoming_sms_events``), in the shape of each backend:

* ``mypbx``: ``Event: ReceivedSMS`` with ``ID``, ``GsmPort`` (the port: span - 1),
  ``Sender``, ``Recvtime``, ``Index``, ``Total``, ``Smsc`` and the URL-encoded
  ``Content``; one event per part, the parts of one SMS sharing the ``ID``.
* ``tg``: the same with ``GsmSpan`` instead of ``GsmPort``, each event ended by a
  ``--END SMS EVENT--`` line before its blank line, as TG gateways write it.
* ``dongle``: chan_dongle's ``DongleNewSMS`` (the text in ``MessageLineN`` headers,
  split at line breaks, empty lines dropped) followed by ``DongleNewSMSBase64`` (the
  base64 of the UTF-8 text); chan_dongle joins long SMS itself, so there is one pair.

``SmsFaults`` makes the next sends fail on purpose: ``busy`` (the span or device cannot
send now; a retry may work), ``error`` (a refusal that will not change), ``no_answer``
(the PBX takes the SMS, sends it, and never answers the action) and
``report_failed`` (the PBX answers, then its delivery report says the SMS failed).
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import quote, unquote

from vwell_pbx.protocol import encode_message

SEND_SMS_USAGE: Final = 'Usage: gsm send sms <span> <destination> "<message>" [id]'
TG_EVENT_END: Final = "--END SMS EVENT--"
"""The line a TG gateway writes at the end of each SMS event."""

SmsShape = Literal["mypbx", "tg", "dongle"]
SmsFault = Literal["busy", "error", "no_answer", "report_failed"]
SMS_FAULTS: Final = ("busy", "error", "no_answer", "report_failed")
MAX_QUEUED_FAULTS: Final = 10_000


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
    """An SMS the simulator was asked to send, with the text as the PBX decoded it.

    ``ok``: the PBX took it (a refused one, span not ready or a fault, is recorded with
    ``ok=False``); ``answered``: the action was answered (``no_answer`` fault: the SMS
    went out but nobody was told); ``at``: when it arrived (the simulator's clock).
    """

    via: Literal["command", "smscommand", "dongle"]
    number: str
    text: str
    span: int | None = None
    device: str | None = None
    sms_id: str | None = None
    ok: bool = True
    answered: bool = True
    at: float = 0.0


@dataclass
class SmsFaults:
    """Faults the next SMS sends meet, one each, in order (see the module docstring)."""

    queued: deque[SmsFault] = field(default_factory=deque)

    def add(self, fault: SmsFault, count: int = 1) -> None:
        """Let the next ``count`` sends fail with ``fault`` (after those already queued)."""
        if fault not in SMS_FAULTS:
            raise ValueError(f"fault must be one of {', '.join(SMS_FAULTS)}, got {fault!r}")
        if count < 0 or len(self.queued) + count > MAX_QUEUED_FAULTS:
            raise ValueError(f"at most {MAX_QUEUED_FAULTS} faults may wait")
        self.queued.extend([fault] * count)

    def take(self) -> SmsFault | None:
        """The fault the send being answered meets, if any."""
        return self.queued.popleft() if self.queued else None

    def clear(self) -> None:
        """Forget the faults still waiting."""
        self.queued.clear()


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


def split_bytes(data: bytes, parts: int) -> list[bytes]:
    """Cut ``data`` into ``parts`` pieces (fewer if it is too short)."""
    parts = max(1, min(parts, max(1, len(data))))
    size = -(-len(data) // parts) if data else 0
    if size == 0:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def _emitted(headers: list[tuple[str, str]], trailer: str | None = None) -> bytes:
    data = encode_message(headers)
    if trailer is None:
        return data
    # encode_message ends with the blank line; the trailer goes right before it.
    return data[:-2] + f"{trailer}\r\n\r\n".encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingSms:
    """One SMS to deliver as the PBX would: who, where, what (text or raw bytes)."""

    sender: str
    text: str | None = None
    """The text (cut into parts between characters, as a GSM module does)."""
    data: bytes = b""
    """Raw bytes instead of ``text`` (cut anywhere): to test undecodable content."""
    span: int = 2
    device: str = "dongle0"
    reference: str = "1"
    received: str = "2024-01-01 00:00:00"
    parts: int = 1
    order: Sequence[int] | None = None
    """Which part goes first, second...: 1-based part numbers (default: in order)."""
    first_index: int = 1
    """The ``Index`` of the first part (1, or 0 as some firmware counts)."""

    def pieces(self) -> list[bytes]:
        """The bytes of each part, in part order."""
        if self.text is not None:
            return [piece.encode() for piece in split_parts(self.text, self.parts)]
        return split_bytes(self.data, self.parts)

    def whole(self) -> bytes:
        """The bytes of the whole SMS."""
        return self.text.encode() if self.text is not None else self.data


def incoming_sms_events(sms: IncomingSms, shape: SmsShape) -> list[bytes]:
    """The AMI events (wire bytes, in emission order) that bring ``sms`` in ``shape``."""
    if shape == "dongle":
        return _dongle_events(sms)
    pieces = sms.pieces()
    order = list(sms.order) if sms.order is not None else list(range(1, len(pieces) + 1))
    if sorted(order) != list(range(1, len(pieces) + 1)):
        raise ValueError(f"order must list the parts 1..{len(pieces)} once each")
    where = ("GsmSpan", str(sms.span)) if shape == "tg" else ("GsmPort", str(sms.span - 1))
    events = []
    for number in order:
        headers = [
            ("Event", "ReceivedSMS"),
            ("Privilege", "all,smscommand"),
            ("ID", sms.reference),
            where,
            ("Sender", sms.sender),
            ("Recvtime", sms.received),
            ("Index", str(number - 1 + sms.first_index)),
            ("Total", str(len(pieces))),
            ("Smsc", "+79000000000"),
            ("Content", quote(pieces[number - 1], safe="")),
        ]
        events.append(_emitted(headers, TG_EVENT_END if shape == "tg" else None))
    return events


def _dongle_events(sms: IncomingSms) -> list[bytes]:
    data = sms.whole()
    text = data.decode("utf-8", "replace")
    lines = [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line]
    plain = [
        ("Event", "DongleNewSMS"),
        ("Privilege", "call,all"),
        ("Device", sms.device),
        ("From", sms.sender),
        ("LineCount", str(len(lines))),
        *((f"MessageLine{index}", line) for index, line in enumerate(lines)),
    ]
    encoded = [
        ("Event", "DongleNewSMSBase64"),
        ("Privilege", "call,all"),
        ("Device", sms.device),
        ("From", sms.sender),
        ("Message", base64.b64encode(data).decode()),
    ]
    # chan_dongle's DongleNewSMS ends with an extra blank line; readers skip it.
    return [encode_message(plain) + b"\r\n", encode_message(encoded)]
