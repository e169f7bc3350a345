"""SMS actions of the GSM gateways: TG's ``smscommand`` and chan_dongle's ``DongleSendSMS``.

Both answer at once and report the outcome later, one SMS at a time per span or
device (``PbxSimulator.deliver_sms_later``): ``UpdateSMSSend`` with ``Status: 1`` (sent)
or ``0`` (the span cannot send), ``DongleSMSStatus`` with ``Status: Sent``. MyPBX's CLI
``gsm send sms`` goes through ``Command`` (``system``).
"""

from __future__ import annotations

from typing import Final

from vwell_pbx.protocol import Message
from vwell_pbx.simulator import gsm
from vwell_pbx.simulator.actions.base import ActionSession, response
from vwell_pbx.simulator.gsm import SentSms

DONGLE_LANE: Final = -1
"""The delivery lane of chan_dongle's one device (spans use their number)."""


async def smscommand(session: ActionSession, action: Message, action_id: str | None) -> None:
    """TG: ``command: gsm send sms SPAN NUMBER "URL-ENCODED" ID``, reported by ID."""
    sim = session.sim
    parsed = gsm.parse_send_sms(action.get("command") or "")
    if parsed is None or parsed.sms_id is None:
        session.send(response("Error", action_id, ("Message", "Invalid command")))
        return
    span = sim.span(parsed.span)
    ok = span is not None and span.can_send
    sim.record_sms(
        SentSms(
            via="smscommand",
            span=parsed.span,
            number=parsed.number,
            text=gsm.url_decode(parsed.text),
            sms_id=parsed.sms_id,
            ok=ok,
        )
    )
    session.send(response("Success", action_id, ("Message", "SMS command queued")))
    sms_id = parsed.sms_id

    def report() -> None:
        sim.emit(
            Message.build(
                ("Event", "UpdateSMSSend"),
                ("Privilege", "all,smscommand"),
                ("ID", sms_id),
                ("Smsc", "+79000000000"),
                ("Status", "1" if ok else "0"),
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
    sms_id = f"0x{sim.rng.getrandbits(48):012x}"
    sim.record_sms(
        SentSms(
            via="dongle",
            device=device,
            number=action.get("Number") or "",
            text=action.get("Message") or "",
            sms_id=sms_id,
        )
    )
    session.send(
        response(
            "Success", action_id, ("Message", f"[{device}] SMS queued for send"), ("ID", sms_id)
        )
    )

    def report() -> None:
        sim.emit(
            Message.build(
                ("Event", "DongleSMSStatus"),
                ("Privilege", "call,all"),
                ("Device", device),
                ("ID", sms_id),
                ("Status", "Sent"),
            )
        )

    sim.deliver_sms_later(DONGLE_LANE, report)
