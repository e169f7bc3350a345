"""Incoming SMS: the backends' events decoded, multipart texts joined, stored, announced.

The events, as the PBXs send them::

    Event: ReceivedSMS            (Yeastar MyPBX and TG gateways)
    ID: 17                        reference shared by the parts of one long SMS
    GsmSpan: 2  |  GsmPort: 1     the span; or the GSM port, which is span - 1
    Sender: +79787342741
    Recvtime: 2024-05-01 10:00:00
    Index: 1                      this part (counted from 1, or from 0 on some firmware)
    Total: 2                      parts in all
    Smsc: +79000000000
    Content: %D0%9F%D1%80...      the text, URL-encoded UTF-8 (TG adds a trailing
                                  ``--END SMS EVENT--`` line, which is ignored)

    Event: DongleNewSMS           (chan_dongle; one event per SMS, long ones joined by
    Device: dongle0                chan_dongle itself)
    From: +79787342741
    LineCount: 2
    MessageLine0: first line      the text, split at line breaks (empty lines dropped)
    MessageLine1: second line

    Event: DongleNewSMSBase64     (chan_dongle, right after DongleNewSMS, the same SMS)
    Device: dongle0
    From: +79787342741
    Message: 0J/RgNC40LLQtdGC      base64 of the UTF-8 text, line breaks included

Decoding rules (``decode_content``, ``decode_base64``, ``SmsAssembler``):

1. ``Content`` is URL-encoded when it contains a ``%XX`` escape and no blank; ``+`` is
   then a space too (form encoding). Without an escape it is taken as it is (a ``+``
   stays a plus: ``+79...`` in a plain text).
2. chan_dongle sends each SMS twice: the base64 event is the exact one and wins; a
   ``DongleNewSMS`` is kept only if no ``DongleNewSMSBase64`` for the same device and
   sender follows within ``pair_seconds``.
3. Parts of a ``ReceivedSMS`` with ``Total`` > 1 are joined by (PBX, span, sender,
   ``ID``) in ``Index`` order, whatever order they arrive in, as bytes before decoding
   (a character cut between two parts survives). At most ``max_pending`` SMS wait for
   parts; one more flushes the oldest. A text whose parts do not all arrive within
   ``part_seconds`` is stored as it is, ``partial``, with the missing part numbers.
4. A text that is UCS-2 written as hex digits (``041F04400438...``), as some modules
   deliver it, is decoded: the whole text is groups of four hex digits (at least two),
   it has a decimal digit, every character it decodes to is printable, and a text of
   decimal digits only must have at least 12 and decode to characters below U+0500
   (so that numeric codes such as ``12345678`` stay numbers).
5. A leading byte order mark is dropped.
6. Nothing is lost: text that is not valid UTF-8 after URL- or base64-decoding, or a
   base64 that is not base64, is stored with ``undecodable`` set and the bytes as
   received (``raw``); the text shows U+FFFD where bytes could not be read. Bytes
   that were not UTF-8 on the AMI wire itself were already replaced by U+FFFD by the
   AMI reader: those texts are flagged too, without ``raw``.

``SmsAssembler`` does all of this without I/O (``now`` is an argument). ``SmsInbox``
wires it to the AMI clients, stores each SMS through an ``InboxStore`` from a bounded
queue (``queue_size``; past it the SMS is written to the log in full, at ERROR, and
counted in ``dropped``) and calls ``on_received`` with the stored record.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar
from urllib.parse import unquote_to_bytes

from vwell_pbx.errors import VwellError
from vwell_pbx.futures import cancel_and_wait
from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.numbers import PhoneRules
from vwell_pbx.protocol import Message

__all__ = [
    "INCOMING_EVENTS",
    "Fragment",
    "InboxSettings",
    "InboxStore",
    "IncomingSms",
    "SmsAssembler",
    "SmsInbox",
    "decode_base64",
    "decode_content",
    "sender_number",
    "ucs2_hex_text",
]

log = logging.getLogger(__name__)

INCOMING_EVENTS: Final = frozenset({"receivedsms", "donglenewsms", "donglenewsmsbase64"})
"""The events that carry an incoming SMS (lower-cased names)."""

MAX_PARTS: Final = 255
"""The most parts a concatenated SMS can have (its header counts them in one byte)."""

_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_HEX4: Final = re.compile(r"(?:[0-9A-Fa-f]{4}){2,}")
_LINE_KEY: Final = re.compile(r"messageline(\d{1,4})", re.IGNORECASE)
_SENDER_LIMIT: Final = 64


@dataclass(frozen=True, slots=True)
class Fragment:
    """The bytes of (a part of) an SMS text, before it is decoded as UTF-8.

    ``broken``: the transport encoding itself was malformed (not base64), so ``data``
    is the text as received. ``lossy``: the AMI reader had already replaced bytes that
    were not UTF-8.
    """

    data: bytes
    broken: bool = False
    lossy: bool = False


def decode_content(value: str) -> Fragment:
    """A ``ReceivedSMS`` ``Content`` (or a plain text) as bytes (rule 1)."""
    lossy = "\ufffd" in value
    if _ESCAPE.search(value) and not any(char.isspace() for char in value):
        return Fragment(unquote_to_bytes(value.replace("+", " ")), lossy=lossy)
    return Fragment(value.encode("utf-8"), lossy=lossy)


def decode_base64(value: str) -> Fragment:
    """A ``DongleNewSMSBase64`` ``Message`` as bytes; ``broken`` if it is not base64."""
    compact = "".join(value.split())
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return Fragment(value.encode("utf-8"), broken=True, lossy="\ufffd" in value)
    return Fragment(data)


def ucs2_hex_text(text: str) -> str | None:
    """``text`` decoded if it is UCS-2 written as hex (rule 4), else ``None``."""
    if not _HEX4.fullmatch(text) or not any(char.isdigit() for char in text):
        return None
    units = [int(text[i : i + 4], 16) for i in range(0, len(text), 4)]
    if text.isdigit() and (len(text) < 12 or max(units) >= 0x500):
        return None
    if any(0xD800 <= unit <= 0xDFFF for unit in units):
        return None
    decoded = "".join(chr(unit) for unit in units)
    for char in decoded:
        category = unicodedata.category(char)
        if category in ("Cs", "Co", "Cn") or (category == "Cc" and char not in "\r\n\t"):
            return None
    return decoded


@dataclass(frozen=True, slots=True)
class _Decoded:
    text: str
    raw: bytes | None
    undecodable: bool


def _decode(fragments: list[Fragment]) -> _Decoded:
    """Join ``fragments`` and decode them (rules 4-6)."""
    data = b"".join(fragment.data for fragment in fragments)
    broken = any(fragment.broken for fragment in fragments)
    lossy = any(fragment.lossy for fragment in fragments)
    try:
        text = data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        valid = False
    text = text.removeprefix("\ufeff")
    if valid and not broken:
        text = ucs2_hex_text(text) or text
    undecodable = broken or lossy or not valid
    return _Decoded(text, data if (broken or not valid) else None, undecodable)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingSms:
    """One incoming SMS, whole (or as much of it as arrived)."""

    pbx: str
    span: str | None
    """The GSM span (``ReceivedSMS``) or the chan_dongle device."""
    sender: str
    """The sender as the PBX gave it (a number, or a name such as ``MTS``)."""
    text: str
    pbx_time: str | None
    """When the PBX says it arrived (``Recvtime``, as sent), if it says."""
    raw: bytes | None
    undecodable: bool
    partial: bool = False
    parts: int = 1
    missing: tuple[int, ...] = ()
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class InboxSettings:
    """Bounds and timings of the inbox (``[sms]`` in the configuration)."""

    part_seconds: float = 120.0
    """How long the parts of one long SMS are waited for."""
    max_pending: int = 256
    """Long SMS waiting for parts at most; one more flushes the oldest."""
    pair_seconds: float = 2.0
    """How long a ``DongleNewSMS`` waits for its ``DongleNewSMSBase64`` twin."""
    queue_size: int = 1000
    """Decoded SMS waiting to be stored at most (while the database is slow or down)."""
    dedupe_seconds: float = 60.0
    """Window in which another instance's copy of the same event is a duplicate."""
    stop_seconds: float = 5.0
    """On shutdown, how long storing what is queued may take."""


