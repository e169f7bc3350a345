"""Login and the connection's own settings: Login, Challenge, Logoff, Ping, Events.

As the recorded Asterisk 20 does it: a failed login is answered ``Authentication
failed`` after ``auth_failure_delay`` and the connection closes; ``FullyBooted``
follows a login with events on; ``Logoff`` is answered ``Goodbye`` and closes.
"""

from __future__ import annotations

import asyncio
import hashlib

from vwell_pbx.protocol import Message, encode_message
from vwell_pbx.simulator.actions.base import ActionSession, Pairs, SessionEnd, response


async def login(session: ActionSession, action: Message, action_id: str | None) -> None:
    """``Login`` with ``Secret``, or ``AuthType: MD5`` and the ``Key`` of the last challenge."""
    if session.authenticated:
        session.send(response("Success", action_id, ("Message", "Already authenticated")))
        return
    sim = session.sim
    username = action.get("Username", "")
    if (action.get("AuthType") or "").lower() == "md5":
        expected = None
        if session.challenge is not None:
            expected = hashlib.md5(
                (session.challenge + sim.secret).encode(), usedforsecurity=False
            ).hexdigest()
        ok = expected is not None and (action.get("Key") or "").lower() == expected
    else:
        ok = action.get("Secret") == sim.secret
    if not ok or username != sim.username:
        await asyncio.sleep(sim.auth_failure_delay)
        session.send(response("Error", action_id, ("Message", "Authentication failed")))
        raise SessionEnd
    session.authenticated = True
    session.events_on = (action.get("Events") or "on").strip().lower() != "off"
    session.send(response("Success", action_id, ("Message", "Authentication accepted")))
    if session.events_on:
        uptime = str(int(sim.uptime))
        booted: Pairs = [("Event", "FullyBooted"), ("Privilege", "system,all")]
        if sim.dialect == "asterisk20":
            booted += [("Uptime", uptime), ("LastReload", uptime)]
        booted.append(("Status", "Fully Booted"))
        session.send(encode_message(booted))


async def challenge(session: ActionSession, action: Message, action_id: str | None) -> None:
    """``Challenge`` with ``AuthType: MD5``: a fresh numeric challenge for this connection."""
    if (action.get("AuthType") or "").lower() != "md5":
        session.send(response("Error", action_id, ("Message", "Must specify AuthType")))
        return
    session.challenge = str(session.sim.rng.randrange(100_000_000, 1_000_000_000))
    session.send(response("Success", action_id, ("Challenge", session.challenge)))


async def logoff(session: ActionSession, action: Message, action_id: str | None) -> None:
    """``Goodbye``, then the connection closes."""
    session.send(response("Goodbye", action_id, ("Message", "Thanks for all the fish.")))
    raise SessionEnd


async def ping(session: ActionSession, action: Message, action_id: str | None) -> None:
    """``Ping: Pong`` with the simulator's clock as ``Timestamp``."""
    session.send(
        response(
            "Success", action_id, ("Ping", "Pong"), ("Timestamp", f"{session.sim.clock():.6f}")
        )
    )


async def events(session: ActionSession, action: Message, action_id: str | None) -> None:
    """``Events`` with ``EventMask``: ``off`` silences this connection, anything else not."""
    mask = (action.get("EventMask") or "").strip().lower()
    if not mask:
        session.send(response("Error", action_id, ("Message", "Invalid event mask")))
        return
    session.events_on = mask != "off"
    session.send(response("Success", action_id, ("Events", "On" if session.events_on else "Off")))
