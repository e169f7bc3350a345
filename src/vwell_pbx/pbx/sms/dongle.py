"""The ``dongle`` backend: chan_dongle's Huawei USB modems.

``Action: DongleSendSMS`` with ``Device``, ``Number`` and ``Message`` (the text with
its control characters flattened, see ``text``); the answer carries an ``ID`` and the
outcome arrives as ``Event: DongleSMSStatus`` with ``Device``, ``ID`` and
``Status: Sent`` (or a failure). One pacing lane per device.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from vwell_pbx.pbx.errors import raise_for_response
from vwell_pbx.pbx.sms.base import HandOver, PacedSmsBackend
from vwell_pbx.pbx.sms.pacing import SmsQueue
from vwell_pbx.pbx.sms.submission import Attempt, PendingReport, SmsResult, Verdict
from vwell_pbx.pbx.sms.text import check_line, flatten_controls
from vwell_pbx.protocol import Message

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

_EARLY_EVENTS_KEPT: Final = 32


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
    report_event = "DongleSMSStatus"

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

    @property
    def lane(self) -> str:
        """``device NAME``."""
        return f"device {self.device}"

    @property
    def fixed_span(self) -> str:
        """The device name: every SMS goes through it."""
        return self.device

    @classmethod
    def check_text(cls, text: str) -> None:
        """Refuse a text whose ``Message`` header would not fit the PBX's line buffer."""
        check_line("Message", flatten_controls(text))

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
        watch = _DongleReport(self.device) if await_report else None
        report: asyncio.Future[Message] | None = None
        if watch is not None:
            report = self._client.wait_event(watch, report_within)
        try:
            answer = await self._send_sms_action(
                progress,
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
            if report is not None:
                report.cancel()  # stop watching for a report that will not come
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
            return Attempt(verdict=Verdict.ACCEPTED, result=result)
        if sms_id is None:
            report.cancel()
            detail = "the PBX gave no SMS ID; delivery cannot be awaited"
            return Attempt(verdict=Verdict.ACCEPTED, result=replace(result, detail=detail))
        watch.sms_id = sms_id
        early = watch.early_match()
        if early is not None:
            report.cancel()
            report = asyncio.get_running_loop().create_future()
            report.set_result(early)
        pending = PendingReport(future=report, event=self.report_event, within=report_within)
        return Attempt(verdict=Verdict.ACCEPTED, result=result, report=pending)

    def _read_report(self, result: SmsResult, event: Message) -> SmsResult:
        status = (event.get("Status") or "").strip()
        return replace(
            result,
            status="sent" if status.lower() == "sent" else "failed",
            detail=f"DongleSMSStatus Status: {status or '(none)'}",
            event=event,
        )
