"""Sending SMS through the PBX's GSM hardware (SPEC section 3, gsmSendSMS).

Three backends, one shape (``SmsBackend.send(tel, text, wait=, timeout=)``):

``yeastar`` (MyPBX, the original's): ``Action: Command`` with the CLI line
    ``gsm send sms SPAN NUMBER "TEXT"``. The answer only says that the command ran, so
    the result is ``accepted``; there is no delivery report to wait for.
``yeastar-tg`` (TG gateways): ``Action: smscommand`` with
    ``command: gsm send sms SPAN NUMBER "URL-ENCODED-TEXT" ID``; the outcome arrives as
    ``Event: UpdateSMSSend`` with that ``ID`` (``Status: 1`` = sent, else failed).
``dongle`` (chan_dongle): ``Action: DongleSendSMS`` with ``Device``, ``Number``,
    ``Message``; the answer carries an ``ID`` and the outcome arrives as
    ``Event: DongleSMSStatus`` with ``Device``, ``ID`` and ``Status: Sent`` (or not).

Text safety (newlines in SMS text must never reach the AMI stream raw):

- ``yeastar``: ``escape_sms_text``. The Asterisk CLI splits a command line on blanks,
  groups by double quotes and takes a backslash as "the next character is literal".
  So ``\\`` becomes ``\\\\`` and ``"`` becomes ``\\"``; CR LF, a lone CR or LF, tab and
  every other control character (Unicode category Cc, plus U+2028/U+2029) become one
  space each (a CR LF pair counts as one). The result contains no unescaped quote, does
  not end in a lone backslash and has no control characters, so it can neither close
  its quotes nor break its header. Line breaks are lost: the CLI has no way to carry
  them.
- ``yeastar-tg``: percent-encoding of the UTF-8 text (``urllib.parse.quote`` with no
  safe characters), which keeps line breaks as ``%0A``.
- ``dongle``: the ``Message`` header gets the text with control characters turned into
  spaces, as above, without the quote escaping (a header value needs none).

Every AMI line Asterisk reads must fit its 1024-byte input buffer (longer lines are
cut). A text whose encoded line would exceed ``MAX_LINE_BYTES`` is refused with
``InvalidArgument('msg')`` rather than sent truncated.

Pacing: a GSM module sends about one SMS per 10 s per port. ``SmsQueue`` serialises the
sends of one span (or device) and starts each at least ``interval`` seconds after the
previous one *finished* (its AMI answer arrived); waiting for a delivery report happens
outside the queue so it does not hold the span. Each span's queue holds at most
``queue_size`` sends (waiting or in progress); one more raises ``SmsQueueFull``. With
``span = "auto"`` all sends share one queue. A send that fails does not stop the queue.
Time in the queue is bounded by ``queue_size * interval`` plus the sends' own timeouts;
``timeout`` applies to each wait on the PBX (the answer, the delivery report).

``timeout`` parameters (here and in ``dial``/``redirect``) are seconds handed to the
AMI client's own per-wait timers, which clean up their waiting entries; an outer
``asyncio.timeout`` could not tell the answer from the report, hence the ``noqa``.

A delivery report that does not arrive within ``timeout`` is not an error: the PBX has
the SMS, so the result says ``queued`` with a ``detail`` (raising would invite the
caller to send the SMS twice).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

from vwell_pbx.ami.errors import ActionTimeout, PbxUnavailable
from vwell_pbx.futures import fail_quietly
from vwell_pbx.pbx.errors import (
    InvalidArgument,
    NoReadySpan,
    NotSupported,
    PbxRejected,
    SmsQueueFull,
    is_unknown_action,
    is_unknown_cli_command,
    raise_for_response,
)
from vwell_pbx.pbx.numbers import check_normalised
from vwell_pbx.protocol import Message

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

T = TypeVar("T")

SmsStatus = Literal["queued", "sent", "failed", "accepted"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

MAX_LINE_BYTES: Final = 1000
"""Longest ``Key: value`` line (UTF-8 bytes, CRLF excluded) sent for an SMS."""

MAX_TEXT_CHARS: Final = 1000
"""Longest SMS text accepted before encoding."""

DEFAULT_INTERVAL: Final = 10.0
DEFAULT_QUEUE_SIZE: Final = 16
DEFAULT_SPAN_CACHE_SECONDS: Final = 60.0
_EARLY_EVENTS_KEPT: Final = 32

BACKENDS: Final = ("yeastar", "yeastar-tg", "dongle")

_LINE_BREAK: Final = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")


# --- text encodings -------------------------------------------------------------------


def flatten_controls(text: str) -> str:
    """``text`` with each line break (CR LF counts as one) and control character as a space."""
    text = _LINE_BREAK.sub(" ", text)
    return "".join(" " if unicodedata.category(char) == "Cc" else char for char in text)


def escape_sms_text(text: str) -> str:
    """Make ``text`` safe inside the double quotes of a Yeastar CLI argument.

    Backslash -> ``\\\\``, double quote -> ``\\"``, line breaks and control characters
    -> a space (see the module docstring). Everything else, Unicode included, is kept.
    """
    flat = flatten_controls(text)
    return flat.replace("\\", "\\\\").replace('"', '\\"')


def percent_encode(text: str) -> str:
    """Percent-encoding of the UTF-8 bytes of ``text``, as TG gateways expect it."""
    return quote(text, safe="", encoding="utf-8")


def _check_line(key: str, value: str) -> None:
    """Refuse a text whose AMI line would not fit Asterisk's input buffer."""
    size = len(f"{key}: {value}".encode())
    if size > MAX_LINE_BYTES:
        raise InvalidArgument(
            "msg",
            f"is too long for the PBX: its AMI line would be {size} bytes, at most "
            f"{MAX_LINE_BYTES} fit (non-Latin letters take more room, up to 6 bytes "
            "each when URL-encoded)",
        )


