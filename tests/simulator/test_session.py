"""Banner, login, permissions, framing corner cases and simple actions."""

from __future__ import annotations

import asyncio
import hashlib

from tests.support.ami_peer import Connect, keys
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.simulator.actions import ACTIONS, PRE_LOGIN
from vwell_pbx.simulator.actions.system import COMMAND_HELP


async def test_banner_login_fullybooted_ping_logoff(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect()
    banner = await client.banner()
    assert banner.line == "Asterisk Call Manager/9.0.0"
    client.send(
        ("Action", "Login"),
        ("ActionID", "a1"),
        ("Username", "admin"),
        ("Secret", "admin"),
        ("Events", "on"),
    )
    response = await client.next()
    assert response.headers == (
        ("Response", "Success"),
        ("ActionID", "a1"),
        ("Message", "Authentication accepted"),
    )
    booted = await client.next()
    assert keys(booted) == ["Event", "Privilege", "Uptime", "LastReload", "Status"]
    assert booted.get("Status") == "Fully Booted"
    pong = await client.action(("Action", "Ping"), ("ActionID", "p1"))
    assert keys(pong) == ["Response", "ActionID", "Ping", "Timestamp"]
    assert pong.get("Ping") == "Pong"
    float(pong.get("Timestamp") or "x")
    bye = await client.action(("Action", "Logoff"), ("ActionID", "bye"))
    assert bye.headers == (
        ("Response", "Goodbye"),
        ("ActionID", "bye"),
        ("Message", "Thanks for all the fish."),
    )
    assert await client.closed()


async def test_md5_challenge_login(connect: Connect) -> None:
    client = await connect()
    await client.banner()
    challenge = await client.action(("Action", "Challenge"), ("ActionID", "c"), ("AuthType", "MD5"))
    assert keys(challenge) == ["Response", "ActionID", "Challenge"]
    digits = challenge.get("Challenge") or ""
    assert digits.isdigit()
    key = hashlib.md5((digits + "admin").encode()).hexdigest()
    answer = await client.action(
        ("Action", "Login"),
        ("ActionID", "l"),
        ("AuthType", "MD5"),
        ("Username", "admin"),
        ("Key", key),
        ("Events", "off"),
    )
    assert answer.get("Message") == "Authentication accepted"
    again = await client.action(
        ("Action", "Login"), ("ActionID", "l2"), ("Username", "admin"), ("Secret", "admin")
    )
    assert again.get("Message") == "Already authenticated"


async def test_bad_auth_type(connect: Connect) -> None:
    client = await connect()
    await client.banner()
    answer = await client.action(("Action", "Challenge"), ("ActionID", "c"), ("AuthType", "SHA1"))
    assert answer.headers == (
        ("Response", "Error"),
        ("ActionID", "c"),
        ("Message", "Must specify AuthType"),
    )


async def test_failed_logins_wait_then_close(pbx: PbxSimulator, connect: Connect) -> None:
    loop = asyncio.get_running_loop()
    for pairs in (
        [("Username", "admin"), ("Secret", "wrong")],
        [("Username", "nosuchuser"), ("Secret", "admin")],
        [("AuthType", "MD5"), ("Username", "admin"), ("Key", "0" * 32)],
    ):
        client = await connect()
        await client.banner()
        started = loop.time()
        answer = await client.action(("Action", "Login"), ("ActionID", "x"), *pairs)
        assert loop.time() - started >= pbx.auth_failure_delay * 0.9
        assert answer.headers == (
            ("Response", "Error"),
            ("ActionID", "x"),
            ("Message", "Authentication failed"),
        )
        assert await client.closed()


async def test_before_login_only_login_challenge_logoff(connect: Connect) -> None:
    client = await connect()
    await client.banner()
    for action in ("Ping", "CoreShowChannels", "Originate", "NoSuchAction"):
        answer = await client.action(("Action", action), ("ActionID", action))
        assert answer.headers == (
            ("Response", "Error"),
            ("ActionID", action),
            ("Message", "Permission denied"),
        )
    bye = await client.action(("Action", "Logoff"), ("ActionID", "b"))
    assert bye.name == "Goodbye"
    assert await client.closed()


async def test_framing_corner_cases(connect: Connect) -> None:
    client = await connect(login=True, events="off")
    client.send_raw(b"ACTION: PING\r\nACTIONID: upper\r\n\r\n")
    assert (await client.response("upper")).get("Ping") == "Pong"
    client.send_raw(b"action: ping\nactionid: lf-only\n\n")
    assert (await client.response("lf-only")).get("Ping") == "Pong"
    client.send_raw(b"\r\n\r\nAction: Ping\r\nActionID: after-blanks\r\n\r\n")
    first, second, third = await client.next(), await client.next(), await client.next()
    assert (
        first.headers
        == second.headers
        == (("Response", "Error"), ("Message", "Missing action in request"))
    )
    assert third.action_id == "after-blanks"
    client.send_raw(b"Action: Ping\r\nActionID: p1\r\n\r\nAction: Ping\r\nActionID: p2\r\n\r\n")
    assert [(await client.next()).action_id for _ in range(2)] == ["p1", "p2"]
    client.send_raw(b"ActionID: no-action\r\nFoo: bar\r\n\r\n")
    assert (await client.next()).headers == (
        ("Response", "Error"),
        ("ActionID", "no-action"),
        ("Message", "Missing action in request"),
    )
    client.send_raw(b"Action: Ping\r\n\r\n")
    assert keys(await client.next()) == ["Response", "Ping", "Timestamp"]  # no ActionID
    unknown = await client.action(("Action", "NoSuchAction"), ("ActionID", "u"))
    assert unknown.get("Message") == (
        "Invalid/unknown command: NoSuchAction. "
        "Use Action: ListCommands to show available commands."
    )


async def test_events_off_and_on(pbx: PbxSimulator, connect: Connect) -> None:
    quiet = await connect(login=True, events="off")
    loud = await connect(login=True)
    off = await loud.action(("Action", "Events"), ("ActionID", "e1"), ("EventMask", "off"))
    assert off.headers == (("Response", "Success"), ("ActionID", "e1"), ("Events", "Off"))
    await loud.action(("Action", "UserEvent"), ("ActionID", "u1"), ("UserEvent", "Silent"))
    on = await loud.action(("Action", "Events"), ("ActionID", "e2"), ("EventMask", "on"))
    assert on.get("Events") == "On"
    sent = await loud.action(
        ("Action", "UserEvent"),
        ("ActionID", "u2"),
        ("UserEvent", "Lab"),
        ("Header1", "first"),
        ("Header1", "second"),
    )
    assert sent.get("Message") == "Event Sent"
    event = await loud.event(lambda m: m.name == "UserEvent")
    assert event.get("UserEvent") == "Lab" and event.get_all("Header1") == ["first", "second"]
    assert event.action_id == "u2"
    # The quiet connection got nothing; a Ping proves its stream is empty up to now.
    assert (await quiet.action(("Action", "Ping"), ("ActionID", "q"))).action_id == "q"
    assert quiet.events == []


async def test_setvar_getvar_and_idle_lists(connect: Connect) -> None:
    client = await connect(login=True, events="off")
    setvar = await client.action(
        ("Action", "Setvar"), ("ActionID", "s"), ("Variable", "LABVAR"), ("Value", "hello world")
    )
    assert setvar.get("Message") == "Variable Set"
    got = await client.action(("Action", "Getvar"), ("ActionID", "g"), ("Variable", "LABVAR"))
    assert got.headers == (
        ("Response", "Success"),
        ("ActionID", "g"),
        ("Variable", "LABVAR"),
        ("Value", "hello world"),
    )
    missing = await client.action(
        ("Action", "Getvar"),
        ("ActionID", "g2"),
        ("Channel", "SIP/nosuch-00000001"),
        ("Variable", "X"),
    )
    assert missing.get("Message") == "No such channel"
    channels = await client.action(("Action", "CoreShowChannels"), ("ActionID", "c"))
    assert channels.headers == (
        ("Response", "Success"),
        ("ActionID", "c"),
        ("EventList", "start"),
        ("Message", "Channels will follow"),
    )
    done = await client.next()
    assert done.headers == (
        ("Event", "CoreShowChannelsComplete"),
        ("ActionID", "c"),
        ("EventList", "Complete"),
        ("ListItems", "0"),
    )
    status = await client.action(("Action", "Status"), ("ActionID", "st"))
    assert status.get("Message") == "Channel status will follow"
    complete = await client.next()
    assert keys(complete) == ["Event", "ActionID", "EventList", "ListItems", "Items"]
    core = await client.action(("Action", "CoreStatus"), ("ActionID", "cs"))
    assert core.get("CoreCurrentCalls") == "0"
    settings = await client.action(("Action", "CoreSettings"), ("ActionID", "cset"))
    assert settings.get("AsteriskVersion") == "20.20.1"
    commands = await client.action(("Action", "ListCommands"), ("ActionID", "lc"))
    assert "Originate" in commands and "smscommand" in commands


async def test_actions_received_records_everything(pbx: PbxSimulator, connect: Connect) -> None:
    client = await connect(login=True, events="off")
    await client.action(("Action", "Ping"), ("ActionID", "rec"), ("X-Extra", "1"))
    names = [a.name for a in pbx.actions_received]
    assert names == ["Login", "Ping"]
    assert pbx.actions_received[-1].get("X-Extra") == "1"


def test_every_listed_command_has_a_handler_and_back() -> None:
    listed = {name.lower() for name, _, _ in COMMAND_HELP}
    assert listed == set(ACTIONS)
    assert set(ACTIONS) >= PRE_LOGIN


async def test_a_blank_action_id_is_no_action_id(connect: Connect) -> None:
    client = await connect(login=True, events="off")
    client.send_raw(b"Action: Ping\r\nActionID:   \r\n\r\nActionID: \r\nFoo: x\r\n\r\n")
    pong, missing = await client.next(), await client.next()
    assert keys(pong) == ["Response", "Ping", "Timestamp"]
    assert missing.headers == (("Response", "Error"), ("Message", "Missing action in request"))
