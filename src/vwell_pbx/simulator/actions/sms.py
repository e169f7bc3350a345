"""Sending SMS: TG's ``smscommand``, chan_dongle's ``DongleSendSMS``, and the MyPBX CLI's
``gsm send sms`` (run by ``Command``, see ``system``).

Each send first waits ``sim.sms_answer_delay`` (a slow module) and takes the next of
``sim.sms_faults`` (``fail_sms``), then:

=================  ======================================================================
fault              what the PBX does
=================  ======================================================================
none               takes the SMS (recorded ``ok``) and answers; TG and dongle report the
                   outcome later, one SMS at a time per span or device
                   (``PbxSimulator.deliver_sms_later``): ``UpdateSMSSend`` with ``Status:
                   1`` (``0`` when the span cannot send), ``DongleSMSStatus`` ``Sent``
``busy``           refuses it for now: CLI ``GSM span N is not ready``, TG ``Response:
                   Error`` ``GSM span N is busy``, dongle ``Error`` ``[dev] Device busy``
``error``          refuses it for good: CLI ``Error: the GSM module rejected the SMS``,
                   TG and dongle ``Response: Error`` ``SMS rejected by the module``
``no_answer``      takes and sends it (recorded ``ok``, ``answered=False``) but never
                   answers the action
``report_failed``  takes it, answers, then reports failure (``Status: 0``,
                   ``Status: NotSent``); for the CLI, which has no report, as none
=================  ======================================================================

Every SMS asked for is recorded in ``sim.sms_sent`` (bounded), with ``ok`` telling
whether the PBX took it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from vwell_pbx.protocol import Message
from vwell_pbx.simulator import gsm
from vwell_pbx.simulator.actions.base import ActionSession, response
from vwell_pbx.simulator.gsm import SentSms, SmsFault

if TYPE_CHECKING:  # the simulator is only a type here; it imports this package
    from vwell_pbx.simulator.server import PbxSimulator

DONGLE_LANE: Final = -1
"""The delivery lane of chan_dongle's one device (spans use their number)."""

REJECTED: Final = "SMS rejected by the module"


async def sms_turn(sim: PbxSimulator) -> SmsFault | None:
    """Wait as long as a send takes to be answered, then the fault it meets (if any)."""
    if sim.sms_answer_delay > 0:
        await asyncio.sleep(sim.sms_answer_delay)
    return sim.sms_faults.take()


def cli_send_sms(
    sim: PbxSimulator, command: gsm.SendSmsCommand, fault: SmsFault | None
) -> list[str]:
    """MyPBX's ``gsm send sms``: nothing printed when queued, a complaint otherwise."""
    span = sim.span(command.span)
    if span is None:
        return [f"GSM span {command.span} does not exist"]
    ok = span.can_send and fault not in ("busy", "error")
    sim.record_sms(
        SentSms(
            via="command",
            span=command.span,
            number=command.number,
            text=command.text,
            ok=ok,
            answered=fault != "no_answer",
            at=sim.clock(),
        )
    )
    if fault == "error":
        return ["Error: the GSM module rejected the SMS"]
    if not ok:
        return [f"GSM span {command.span} is not ready"]
    return []


async def smscommand(session: ActionSession, action: Message, action_id: str | None) -> None:
    """TG: ``command: gsm send sms SPAN NUMBER "URL-ENCODED" ID``, reported by ID."""
    sim = session.sim
    parsed = gsm.parse_send_sms(action.get("command") or "")
    if parsed is None or parsed.sms_id is None:
        session.send(response("Error", action_id, ("Message", "Invalid command")))
        return
    fault = await sms_turn(sim)
    span = sim.span(parsed.span)
    ok = span is not None and span.can_send and fault not in ("busy", "error")
    sim.record_sms(
        SentSms(
            via="smscommand",
            span=parsed.span,
            number=parsed.number,
            text=gsm.url_decode(parsed.text),
            sms_id=parsed.sms_id,
            ok=ok,
            answered=fault != "no_answer",
            at=sim.clock(),
        )
    )
    if fault == "busy":
        message = f"GSM span {parsed.span} is busy"
        session.send(response("Error", action_id, ("Message", message)))
        return
    if fault == "error":
        session.send(response("Error", action_id, ("Message", REJECTED)))
        return
    if fault != "no_answer":
        session.send(response("Success", action_id, ("Message", "SMS command queued")))
    sms_id = parsed.sms_id
    delivered = ok and fault != "report_failed"

    def report() -> None:
        sim.emit(
            Message.build(
                ("Event", "UpdateSMSSend"),
                ("Privilege", "all,smscommand"),
                ("ID", sms_id),
                ("Smsc", "+79000000000"),
                ("Status", "1" if delivered else "0"),
            )
        )

    sim.deliver_sms_later(parsed.span if span is not None else None, report)


async def dongle_send_sms(session: ActionSession, action: Message, action_id: str | None) -> None:
    """chan_dongle: ``Device``, ``Number``, ``Message``; answered with a hex ``ID``."""
    sim = session.sim
    for field in ("Device", "Number", "Message"):
        if not action.get(field):
            session.send(response("Error", action_id, ("Message", f"{field} not specified")))
            return
    device = action.get("Device") or ""
    fault = await sms_turn(sim)
    sms_id = f"0x{sim.rng.getrandbits(48):012x}"
    sim.record_sms(
        SentSms(
            via="dongle",
            device=device,
            number=action.get("Number") or "",
            text=action.get("Message") or "",
            sms_id=sms_id,
            ok=fault not in ("busy", "error"),
            answered=fault != "no_answer",
            at=sim.clock(),
        )
    )
    if fault in ("busy", "error"):
        message = f"[{device}] Device busy" if fault == "busy" else f"[{device}] {REJECTED}"
        session.send(response("Error", action_id, ("Message", message)))
        return
    if fault != "no_answer":
        session.send(
            response(
                "Success", action_id, ("Message", f"[{device}] SMS queued for send"), ("ID", sms_id)
            )
        )
    status = "NotSent" if fault == "report_failed" else "Sent"

    def report() -> None:
        sim.emit(
            Message.build(
                ("Event", "DongleSMSStatus"),
                ("Privilege", "call,all"),
                ("Device", device),
                ("ID", sms_id),
                ("Status", status),
            )
        )

    sim.deliver_sms_later(DONGLE_LANE, report)