def _check_request(tel: str, text: str) -> None:
    check_normalised(tel, argument="tel")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("msg", "is required and must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument("msg", f"is too long (more than {MAX_TEXT_CHARS} characters)")


# --- results and the backend shape ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsResult:
    """What became of one SMS.

    ``status``: ``accepted`` (the PBX ran the command; no report exists), ``queued``
    (the PBX took it; no report awaited or none arrived in time), ``sent`` / ``failed``
    (from the delivery report). ``detail`` is human-readable context (CLI output, the
    report's status); ``response`` is the AMI answer and ``event`` the report.
    """

    backend: str
    span: str | None
    sms_id: str | None
    status: SmsStatus
    detail: str | None
    response: Message | None
    event: Message | None


@runtime_checkable
class SmsBackend(Protocol):
    """Something that sends an SMS through a PBX."""

    name: str

    async def send(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> SmsResult:
        """Send ``text`` to the normalised number ``tel``; with ``wait``, await delivery."""
        ...


# --- pacing ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Lane:
    jobs: deque[tuple[Callable[[], Awaitable[object]], asyncio.Future[object]]] = field(
        default_factory=deque
    )
    busy: int = 0  # jobs accepted and not yet finished (waiting or running)
    last_done: float | None = None
    worker: asyncio.Task[None] | None = None


class SmsQueue:
    """Serialises jobs per key (span or device) and spaces them ``interval`` seconds apart.

    Invariants: at most one job of a key runs at a time; jobs of a key run in the order
    they were submitted; a job starts no earlier than ``interval`` (by ``clock``) after
    the previous job of its key finished; at most ``queue_size`` jobs of a key are
    outstanding. A job whose caller was cancelled before it started is skipped. Workers
    exist only while a key has jobs; ``aclose`` stops them, and every job not finished
    fails with ``PbxUnavailable`` (as does ``run`` afterwards).
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval < 0:
            raise ValueError("sms.interval must not be negative")
        if queue_size < 1:
            raise ValueError("sms.queue_size must be at least 1")
        self.interval = interval
        self.queue_size = queue_size
        self._clock = clock
        self._sleep = sleep
        self._lanes: dict[str, _Lane] = {}
        self._closed = False

    def outstanding(self, key: str) -> int:
        """How many jobs of ``key`` are waiting or running."""
        lane = self._lanes.get(key)
        return 0 if lane is None else lane.busy

    async def run(self, key: str, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` in ``key``'s turn and return (or raise) what it does.

        Raises ``SmsQueueFull`` at once when ``queue_size`` jobs of ``key`` are
        outstanding.
        """
        if self._closed:
            raise PbxUnavailable("the SMS queue is shut down")
        lane = self._lanes.setdefault(key, _Lane())
        if lane.busy >= self.queue_size:
            raise SmsQueueFull(
                f"the SMS queue for {key} is full ({self.queue_size} messages waiting); "
                "try again later"
            )
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        lane.jobs.append((job, future))
        lane.busy += 1
        if lane.worker is None:
            lane.worker = asyncio.create_task(self._drain(key, lane), name=f"sms-queue {key}")
        # The worker resolves the future with job()'s own value, so this cast is exact.
        return await future  # type: ignore[return-value]

    async def _drain(self, key: str, lane: _Lane) -> None:
        try:
            while lane.jobs:
                job, future = lane.jobs[0]
                if not future.done():
                    await self._wait_turn(lane)
                lane.jobs.popleft()
                try:
                    if future.done():  # the caller gave up while waiting
                        continue
                    try:
                        value = await job()
                    except asyncio.CancelledError:
                        # Shutting down: never leave the caller hanging.
                        fail_quietly(
                            future, PbxUnavailable("the SMS queue was shut down while sending")
                        )
                        raise
                    except BaseException as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(value)
                    lane.last_done = self._clock()
                finally:
                    lane.busy -= 1
        finally:
            lane.worker = None
            for _, future in lane.jobs:
                fail_quietly(future, PbxUnavailable("the SMS queue was shut down before this SMS"))
            lane.busy -= len(lane.jobs)
            lane.jobs.clear()

    async def _wait_turn(self, lane: _Lane) -> None:
        if lane.last_done is None:
            return
        deadline = lane.last_done + self.interval
        # Loop: a timer may fire a little early by the clock it is measured with.
        while (remaining := deadline - self._clock()) > 0:
            await self._sleep(remaining)

    async def aclose(self) -> None:
        """Cancel every worker and every queued job; later ``run`` calls fail."""
        self._closed = True
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.cancel()
        try:
            # gather(), not "suppress(CancelledError): await worker", which would also
            # swallow a cancellation of aclose() itself.
            await asyncio.gather(*workers, return_exceptions=True)
        finally:
            # A worker cancelled before it first ran never reached its cleanup: do it here.
            for lane in self._lanes.values():
                for _, future in lane.jobs:
                    fail_quietly(
                        future, PbxUnavailable("the SMS queue was shut down before this SMS")
                    )
                lane.busy -= len(lane.jobs)
                lane.jobs.clear()


# --- backends -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Submitted:
    """A send the PBX took; ``report`` awaits its delivery report when one was asked for."""

    result: SmsResult
    report: asyncio.Future[Message] | None = None
    report_name: str = ""


def _discard(report: asyncio.Future[Message] | None) -> None:
    """Stop waiting for a report that will never come or is not needed (cancels the watch)."""
    if report is not None:
        report.cancel()


class PacedSmsBackend:
    """Common shape of the backends: check, queue per span, submit, await the report."""

    name: str = ""

    def __init__(self, client: AmiClient, *, queue: SmsQueue | None = None) -> None:
        self._client = client
        self._queue = queue if queue is not None else SmsQueue()

    @property
    def queue(self) -> SmsQueue:
        """The pacing queue this backend uses."""
        return self._queue

    def _lane(self) -> str:
        raise NotImplementedError

    @classmethod
    def check_text(cls, text: str) -> None:
        """Raise ``InvalidArgument('msg')`` if this backend cannot carry ``text`` whole."""

    async def _submit(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> _Submitted:
        raise NotImplementedError

    async def send(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> SmsResult:
        """Send ``text`` to ``tel`` in this span's turn; with ``wait`` await delivery.

        Raises ``InvalidArgument`` (``tel``/``msg``), ``SmsQueueFull``,
        ``NotSupported``, ``PbxRejected``, ``NoReadySpan`` and the AMI client's errors.
        """
        _check_request(tel, text)
        self.check_text(text)
        submitted = await self._queue.run(
            self._lane(), lambda: self._submit(tel, text, wait=wait, timeout=timeout)
        )
        if submitted.report is None:
            return submitted.result
        try:
            event = await submitted.report
        except ActionTimeout:
            return replace(
                submitted.result,
                status="queued",
                detail=f"no {submitted.report_name} delivery report within {timeout:g} s",
            )
        return self._outcome(submitted.result, event)

    def _outcome(self, result: SmsResult, event: Message) -> SmsResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the pacing queue; sends not yet done fail with ``PbxUnavailable``."""
        await self._queue.aclose()


def _parse_span(span: str | int) -> int | None:
    """``None`` for ``"auto"``, else the span number; ``ValueError`` otherwise."""
    if isinstance(span, bool):
        raise ValueError("sms.span must be 'auto' or a GSM span number")
    if isinstance(span, int):
        number = span
    elif isinstance(span, str) and span.strip().lower() == "auto":
        return None
    elif isinstance(span, str) and span.strip().isascii() and span.strip().isdigit():
        number = int(span.strip())
    else:
        raise ValueError(f"sms.span must be 'auto' or a GSM span number, got {span!r}")
    if not 0 <= number <= 999:
        raise ValueError(f"sms.span must be between 0 and 999, got {number}")
    return number


_SPAN_LINE: Final = re.compile(r"^\s*GSM\s+span\s+(\d+)\s*:\s*(.*)$", re.IGNORECASE)


def parse_span_list(output: str) -> list[tuple[int, str]]:
    """``[(span, summary), ...]`` from ``gsm show spans`` output."""
    spans = []
    for line in output.splitlines():
        match = _SPAN_LINE.match(line)
        if match:
            spans.append((int(match.group(1)), match.group(2).strip()))
    return spans


def parse_span_detail(output: str) -> dict[str, str]:
    """``Key: Value`` lines of ``gsm show span N`` as a dict with lower-case keys."""
    detail: dict[str, str] = {}
    for line in output.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip():
            detail.setdefault(key.strip().lower(), value.strip())
    return detail


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


# CLI complaints of ``gsm send sms`` that arrive with ``Response: Success``:
# "GSM span 2 is not ready", "GSM span 9 does not exist", the usage line.
_SEND_FAILURE: Final = re.compile(
    r"\bis not ready\b|\bdoes not exist\b|^\s*usage:|\bfail(ed|ure)?\b|\berror\b",
    re.IGNORECASE | re.MULTILINE,
)


def _send_failure(output: str) -> str | None:
    """The first line of ``output`` if it says the SMS was not sent, else ``None``."""
    if _SEND_FAILURE.search(output):
        return _first_line(output)
    return None


class _CliRunner:
    """Runs CLI commands over ``Action: Command`` and finds a READY GSM span."""

    def __init__(
        self, client: AmiClient, span: int | None, cache_seconds: float, clock: Clock
    ) -> None:
        self._client = client
        self._fixed = span
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[int, float] | None = None

    @property
    def label(self) -> str:
        return "auto" if self._fixed is None else str(self._fixed)

    async def command(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109
        name: str,
    ) -> tuple[Message, str]:
        """Run ``command``; ``NotSupported`` when the CLI does not know it."""
        result = await self._client.send_action(
            [("Action", "Command"), ("Command", command)], timeout=timeout
        )
        output = result.output or ""
        if is_unknown_cli_command(output):
            raise NotSupported(f"this PBX has no GSM module ({name} is not a known command)")
        if result.response.name.lower() == "error":
            if is_unknown_action(result.response):
                raise NotSupported("this PBX has no Command action")
            message = _first_line(output) or result.response.get("Message") or "command failed"
            raise PbxRejected(message, result.response)
        return result.response, output

    def forget(self) -> None:
        """Drop the cached span so the next send discovers again."""
        self._cached = None

    async def span(
        self,
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> int:
        """The configured span, or a READY one found with ``gsm show spans``/``span N``."""
        if self._fixed is not None:
            return self._fixed
        now = self._clock()
        if self._cached is not None and now - self._cached[1] < self._cache_seconds:
            return self._cached[0]
        _, listing = await self.command("gsm show spans", timeout=timeout, name="gsm show spans")
        spans = parse_span_list(listing)
        if not spans:
            raise NoReadySpan("the PBX lists no GSM spans (gsm show spans printed none)")
        seen = []
        for number, summary in spans:
            _, text = await self.command(
                f"gsm show span {number}", timeout=timeout, name="gsm show span"
            )
            state = parse_span_detail(text).get("state", "")
            if state.upper() == "READY":
                self._cached = (number, self._clock())
                return number
            seen.append(f"span {number}: {state or summary or 'no state'}")
        raise NoReadySpan("no GSM span is READY to send (" + "; ".join(seen) + ")")


class _SpanBackend(PacedSmsBackend):
    """A Yeastar backend: sends through a GSM span, fixed or found by ``_CliRunner``;
    one pacing lane per span."""

    def __init__(
        self,
        client: AmiClient,
        *,
        span: str | int = "auto",
        queue: SmsQueue | None = None,
        span_cache_seconds: float = DEFAULT_SPAN_CACHE_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(client, queue=queue)
        self._cli = _CliRunner(client, _parse_span(span), span_cache_seconds, clock)

    def _lane(self) -> str:
        return f"span {self._cli.label}"


class YeastarCommandBackend(_SpanBackend):
    """MyPBX: ``Command: gsm send sms SPAN NUMBER "TEXT"`` (result ``accepted``)."""

    name = "yeastar"

    @staticmethod
    def command_line(span: int, tel: str, text: str) -> str:
        """The CLI line that sends ``text`` to ``tel`` through ``span``."""
        return f'gsm send sms {span} {tel} "{escape_sms_text(text)}"'

    @classmethod
    def check_text(cls, text: str) -> None:
        _check_line("Command", cls.command_line(999, "0" * 32, text))

    async def _submit(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> _Submitted:
        span = await self._cli.span(timeout=timeout)
        try:
            response, output = await self._cli.command(
                self.command_line(span, tel, text), timeout=timeout, name="gsm send sms"
            )
        except PbxRejected:
            self._cli.forget()  # the span may have gone down: look again next time
            raise
        complaint = _send_failure(output)
        if complaint is not None:
            # MyPBX answers Success even when the span cannot send; only the text tells.
            self._cli.forget()
            raise PbxRejected(complaint, response)
        result = SmsResult(
            backend=self.name,
            span=str(span),
            sms_id=None,
            status="accepted",
            detail=output.strip() or None,
            response=response,
            event=None,
        )
        return _Submitted(result)


class YeastarTgBackend(_SpanBackend):
    """TG gateways: ``smscommand`` with an SMS ID; ``UpdateSMSSend`` reports delivery."""

    name = "yeastar-tg"

    def __init__(
        self,
        client: AmiClient,
        *,
        span: str | int = "auto",
        queue: SmsQueue | None = None,
        ids: Iterator[int] | None = None,
        span_cache_seconds: float = DEFAULT_SPAN_CACHE_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(
            client, span=span, queue=queue, span_cache_seconds=span_cache_seconds, clock=clock
        )
        # Start from the clock so that two server runs do not reuse IDs soon after.
        self._ids = ids if ids is not None else itertools.count(int(time.time()) % 1_000_000)

    @staticmethod
    def command_line(span: int, tel: str, text: str, sms_id: str) -> str:
        """The ``smscommand`` command for one SMS."""
        return f'gsm send sms {span} {tel} "{percent_encode(text)}" {sms_id}'

    @classmethod
    def check_text(cls, text: str) -> None:
        _check_line("command", cls.command_line(999, "0" * 32, text, "9" * 12))

    async def _submit(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> _Submitted:
        span = await self._cli.span(timeout=timeout)
        sms_id = str(next(self._ids))
        report: asyncio.Future[Message] | None = None
        if wait:
            # Registered before sending: the report may follow the answer immediately.
            report = self._client.wait_event(
                lambda m: m.name.lower() == "updatesmssend" and (m.get("ID") or "") == sms_id,
                timeout,
            )
        try:
            answer = await self._client.send_action(
                [("Action", "smscommand"), ("command", self.command_line(span, tel, text, sms_id))],
                timeout=timeout,
            )
            if answer.response.name.lower() == "error":
                self._cli.forget()
            raise_for_response(
                answer.response,
                unsupported="this PBX has no smscommand action (it is not a Yeastar TG gateway)",
            )
        except BaseException:
            _discard(report)
            raise
        result = SmsResult(
            backend=self.name,
            span=str(span),
            sms_id=sms_id,
            status="queued",
            detail=answer.response.get("Message"),
            response=answer.response,
            event=None,
        )
        return _Submitted(result, report, "UpdateSMSSend")

    def _outcome(self, result: SmsResult, event: Message) -> SmsResult:
        status = (event.get("Status") or "").strip()
        return replace(
            result,
            status="sent" if status == "1" else "failed",
            detail=f"UpdateSMSSend Status: {status or '(none)'}",
            event=event,
        )


class _DongleReport:
    """Predicate for ``DongleSMSStatus`` of one device whose ID is learnt after sending.

    Events that match the device before the ID is known are kept (a few) so a report
    that arrives together with the answer is not missed.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.sms_id: str | None = None
        self.early: deque[Message] = deque(maxlen=_EARLY_EVENTS_KEPT)

    def __call__(self, message: Message) -> bool:
        if message.name.lower() != "donglesmsstatus":
            return False
        if (message.get("Device") or "") != self.device:
            return False
        if self.sms_id is None:
            self.early.append(message)
            return False
        return (message.get("ID") or "").strip() == self.sms_id

    def early_match(self) -> Message | None:
        for message in self.early:
            if (message.get("ID") or "").strip() == self.sms_id:
                return message
        return None


class DongleBackend(PacedSmsBackend):
    """chan_dongle: ``DongleSendSMS``; ``DongleSMSStatus`` reports delivery."""

    name = "dongle"

    def __init__(self, client: AmiClient, *, device: str, queue: SmsQueue | None = None) -> None:
        super().__init__(client, queue=queue)
        if (
            not isinstance(device, str)
            or not device
            or device.lower() == "auto"
            or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in device)
        ):
            raise ValueError(
                f"sms.span must name a chan_dongle device (such as 'dongle0'), got {device!r}"
            )
        self.device = device

    def _lane(self) -> str:
        return f"device {self.device}"

    @classmethod
    def check_text(cls, text: str) -> None:
        _check_line("Message", flatten_controls(text))

    async def _submit(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> _Submitted:
        watch = _DongleReport(self.device) if wait else None
        report: asyncio.Future[Message] | None = None
        if watch is not None:
            report = self._client.wait_event(watch, timeout)
        try:
            answer = await self._client.send_action(
                [
                    ("Action", "DongleSendSMS"),
                    ("Device", self.device),
                    ("Number", tel),
                    ("Message", flatten_controls(text)),
                ],
                timeout=timeout,
            )
            raise_for_response(
                answer.response,
                unsupported="this PBX has no DongleSendSMS action (chan_dongle is not loaded)",
            )
        except BaseException:
            _discard(report)
            raise
        sms_id = (answer.response.get("ID") or "").strip() or None
        result = SmsResult(
            backend=self.name,
            span=self.device,
            sms_id=sms_id,
            status="queued",
            detail=answer.response.get("Message"),
            response=answer.response,
            event=None,
        )
        if watch is None or report is None:
            return _Submitted(result)
        if sms_id is None:
            _discard(report)
            return _Submitted(
                replace(result, detail="the PBX gave no SMS ID; delivery cannot be awaited")
            )
        watch.sms_id = sms_id
        early = watch.early_match()
        if early is not None:
            _discard(report)
            report = asyncio.get_running_loop().create_future()
            report.set_result(early)
        return _Submitted(result, report, "DongleSMSStatus")

    def _outcome(self, result: SmsResult, event: Message) -> SmsResult:
        status = (event.get("Status") or "").strip()
        return replace(
            result,
            status="sent" if status.lower() == "sent" else "failed",
            detail=f"DongleSMSStatus Status: {status or '(none)'}",
            event=event,
        )


def make_sms_backend(
    client: AmiClient,
    *,
    backend: str,
    span: str | int,
    interval: float = DEFAULT_INTERVAL,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    ids: Iterator[int] | None = None,
    span_cache_seconds: float = DEFAULT_SPAN_CACHE_SECONDS,
) -> PacedSmsBackend:
    """Build the configured backend (``sms.backend``) with its own pacing queue.

    ``span``: ``"auto"`` or a span number for the Yeastar backends, a device name for
    ``dongle``. Raises ``ValueError`` naming the configuration field when a value is bad.
    """
    queue = SmsQueue(interval=interval, queue_size=queue_size, clock=clock, sleep=sleep)
    if backend == "yeastar":
        return YeastarCommandBackend(
            client, span=span, queue=queue, span_cache_seconds=span_cache_seconds, clock=clock
        )
    if backend == "yeastar-tg":
        return YeastarTgBackend(
            client,
            span=span,
            queue=queue,
            ids=ids,
            span_cache_seconds=span_cache_seconds,
            clock=clock,
        )
    if backend == "dongle":
        return DongleBackend(client, device=str(span), queue=queue)
    raise ValueError(f"sms.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
