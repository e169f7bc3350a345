"""One submission of one SMS and what it came to: the seam between a backend and its scheduler.

A backend's job ends at "give this SMS to the PBX on my span, now, and tell me what
became of it": ``submit`` (the one AMI exchange that hands the SMS over, plus whatever
the backend must ask first, such as which span is READY), then ``settle`` (the delivery
report, when the backend has one and it was asked for). *When* to submit (pacing per
span, queueing, retrying, remembering across restarts) belongs to the caller: today the
in-memory ``SmsQueue`` behind ``PacedSmsBackend.send``; a durable outbox (``queued ->
sending -> sent | failed``, paced per span, perhaps on several servers) can drive the same
two calls with its own scheduling. ``SmsSubmitter`` is that contract.

``submit`` does not raise for what the PBX or the connection did; it returns an
``Attempt`` whose ``verdict`` tells a scheduler what to do next:

============ ==========================================================================
verdict      meaning, and what a scheduler does with it
============ ==========================================================================
``ACCEPTED`` the PBX took the SMS. Mark it sent, or (``attempt.report`` set) let
             ``settle`` wait for the delivery report. Never submit it again.
``SENT``     the delivery report says the module sent it (``settle`` only).
``FAILED``   permanent: the PBX refused the request, lacks the GSM module or action,
             the report says the module failed, or the input is invalid. The same SMS
             will fail the same way; do not retry.
``RETRY``    transient, and the SMS never reached the PBX: not connected, too many
             actions pending, no span READY, the span or device busy or not ready, or
             a timeout before the SMS was handed over (while finding a span). Retry
             later, with backoff.
``IN_DOUBT`` the request that carries the SMS was written to the PBX, but its answer
             was lost (timeout, connection dropped). The PBX may or may not send it,
             and a resend risks a duplicate SMS, which is worse than a question: do not
             retry on your own (the outbox's ``unknown``).
============ ==========================================================================

``verdict_for`` is the one table from an error to its verdict. Transient versus
permanent is decided by what the error says about the *SMS*: a PBX that is down, or a
span that is busy now, may take the same SMS later; a refusal, a missing module or a
text the PBX cannot carry will not change by waiting.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, Protocol, runtime_checkable

from vwell_pbx.ami.errors import ActionTimeout, LoginFailed, PbxUnavailable, TooManyPending
from vwell_pbx.errors import VwellError
from vwell_pbx.pbx.errors import NoReadySpan, PbxRejected, SmsQueueFull
from vwell_pbx.protocol import Message

SmsStatus = Literal["queued", "sent", "failed", "accepted"]


@dataclass(frozen=True, slots=True)
class SmsResult:
    """What the PBX said about one SMS it took.

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


class Verdict(Enum):
    """What one submission came to, as a scheduler needs to know it (module docstring)."""

    ACCEPTED = "accepted"
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingReport:
    """A delivery report being watched for: ``future`` resolves with the report event.

    The watch was registered before the SMS was handed over (a report may follow its
    answer at once) and ends by itself after ``within`` seconds (``ActionTimeout``).
    """

    future: asyncio.Future[Message] = field(repr=False, compare=False)
    event: str
    """The report's event name (``UpdateSMSSend``, ``DongleSMSStatus``)."""
    within: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """The outcome of ``submit`` (and of ``settle``): a verdict, and why.

    Exactly one of ``result`` and ``error`` is set: ``result`` when the PBX took the SMS
    (``ACCEPTED``, ``SENT``, or ``FAILED`` by its delivery report), ``error`` when it
    did not or nobody knows (``FAILED``, ``RETRY``, ``IN_DOUBT``). ``report`` is set
    only on an ``ACCEPTED`` attempt whose delivery report is awaited.
    """

    verdict: Verdict
    result: SmsResult | None = None
    error: VwellError | None = None
    report: PendingReport | None = None

    def __post_init__(self) -> None:
        if (self.result is None) == (self.error is None):
            raise ValueError("an Attempt carries either a result or an error")
        if self.report is not None and self.verdict is not Verdict.ACCEPTED:
            raise ValueError("only an ACCEPTED attempt awaits a report")

    @property
    def reason(self) -> str | None:
        """Why the SMS was not taken (the error's message), or the result's detail."""
        if self.error is not None:
            return str(self.error)
        return self.result.detail if self.result is not None else None


# How a span or device says it cannot send *now* (a busy or unready module, a modem
# that dropped off); Yeastar: "GSM span 2 is not ready".
_BUSY: Final = re.compile(r"\bnot ready\b|\bbusy\b|\bnot connected\b", re.IGNORECASE)


def verdict_for(error: VwellError, *, handed_over: bool) -> Verdict:
    """The verdict of a submission that ended in ``error``.

    ``handed_over``: the action carrying the SMS had been written to a live connection
    when the error came (from then on a lost answer leaves the SMS in doubt).

    - ``PbxUnavailable``, ``LoginFailed`` (the PBX refused our AMI login: fixed by an
      admin, not by the sender), ``ActionTimeout``: RETRY before the hand-over,
      IN_DOUBT after it;
    - ``TooManyPending``, ``SmsQueueFull``, ``NoReadySpan``: RETRY;
    - ``PbxRejected`` whose message says the span or device is not ready, busy or not
      connected: RETRY;
    - anything else (``PbxRejected``, ``NotSupported``, ``InvalidArgument``,
      ``LocalProtocolError``, ...): FAILED.

    ``TooManyPending`` is raised before anything is written, so it is RETRY either way.
    """
    if isinstance(error, PbxUnavailable | LoginFailed | ActionTimeout):
        return Verdict.IN_DOUBT if handed_over else Verdict.RETRY
    if isinstance(error, TooManyPending | SmsQueueFull | NoReadySpan):
        return Verdict.RETRY
    if isinstance(error, PbxRejected) and _BUSY.search(error.message):
        return Verdict.RETRY
    return Verdict.FAILED


@runtime_checkable
class SmsBackend(Protocol):
    """Something that sends an SMS through a PBX, scheduling included (what the API calls)."""

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


@runtime_checkable
class SmsSubmitter(Protocol):
    """One backend's hand-over of one SMS, without any scheduling (module docstring)."""

    name: str

    @property
    def lane(self) -> str:
        """The pacing key: SMS of the same lane go through the same GSM module."""
        ...

    @property
    def fixed_span(self) -> str | None:
        """The span (or device) every SMS goes through when one is configured; ``None``
        when it is found per send (``span = "auto"``)."""
        ...

    def check(self, tel: str, text: str) -> None:
        """Raise ``InvalidArgument`` (``tel``/``msg``) for an SMS this backend cannot send."""
        ...

    async def submit(
        self,
        tel: str,
        text: str,
        *,
        await_report: bool,
        timeout: float,  # noqa: ASYNC109
        report_within: float | None = None,
    ) -> Attempt:
        """Hand one SMS to the PBX now; never raises for what the PBX or the link did.

        ``timeout`` bounds each AMI answer; an awaited delivery report is watched for
        ``report_within`` seconds (default ``timeout``).
        """
        ...

    async def settle(self, attempt: Attempt) -> Attempt:
        """Wait for the delivery report of an ``ACCEPTED`` attempt that awaits one."""
        ...
