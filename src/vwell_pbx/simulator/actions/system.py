"""The PBX as a whole: Command (the CLI), CoreStatus, CoreSettings, UserEvent, ListCommands.

``Command`` runs the simulated CLI (``simulator.commands``; GSM lines in
``simulator.gsm``) and answers in the simulator's ``command_format``: ``Output:``
headers (Asterisk 14+) or the old ``Response: Follows`` text ended by
``--END COMMAND--`` (Asterisk <= 13, Yeastar).
"""

from __future__ import annotations

import time
from typing import Final

from vwell_pbx.protocol import Message, encode_message
from vwell_pbx.simulator.actions.base import ActionSession, Pairs, response, with_action_id
from vwell_pbx.simulator.actions.sms import cli_send_sms, sms_turn
from vwell_pbx.simulator.commands import CliState, run_command
from vwell_pbx.simulator.gsm import SendSmsCommand, SmsFault

# (action, synopsis, privilege) as ListCommands prints them.
COMMAND_HELP: Final = (
    ("Atxfer", "Attended transfer.", "call,all"),
    ("Challenge", "Generate Challenge for MD5 Auth.", "<none>"),
    ("Command", "Execute Asterisk CLI Command.", "command,all"),
    ("CoreSettings", "Show PBX core settings (version etc).", "system,reporting,all"),
    ("CoreShowChannels", "List currently active channels.", "system,reporting,all"),
    ("CoreStatus", "Show PBX core status variables.", "system,reporting,all"),
    ("DongleSendSMS", "Send a SMS message.", "call,all"),
    ("Events", "Control Event Flow.", "<none>"),
    ("Getvar", "Gets a channel variable or function value.", "call,reporting,all"),
    ("Hangup", "Hangup channel.", "system,call,all"),
    ("ListCommands", "List available manager commands.", "<none>"),
    ("Login", "Login Manager.", "<none>"),
    ("Logoff", "Logoff Manager.", "<none>"),
    ("Originate", "Originate a call.", "originate,all"),
    ("Ping", "Keepalive command.", "<none>"),
    ("Redirect", "Redirect (transfer) a call.", "call,all"),
    ("Setvar", "Sets a channel variable or function value.", "call,all"),
    ("smscommand", "Send an SMS through a GSM span.", "call,all"),
    ("Status", "List channel status.", "system,call,reporting,all"),
    ("UserEvent", "Send an arbitrary event.", "user,all"),
)


def _cli_state(session: ActionSession, sms_fault: SmsFault | None = None) -> CliState:
    sim = session.sim

    def send_sms(span_number: int, number: str, text: str) -> list[str]:
        # MyPBX's ``gsm send sms`` (actions.sms): the SMS side of the simulator.
        return cli_send_sms(sim, SendSmsCommand(span_number, number, text, None), sms_fault)

    return CliState(
        dialect=sim.dialect,
        gsm=sim.gsm,
        channels=lambda: list(sim.engine.channels.values()),
        calls_processed=lambda: sim.engine.calls_processed,
        uptime=lambda: sim.uptime,
        spans=lambda: sim.spans,
        send_sms=send_sms,
    )


async def command(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Run one CLI line; an unknown one is ``Response: Error`` with ``No such command``."""
    line = (action.get("Command") or "").strip()
    if not line:
        session.send(response("Error", action_id, ("Message", "No command provided")))
        return
    sms_fault = None
    if [word.lower() for word in line.split()[:3]] == ["gsm", "send", "sms"]:
        sms_fault = await sms_turn(session.sim)  # a slow or failing GSM module
    result = run_command(_cli_state(session, sms_fault), line)
    if sms_fault == "no_answer":
        return  # the SMS went out (if it could); the answer never does
    if session.sim.command_format == "follows":
        headers = with_action_id([("Response", "Follows"), ("Privilege", "Command")], action_id)
        session.send(encode_message(headers, output=result.lines))
        return
    outputs = [("Output", line) for line in (result.lines or [""])]
    session.send(
        response(
            "Success" if result.known else "Error",
            action_id,
            ("Message", "Command output follows"),
            *outputs,
        )
    )


async def core_status(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Start-up time and call counters."""
    sim = session.sim
    started = time.gmtime(sim.started_at)
    day, clock = time.strftime("%Y-%m-%d", started), time.strftime("%H:%M:%S", started)
    calls = len({ch.linkedid for ch in sim.engine.channels.values()})
    session.send(
        response(
            "Success",
            action_id,
            ("CoreStartupDate", day),
            ("CoreStartupTime", clock),
            ("CoreReloadDate", day),
            ("CoreReloadTime", clock),
            ("CoreCurrentCalls", str(calls)),
            ("CoreProcessedCalls", str(sim.engine.calls_processed)),
        )
    )


async def core_settings(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Versions and core settings of the imitated PBX."""
    sim = session.sim
    version = "20.20.1" if sim.dialect == "asterisk20" else "1.8.20.0"
    session.send(
        response(
            "Success",
            action_id,
            ("AMIversion", sim.ami_version),
            ("AsteriskVersion", version),
            ("SystemName", ""),
            ("CoreMaxCalls", "0"),
            ("CoreMaxLoadAvg", "0.000000"),
            ("CoreRunUser", ""),
            ("CoreRunGroup", ""),
            ("CoreMaxFilehandles", "0"),
            ("CoreRealTimeEnabled", "No"),
            ("CoreCDRenabled", "No"),
            ("CoreHTTPenabled", "Yes"),
            ("SoundsSearchCustomDir", "No"),
        )
    )


async def user_event(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Emit ``Event: UserEvent`` to every listener, with the action's other headers."""
    name = action.get("UserEvent")
    if not name:
        session.send(response("Error", action_id, ("Message", "UserEvent not specified")))
        return
    session.send(response("Success", action_id, ("Message", "Event Sent")))
    headers: Pairs = [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name)]
    headers = with_action_id(headers, action_id)
    headers += [
        (k, v) for k, v in action.headers if k.lower() not in ("action", "actionid", "userevent")
    ]
    session.sim.emit(Message(headers=tuple(headers)))


async def list_commands(session: ActionSession, action: Message, action_id: str | None) -> None:
    """The actions this simulator knows, as ``Name: synopsis  (Priv: ...)`` headers."""
    sim = session.sim
    pairs = [
        (name, f"{text}  (Priv: {priv})")
        for name, text, priv in COMMAND_HELP
        if (name != "smscommand" or sim.tg_sms) and (name != "DongleSendSMS" or sim.dongle)
    ]
    session.send(response("Success", action_id, *pairs))
