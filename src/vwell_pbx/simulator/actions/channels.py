"""Live channels: CoreShowChannels, Status, Getvar, Setvar, Hangup, Redirect, Atxfer.

Answers and error texts are those of the recorded Asterisk 20 (``Channel does not
exist: X`` for Redirect, ``No such channel`` for Hangup/Getvar/Status); the item events
come from the dialect (Asterisk 20 or Yeastar's 1.8).
"""

from __future__ import annotations

from typing import Final

from vwell_pbx.protocol import Message, encode_message
from vwell_pbx.simulator.actions.base import ActionSession, Pairs, response, with_action_id
from vwell_pbx.simulator.model import Channel

MAX_GLOBAL_VARS: Final = 10_000
"""Global variables kept (``Setvar`` without a channel); past it the oldest is forgotten."""


async def core_show_channels(
    session: ActionSession, action: Message, action_id: str | None
) -> None:
    """An event list of every live channel (``CoreShowChannel`` items)."""
    sim = session.sim
    now = sim.clock()
    out = [
        response("Success", action_id, ("EventList", "start"), ("Message", "Channels will follow"))
    ]
    channels = list(sim.engine.channels.values())
    for ch in channels:
        item = sim.engine.dialect.core_show_channel(ch, action_id, now)
        out.append(encode_message(item.headers))
    tail = with_action_id([("Event", "CoreShowChannelsComplete")], action_id)
    tail += [("EventList", "Complete"), ("ListItems", str(len(channels)))]
    out.append(encode_message(tail))
    session.send(b"".join(out))


async def status(session: ActionSession, action: Message, action_id: str | None) -> None:
    """``Status`` of one ``Channel`` or of all, with the ``Variables`` asked for."""
    sim = session.sim
    engine = sim.engine
    wanted = action.get("Channel")
    if wanted:
        found = engine.find(wanted)
        if found is None:
            session.send(response("Error", action_id, ("Message", "No such channel")))
            return
        channels = [found]
    else:
        channels = list(engine.channels.values())
    names = [v.strip() for v in (action.get("Variables") or "").split(",") if v.strip()]
    start: Pairs = [("EventList", "start")] if engine.dialect.status_has_eventlist else []
    out = [response("Success", action_id, *start, ("Message", "Channel status will follow"))]
    now = sim.clock()
    for ch in channels:
        out.append(encode_message(engine.dialect.status(ch, action_id, names, now).headers))
    out.append(encode_message(engine.dialect.status_complete(action_id, len(channels)).headers))
    session.send(b"".join(out))


def _variable(session: ActionSession, ch: Channel | None, name: str) -> str:
    upper = name.upper()
    if ch is not None:
        if upper == "CALLERID(NUM)":
            return ch.cid_num
        if upper == "CALLERID(NAME)":
            return ch.cid_name
        if upper == "CALLERID(ALL)":
            return f'"{ch.cid_name}" <{ch.cid_num}>'
        if upper == "UNIQUEID":
            return ch.uniqueid
        if name in ch.variables:
            return ch.variables[name]
    return session.sim.global_vars.get(name, "")


async def getvar(session: ActionSession, action: Message, action_id: str | None) -> None:
    """A channel variable (a few CALLERID/UNIQUEID functions too) or a global one."""
    name = action.get("Variable")
    if not name:
        session.send(response("Error", action_id, ("Message", "No variable specified")))
        return
    ch = None
    channel = action.get("Channel")
    if channel:
        ch = session.sim.engine.find(channel)
        if ch is None:
            session.send(response("Error", action_id, ("Message", "No such channel")))
            return
    value = _variable(session, ch, name)
    session.send(response("Success", action_id, ("Variable", name), ("Value", value)))


