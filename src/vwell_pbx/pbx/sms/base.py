"""``PacedSmsBackend``: the shape every backend shares.

A backend implements two things: ``lane`` (which GSM module its SMS go through) and
``_hand_over`` (the AMI exchange that gives one SMS to the PBX). This class turns them
into the two halves the rest of the server uses:

- ``submit`` / ``settle``: one SMS, now, no queue, the outcome as an ``Attempt`` with a
  verdict (see ``submission``). What a scheduler of its own (a durable outbox) calls.
- ``send``: ``check``, then ``submit`` in the lane's turn of the in-memory ``SmsQueue``,
  then ``settle``; errors are raised, as the API expects.

``timeout`` parameters (here and in ``dial``/``redirect``) are seconds handed to the
AMI client's own per-wait timers, which clean up their waiting entries; an outer
``asyncio.timeout`` could not tell the answer from the report, hence the ``noqa``.

A delivery report that does not arrive within ``timeout``, or whose wait is cut short
by a lost connection, is not an error: the PBX has the SMS, so the result says
``queued`` with a ``detail`` (raising would invite the caller to send the SMS twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vwell_pbx.ami.errors import ActionTimeout, PbxUnavailable
from vwell_pbx.errors import VwellError
from vwell_pbx.pbx.sms.pacing import SmsQueue
from vwell_pbx.pbx.sms.submission import Attempt, SmsResult, Verdict, verdict_for
from vwell_pbx.pbx.sms.text import check_request
from vwell_pbx.protocol import Message

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import ActionResult, AmiClient


@dataclass(slots=True)
class HandOver:
    """The progress of one submission: whether the SMS's own action has been written.

    Set by ``PacedSmsBackend._send_sms_action`` just before it writes; ``submit`` reads
    it to tell a failure before the hand-over (RETRY) from one after it (IN_DOUBT).
    """

    written: bool = False


class PacedSmsBackend:
    """Common shape of the backends: check, queue per lane, submit, settle the report."""

    name: str = ""
    """The ``sms.backend`` value that selects this backend."""
    report_event: str = ""
    """The event that reports delivery, if the backend has one (``UpdateSMSSend``)."""

    def __init__(self, client: AmiClient, *, queue: SmsQueue | None = None) -> None:
        self._client = client
        self._queue = queue if queue is not None else SmsQueue()

    @property
    def queue(self) -> SmsQueue:
        """The pacing queue ``send`` uses."""
        return self._queue

    @property
    def lane(self) -> str:
        """The pacing key: SMS of the same lane go through the same GSM module."""
        raise NotImplementedError

    @property
    def fixed_span(self) -> str | None:
        """The configured span or device, or ``None`` when found per send."""
        raise NotImplementedError

    @classmethod
    def check_text(cls, text: str) -> None:
        """Raise ``InvalidArgument('msg')`` if this backend cannot carry ``text`` whole."""

    def check(self, tel: str, text: str) -> None:
        """Raise ``InvalidArgument`` (``tel``/``msg``) for an SMS this backend cannot send."""
        check_request(tel, text)
        self.check_text(text)

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
        """Give the SMS to the PBX (the backend's own exchange); may raise ``VwellError``.

        Returns an ``ACCEPTED`` attempt (with ``report`` when ``await_report`` and the
        backend has reports, watched for ``report_within`` seconds). Must write the
        SMS's own action with ``_send_sms_action`` (or mark ``progress.written`` itself
        right before writing it).
        """
        raise NotImplementedError

    def _read_report(self, result: SmsResult, event: Message) -> SmsResult:
        """``result`` updated from its delivery report (status ``sent`` or ``failed``)."""
        raise NotImplementedError

    async def _send_sms_action(
        self,
        progress: HandOver,
        fields: Sequence[tuple[str, str]],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ActionResult:
        """Send the action that carries the SMS; from the write on, a lost answer is IN_DOUBT.

        ``send_action`` raises ``PbxUnavailable`` before writing anything when the client
        is not connected, and otherwise writes without awaiting first; so ``connected``
        read here tells which of the two happens. (Only when an earlier write is stuck
        on back-pressure does the write wait; an SMS lost then is judged in doubt
        although unwritten: the safe side.)
        """
        if self._client.connected:
            progress.written = True
        return await self._client.send_action(fields, timeout=timeout)

    async def submit(
        self,
        tel: str,
        text: str,
        *,
        await_report: bool,
        timeout: float,  # noqa: ASYNC109
        report_within: float | None = None,
    ) -> Attempt:
        """Hand one SMS to the PBX now, without queueing; the outcome as an ``Attempt``.

        Never raises a ``VwellError``: a refused input is ``FAILED``, and every PBX or
        connection failure gets its verdict from ``verdict_for``. With ``await_report``
        an ``ACCEPTED`` attempt may carry a ``report`` for ``settle``, watched for
        ``report_within`` seconds (default ``timeout``, which bounds each AMI answer).
        """
        progress = HandOver()
        try:
            self.check(tel, text)
            return await self._hand_over(
                tel,
                text,
                progress,
                await_report=await_report,
                timeout=timeout,
                report_within=timeout if report_within is None else report_within,
            )
        except VwellError as exc:
            return Attempt(verdict=verdict_for(exc, handed_over=progress.written), error=exc)

    async def settle(self, attempt: Attempt) -> Attempt:
        """Wait for the delivery report of ``attempt``, if it awaits one; else return it.

        ``SENT`` or ``FAILED`` from the report; still ``ACCEPTED`` (status ``queued``,
        with a ``detail``) if no report came in time or the connection was lost first.
        """
        report, result = attempt.report, attempt.result
        if report is None or result is None:
            return attempt
        try:
            event = await report.future
        except ActionTimeout:
            detail = f"no {report.event} delivery report within {report.within:g} s"
        except PbxUnavailable:
            detail = f"the connection to the PBX was lost before the {report.event} report"
        else:
            settled = self._read_report(result, event)
            verdict = Verdict.SENT if settled.status == "sent" else Verdict.FAILED
            return Attempt(verdict=verdict, result=settled)
        return Attempt(
            verdict=Verdict.ACCEPTED, result=replace(result, status="queued", detail=detail)
        )

    async def send(
        self,
        tel: str,
        text: str,
        *,
        wait: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> SmsResult:
        """Send ``text`` to ``tel`` in this lane's turn; with ``wait`` await delivery.

        Raises ``InvalidArgument`` (``tel``/``msg``, before queueing), ``SmsQueueFull``,
        ``NotSupported``, ``PbxRejected``, ``NoReadySpan`` and the AMI client's errors.
        """
        self.check(tel, text)
        attempt = await self._queue.run(
            self.lane, lambda: self.submit(tel, text, await_report=wait, timeout=timeout)
        )
        attempt = await self.settle(attempt)
        if attempt.error is not None:
            raise attempt.error
        assert attempt.result is not None  # an Attempt has one or the other
        return attempt.result

    async def aclose(self) -> None:
        """Stop the pacing queue; sends not yet done fail with ``PbxUnavailable``."""
        await self._queue.aclose()