@dataclass(eq=False)
class _Pending:
    """A long SMS waiting for its parts."""

    pbx: str
    span: str | None
    sender: str
    reference: str
    total: int
    pbx_time: str | None
    since: float
    parts: dict[int, Fragment] = field(default_factory=dict)

    def base(self) -> int:
        return 0 if 0 in self.parts else 1

    def complete(self) -> bool:
        base = self.base()
        return all(index in self.parts for index in range(base, base + self.total))

    def build(self) -> IncomingSms:
        base = self.base()
        wanted = range(base, base + self.total)
        missing = tuple(index for index in wanted if index not in self.parts)
        decoded = _decode([self.parts[index] for index in sorted(self.parts)])
        return IncomingSms(
            pbx=self.pbx,
            span=self.span,
            sender=self.sender,
            text=decoded.text,
            pbx_time=self.pbx_time,
            raw=decoded.raw,
            undecodable=decoded.undecodable,
            partial=bool(missing),
            parts=self.total,
            missing=missing,
            dedupe_key=json.dumps(
                [
                    "ReceivedSMS",
                    self.pbx,
                    self.span,
                    self.sender,
                    self.reference,
                    self.pbx_time,
                    self.total,
                ]
            ),
        )


@dataclass(eq=False)
class _Plain:
    """A ``DongleNewSMS`` waiting (``pair_seconds``) for its base64 twin."""

    sms: IncomingSms
    until: float