async def setvar(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Set a channel variable (``VarSet`` from the dialect) or a global one (bounded)."""
    name = action.get("Variable")
    value = action.get("Value", "") or ""
    if not name:
        session.send(response("Error", action_id, ("Message", "No variable specified")))
        return
    sim = session.sim
    channel = action.get("Channel")
    if channel:
        ch = sim.engine.find(channel)
        if ch is None:
            session.send(response("Error", action_id, ("Message", "No such channel")))
            return
        ch.variables[name] = value
        session.send(response("Success", action_id, ("Message", "Variable Set")))
        for event in sim.engine.dialect.varset(ch, name, value):
            sim.emit(event)
        return
    variables = sim.global_vars
    variables.pop(name, None)  # re-inserted last: the newest is kept longest
    variables[name] = value
    if len(variables) > MAX_GLOBAL_VARS:
        del variables[next(iter(variables))]
    session.send(response("Success", action_id, ("Message", "Variable Set")))
    sim.emit(
        Message.build(
            ("Event", "VarSet"),
            ("Privilege", "dialplan,all"),
            ("Channel", "none"),
            ("Uniqueid", "none"),
            ("Variable", name),
            ("Value", value),
        )
    )


async def hangup(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Hang up one channel, or (``Channel: /regex/``) every match, answered as a list."""
    engine = session.sim.engine
    channel = action.get("Channel")
    if not channel:
        session.send(response("Error", action_id, ("Message", "No channel specified")))
        return
    try:
        cause = int(action.get("Cause") or 16)
    except ValueError:
        cause = 16
    if len(channel) > 2 and channel.startswith("/") and channel.endswith("/"):
        matched = engine.match(channel[1:-1])
        out = [
            response(
                "Success",
                action_id,
                ("EventList", "start"),
                ("Message", "Channels hung up will follow"),
            )
        ]
        for ch in matched:
            item = with_action_id([("Event", "ChannelHungup"), ("Channel", ch.name)], action_id)
            out.append(encode_message(item))
        done = with_action_id([("Event", "ChannelsHungupListComplete")], action_id)
        done += [("EventList", "Complete"), ("ListItems", str(len(matched)))]
        out.append(encode_message(done))
        session.send(b"".join(out))
        for ch in matched:
            engine.hangup(ch, cause)
        return
    found = engine.find(channel)
    if found is None:
        session.send(response("Error", action_id, ("Message", "No such channel")))
        return
    session.send(response("Success", action_id, ("Message", "Channel Hungup")))
    engine.hangup(found, cause)


async def redirect(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Move a channel (and with ``ExtraChannel`` its peer) to context/exten/priority."""
    engine = session.sim.engine
    name = action.get("Channel")
    if not name:
        session.send(response("Error", action_id, ("Message", "Channel not specified")))
        return
    exten = action.get("Exten")
    if not exten:
        session.send(response("Error", action_id, ("Message", "Exten not specified")))
        return
    context = action.get("Context") or "default"
    try:
        priority = int(action.get("Priority") or 1)
    except ValueError:
        session.send(response("Error", action_id, ("Message", "Invalid priority")))
        return
    ch = engine.find(name)
    if ch is None:
        session.send(response("Error", action_id, ("Message", f"Channel does not exist: {name}")))
        return
    targets = {ch: (context, exten, priority)}
    extra_name = action.get("ExtraChannel")
    if extra_name:
        extra = engine.find(extra_name)
        if extra is None:
            session.send(
                response(
                    "Error", action_id, ("Message", f"ExtraChannel does not exist: {extra_name}")
                )
            )
            return
        try:
            extra_priority = int(action.get("ExtraPriority") or priority)
        except ValueError:
            extra_priority = priority
        targets[extra] = (
            action.get("ExtraContext") or context,
            action.get("ExtraExten") or exten,
            extra_priority,
        )
    message = "Dual Redirect successful" if extra_name else "Redirect successful"
    session.send(response("Success", action_id, ("Message", message)))
    engine.redirect(targets)


async def atxfer(session: ActionSession, action: Message, action_id: str | None) -> None:
    """Attended transfer of ``Channel``'s call to ``Exten`` (recording 19): answered at
    once, the transfer then runs as the PBX's feature would (``simulator.features``)."""
    sim = session.sim
    name = action.get("Channel")
    if not name:
        session.send(response("Error", action_id, ("Message", "No channel specified")))
        return
    exten = action.get("Exten")
    if not exten:
        session.send(response("Error", action_id, ("Message", "No extension specified")))
        return
    ch = sim.engine.find(name)
    if ch is None:
        message = ("Message", "Channel specified does not exist")
        session.send(response("Error", action_id, message))
        return
    session.send(response("Success", action_id, ("Message", "Atxfer successfully queued")))
    context = action.get("Context") or ch.context
    sim.scenarios.features.start_attended_transfer(ch, exten, context)
