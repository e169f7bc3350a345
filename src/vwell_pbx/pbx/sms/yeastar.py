"""The two Yeastar backends: GSM spans driven through the Asterisk CLI and ``smscommand``.

``yeastar`` (MyPBX, the original's): ``Action: Command`` with the CLI line
    ``gsm send sms SPAN NUMBER "TEXT"``. The answer only says that the command ran, so
    the result is ``accepted``; there is no delivery report to wait for. MyPBX answers
    ``Response: Success`` even when the span cannot send: only the CLI text tells
    (``GSM span 2 is not ready``), and such a text is turned into ``PbxRejected``.
``yeastar-tg`` (TG gateways): ``Action: smscommand`` with
    ``command: gsm send sms SPAN NUMBER "URL-ENCODED-TEXT" ID``; the outcome arrives as
    ``Event: UpdateSMSSend`` with that ``ID`` (``Status: 1`` = sent, else failed).

Both send through one GSM span: the configured one, or with ``span = "auto"`` the first
span that ``gsm show spans`` lists and ``gsm show span N`` says is ``State: READY``.
The span found is cached for ``span_cache_seconds`` and forgotten after a refused send,
so the next send looks again.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from vwell_pbx.pbx.errors import (
    NoReadySpan,
    NotSupported,
    PbxRejected,
    is_unknown_action,
    is_unknown_cli_command,
    raise_for_response,
)
from vwell_pbx.pbx.sms.base import HandOver, PacedSmsBackend
from vwell_pbx.pbx.sms.pacing import Clock, SmsQueue
from vwell_pbx.pbx.sms.submission import Attempt, PendingReport, SmsResult, Verdict
from vwell_pbx.pbx.sms.text import check_line, escape_sms_text, percent_encode
from vwell_pbx.protocol import Message

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

DEFAULT_SPAN_CACHE_SECONDS: Final = 60.0
"""How long a span found by ``span = "auto"`` is used before looking again."""


def parse_span(span: str | int) -> int | None:
    """``None`` for ``"auto"``, else the span number; ``ValueError`` naming ``sms.span``."""
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


class GsmCli:
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
        """``auto`` or the configured span number."""
        return "auto" if self._fixed is None else str(self._fixed)

    def check_result(self, name: str, response: Message, output: str) -> None:
        """Raise for a CLI answer that says the command failed.

        ``NotSupported`` when the CLI (or AMI) does not know the command, ``PbxRejected``
        with the first output line (or the ``Message``) for ``Response: Error``.
        """
        if is_unknown_cli_command(output):
            raise NotSupported(f"this PBX has no GSM module ({name} is not a known command)")
        if response.name.lower() == "error":
            if is_unknown_action(response):
                raise NotSupported("this PBX has no Command action")
            message = _first_line(output) or response.get("Message") or "command failed"
            raise PbxRejected(message, response)

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
        self.check_result(name, result.response, output)
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
    """A Yeastar backend: sends through a GSM span, fixed or found by ``GsmCli``;
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
        self._cli = GsmCli(client, parse_span(span), span_cache_seconds, clock)

    @property
    def lane(self) -> str:
        """``span N``, or ``span auto`` (one lane for every span found)."""
        return f"span {self._cli.label}"

    @property
    def fixed_span(self) -> str | None:
        """The configured span number, or ``None`` with ``span = "auto"``."""
        label = self._cli.label
        return None if label == "auto" else label


class YeastarCommandBackend(_SpanBackend):
    """MyPBX: ``Command: gsm send sms SPAN NUMBER "TEXT"`` (result ``accepted``)."""

    name = "yeastar"

    @staticmethod
    def command_line(span: int, tel: str, text: str) -> str:
        """The CLI line that sends ``text`` to ``tel`` through ``span``."""
        return f'gsm send sms {span} {tel} "{escape_sms_text(text)}"'

    @classmethod
    def check_text(cls, text: str) -> None:
        """Refuse a text whose CLI line would not fit the PBX's line buffer."""
        check_line("Command", cls.command_line(999, "0" * 32, text))

    async def _hand_over(
        self,
        tel: str,
        text: str,
        progress: HandOver,
        *,
        await_report: bool,
        timeout: float,  # noqa: ASYNC109
        report_within: float,
    ) -> Attempt:
        span = await self._cli.span(timeout=timeout)
        answer = await self._send_sms_action(
            progress,
            [("Action", "Command"), ("Command", self.command_line(span, tel, text))],
            timeout=timeout,
        )
        output = answer.output or ""
        try:
            self._cli.check_result("gsm send sms", answer.response, output)
            complaint = _send_failure(output)
            if complaint is not None:
                raise PbxRejected(complaint, answer.response)
        except PbxRejected:
            self._cli.forget()  # the span may have gone down: look again next time
            raise
        result = SmsResult(
            backend=self.name,
            span=str(span),
            sms_id=None,
            status="accepted",
            detail=output.strip() or None,
            response=answer.response,
            event=None,
        )
        return Attempt(verdict=Verdict.ACCEPTED, result=result)


class YeastarTgBackend(_SpanBackend):
    """TG gateways: ``smscommand`` with an SMS ID; ``UpdateSMSSend`` reports delivery."""

    name = "yeastar-tg"
    report_event = "UpdateSMSSend"

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
        """Refuse a text whose URL-encoded command would not fit the PBX's line buffer."""
        check_line("command", cls.command_line(999, "0" * 32, text, "9" * 12))

    async def _hand_over(
        self,
        tel: str,
        text: str,
        progress: HandOver,
        *,
        await_report: bool,
        timeout: float,  # noqa: ASYNC109
        report_within: float,
    ) -> Attempt:
        span = await self._cli.span(timeout=timeout)
        sms_id = str(next(self._ids))
        report: asyncio.Future[Message] | None = None
        if await_report:
            # Registered before sending: the report may follow the answer immediately.
            report = self._client.wait_event(
                lambda m: m.name.lower() == "updatesmssend" and (m.get("ID") or "") == sms_id,
                report_within,
            )
        try:
            answer = await self._send_sms_action(
                progress,
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
            if report is not None:
                report.cancel()  # stop watching for a report that will not come
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
        pending = None
        if report is not None:
            pending = PendingReport(future=report, event=self.report_event, within=report_within)
        return Attempt(verdict=Verdict.ACCEPTED, result=result, report=pending)

    def _read_report(self, result: SmsResult, event: Message) -> SmsResult:
        status = (event.get("Status") or "").strip()
        return replace(
            result,
            status="sent" if status == "1" else "failed",
            detail=f"UpdateSMSSend Status: {status or '(none)'}",
            event=event,
        )