def _number(value: str | None, default: int) -> int:
    text = (value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 6 else default


def _dongle_key(pbx: str, device: str, sender: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]
    return json.dumps(["DongleNewSMS", pbx, device, sender, digest])


def _same_text(one: str, other: str) -> bool:
    """chan_dongle's two events of one SMS: equal but for line breaks and blank lines."""
    return "".join(one.split()) == "".join(other.split())


class SmsAssembler:
    """Turns incoming-SMS events into whole ``IncomingSms`` (module docstring), no I/O.

    ``feed`` returns what an event completes; ``expire`` what waited long enough;
    ``flush`` everything still held (at shutdown).
    """

    def __init__(self, settings: InboxSettings | None = None) -> None:
        self.settings = settings or InboxSettings()
        self._pending: OrderedDict[tuple[str, str | None, str, str], _Pending] = OrderedDict()
        self._plain: dict[tuple[str, str, str], _Plain] = {}
        # Base64 events that came before their plain twin: (text, until), to drop it.
        self._seen_base64: dict[tuple[str, str, str], tuple[str, float]] = {}

    @property
    def waiting(self) -> int:
        """Long SMS waiting for parts, plus dongle events waiting for their twin."""
        return len(self._pending) + len(self._plain)

    def feed(self, pbx: str, message: Message, now: float) -> list[IncomingSms]:
        """The SMS that ``message`` completes (none for other events)."""
        name = message.name.lower()
        if name == "receivedsms":
            return self._received(pbx, message, now)
        if name == "donglenewsmsbase64":
            return self._dongle_base64(pbx, message, now)
        if name == "donglenewsms":
            return self._dongle_plain(pbx, message, now)
        return []

    def expire(self, now: float) -> list[IncomingSms]:
        """What waited its time: partial long SMS, dongle events without a twin."""
        done: list[IncomingSms] = []
        limit = self.settings.part_seconds
        for pending_key in [k for k, p in self._pending.items() if now - p.since >= limit]:
            done.append(self._pending.pop(pending_key).build())
        for plain_key in [k for k, p in self._plain.items() if now >= p.until]:
            done.append(self._plain.pop(plain_key).sms)
        for seen_key in [k for k, (_, until) in self._seen_base64.items() if now >= until]:
            del self._seen_base64[seen_key]
        return done

    def flush(self) -> list[IncomingSms]:
        """Everything still held, as it is."""
        done = [pending.build() for pending in self._pending.values()]
        done += [plain.sms for plain in self._plain.values()]
        self._pending.clear()
        self._plain.clear()
        self._seen_base64.clear()
        return done

    def _received(self, pbx: str, message: Message, now: float) -> list[IncomingSms]:
        span = (message.get("GsmSpan") or "").strip() or None
        port = (message.get("GsmPort") or "").strip()
        if span is None and port.isdigit():
            span = str(int(port) + 1)
        sender = (message.get("Sender") or "").strip()
        reference = (message.get("ID") or "").strip()
        pbx_time = (message.get("Recvtime") or "").strip() or None
        total = min(_number(message.get("Total"), 1), MAX_PARTS)
        index = _number(message.get("Index"), 1)
        fragment = decode_content(message.get("Content") or "")
        if total <= 1 or not reference or index > total:
            pending = _Pending(pbx, span, sender, reference, 1, pbx_time, now, {1: fragment})
            if not reference:  # nothing to tell two such SMS apart but the text
                digest = hashlib.sha256(fragment.data).hexdigest()[:32]
                pending.reference = f"text:{digest}"
            return [pending.build()]
        key = (pbx, span, sender, reference)
        held = self._pending.get(key)
        if held is None:
            held = self._pending[key] = _Pending(pbx, span, sender, reference, total, pbx_time, now)
        held.parts[index] = fragment
        if held.complete():
            del self._pending[key]
            return [held.build()]
        done = []
        while len(self._pending) > self.settings.max_pending:
            _, oldest = self._pending.popitem(last=False)
            done.append(oldest.build())
        return done

    def _dongle_base64(self, pbx: str, message: Message, now: float) -> list[IncomingSms]:
        device, sender = _dongle_source(message)
        key = (pbx, device, sender)
        decoded = _decode([decode_base64(message.get("Message") or "")])
        plain = self._plain.pop(key, None)
        if plain is None:
            self._seen_base64[key] = (decoded.text, now + self.settings.pair_seconds)
        return [_dongle_sms(pbx, device, sender, decoded)]

    def _dongle_plain(self, pbx: str, message: Message, now: float) -> list[IncomingSms]:
        device, sender = _dongle_source(message)
        key = (pbx, device, sender)
        lines = sorted(
            (int(match.group(1)), value)
            for name, value in message.headers
            if (match := _LINE_KEY.fullmatch(name))
        )
        decoded = _decode([decode_content("\n".join(value for _, value in lines))])
        twin = self._seen_base64.pop(key, None)
        if twin is not None and _same_text(twin[0], decoded.text):
            return []  # its base64 twin came first and was stored
        done = []
        earlier = self._plain.pop(key, None)
        if earlier is not None:  # two SMS from one sender without a twin between them
            done.append(earlier.sms)
        sms = _dongle_sms(pbx, device, sender, decoded)
        self._plain[key] = _Plain(sms, now + self.settings.pair_seconds)
        return done


def _dongle_source(message: Message) -> tuple[str, str]:
    return (message.get("Device") or "").strip(), (message.get("From") or "").strip()


def _dongle_sms(pbx: str, device: str, sender: str, decoded: _Decoded) -> IncomingSms:
    return IncomingSms(
        pbx=pbx,
        span=device or None,
        sender=sender,
        text=decoded.text,
        pbx_time=None,
        raw=decoded.raw,
        undecodable=decoded.undecodable,
        dedupe_key=_dongle_key(pbx, device, sender, decoded.text),
    )


def sender_number(sender: str, rules: PhoneRules) -> str:
    """The sender normalised like every number, or as sent (cut to 64 characters,
    control characters dropped) when it is a name such as ``MTS``."""
    try:
        return rules.normalise(sender, argument="fromNumber")
    except InvalidArgument:
        cleaned = "".join(c for c in sender if unicodedata.category(c)[0] != "C")
        return cleaned[:_SENDER_LIMIT]


R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class InboxStore(Protocol[R_co]):
    """The persistence the inbox needs (``storage.sms.SmsStore.add_incoming``)."""

    async def add_incoming(
        self,
        *,
        sms_id: str,
        pbx: str,
        span: str | None,
        from_number: str,
        text: str,
        pbx_time: str | None,
        raw: str | None,
        undecodable: bool,
        partial: bool,
        parts: int,
        detail: str | None,
        dedupe_key: str,
        owner: str,
        now: float,
        dedupe_since: float,
    ) -> tuple[R_co, bool]:
        """Store one incoming SMS (or find another instance's copy)."""
        ...


class SmsInbox(Generic[R]):
    """Incoming SMS from every PBX, stored and announced (module docstring)."""

    def __init__(
        self,
        store: InboxStore[R],
        settings: InboxSettings | None = None,
        *,
        owner: str,
        rules: PhoneRules | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        on_received: Callable[[R], None] | None = None,
        tick: float = 0.25,
    ) -> None:
        self.store = store
        self.settings = settings or InboxSettings()
        self.owner = owner
        self._rules = rules or PhoneRules()
        self._clock = clock
        self._new_id = new_id
        self._on_received = on_received
        self._tick = tick
        self._assembler = SmsAssembler(self.settings)
        self._queue: asyncio.Queue[IncomingSms] = asyncio.Queue(self.settings.queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        #: SMS that could not even be queued (written to the log instead).
        self.dropped = 0
        #: SMS stored (or found stored by another instance) and announced.
        self.received = 0

    def listener(self, pbx: str) -> Callable[[Message], None]:
        """The AMI event listener for ``pbx`` (never blocks)."""

        def observe(message: Message) -> None:
            if message.name.lower() in INCOMING_EVENTS:
                for sms in self._assembler.feed(pbx, message, self._clock()):
                    self._enqueue(sms)

        return observe

    async def start(self) -> None:
        """Start storing, and the timer that flushes what waited long enough."""
        self._tasks = [
            asyncio.create_task(self._store_loop(), name="sms inbox"),
            asyncio.create_task(self._expire_loop(), name="sms inbox timer"),
        ]

    async def aclose(self) -> None:
        """Store what is held (parts as they are), for at most ``stop_seconds``."""
        store_loop, timer = self._tasks or (None, None)
        if timer is not None:
            await cancel_and_wait([timer])
        for sms in self._assembler.flush():
            self._enqueue(sms)
        if store_loop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.settings.stop_seconds)
            await cancel_and_wait([store_loop])
        while not self._queue.empty():
            self._lost(self._queue.get_nowait(), "the server stopped before storing it")

    def _enqueue(self, sms: IncomingSms) -> None:
        try:
            self._queue.put_nowait(sms)
        except asyncio.QueueFull:
            self._lost(sms, "the inbox queue is full (the database is slow or down)")

    def _lost(self, sms: IncomingSms, why: str) -> None:
        self.dropped += 1
        record = {
            "pbx": sms.pbx,
            "span": sms.span,
            "sender": sms.sender,
            "text": sms.text,
            "pbxTime": sms.pbx_time,
            "raw": base64.b64encode(sms.raw).decode() if sms.raw is not None else None,
        }
        log.error("incoming SMS not stored (%s): %s", why, json.dumps(record, ensure_ascii=False))

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            for sms in self._assembler.expire(self._clock()):
                self._enqueue(sms)

    async def _store_loop(self) -> None:
        while True:
            sms = await self._queue.get()
            try:
                row = await self._store(sms)
            finally:
                self._queue.task_done()
            self.received += 1
            if self._on_received is not None:
                try:
                    self._on_received(row)
                except Exception:
                    log.exception("SMS inbox: the listener failed")

    async def _store(self, sms: IncomingSms) -> R:
        """Store ``sms``, retrying while the database fails (the queue holds the rest)."""
        delay = 0.5
        while True:
            now = self._clock()
            try:
                row, _ = await self.store.add_incoming(
                    sms_id=self._new_id(),
                    pbx=sms.pbx,
                    span=sms.span,
                    from_number=sender_number(sms.sender, self._rules),
                    text=sms.text,
                    pbx_time=sms.pbx_time,
                    raw=base64.b64encode(sms.raw).decode() if sms.raw is not None else None,
                    undecodable=sms.undecodable,
                    partial=sms.partial,
                    parts=sms.parts,
                    detail=_missing_detail(sms),
                    dedupe_key=sms.dedupe_key,
                    owner=self.owner,
                    now=now,
                    dedupe_since=now - self.settings.dedupe_seconds,
                )
            except VwellError as exc:
                log.warning("SMS inbox: cannot store an SMS yet (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                return row


def _missing_detail(sms: IncomingSms) -> str | None:
    if not sms.missing:
        return None
    listing = ", ".join(str(index) for index in sms.missing)
    return f"part {listing} of {sms.parts} did not arrive; the text is what came"
