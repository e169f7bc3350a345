"""Actions over a live connection: correlation, event lists, Command output, Originate
followups, timeouts, bounds, write_action, wait_event, listeners and event streams.

Answers are replayed byte for byte from the recorded Asterisk 20 transcripts wherever a
transcript has them (only the ActionID is swapped for the one the client generated).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from tests.support.transcripts import replay_answer, retarget
from tests.support.waiting import until
from vwell_pbx.ami import (
    ORIGINATE_RESULT_EVENTS,
    ActionTimeout,
    AmiClient,
    AmiSettings,
    PbxUnavailable,
    TooManyPending,
)
from vwell_pbx.protocol import LocalProtocolError, Message, encode_message


def replayer(transcript: str, recorded_id: str, *, chunk: int | None = None):
    """A handler answering with the recorded answer to ``recorded_id``."""
    text = replay_answer(transcript, recorded_id)

    async def handler(conn, action: Message) -> None:
        data = retarget(text, recorded_id, action.action_id)
        if chunk is None:
            conn.send(data)
            return
        for start in range(0, len(data), chunk):  # one message spread over many reads
            conn.send(data[start : start + chunk])
            await conn.writer.drain()
            await asyncio.sleep(0)

    return handler


# -- correlation ------------------------------------------------------------------------


async def test_colliding_caller_action_ids_never_cross(pbx, make_client) -> None:
    received: list[tuple[object, Message]] = []

    def getvar(conn, action: Message) -> None:
        received.append((conn, action))
        if len(received) == 2:  # answer in reverse order
            for c, a in reversed(received):
                c.reply(
                    a,
                    ("Variable", a.get("Variable") or ""),
                    ("Value", f"value-of-{a.get('Variable')}"),
                )

    pbx.on("Getvar", getvar)
    client = await make_client(pbx)
    first, second = await asyncio.gather(
        client.send_action(
            [("Action", "Getvar"), ("ActionID", "same"), ("Variable", "A")], timeout=2
        ),
        client.send_action(
            [("Action", "Getvar"), ("Variable", "B"), ("actionid", "same")], timeout=2
        ),
    )
    assert first.response.get("Value") == "value-of-A"
    assert second.response.get("Value") == "value-of-B"
    wire_ids = [a.get_all("ActionID") for _, a in received]
    assert all(len(ids) == 1 for ids in wire_ids)  # the caller's ActionID was dropped
    assert {first.action_id, second.action_id} == {ids[0] for ids in wire_ids}
    assert first.action_id != second.action_id
    assert "same" not in (first.action_id, second.action_id)
    # ActionID goes right after Action; the caller's other fields keep their order.
    assert received[0][1].headers[1][0] == "ActionID"


async def test_injected_action_ids(pbx, make_client) -> None:
    ids = iter(f"fixed-{n}" for n in range(1000))
    client = await make_client(pbx, client_kwargs={"action_ids": lambda: next(ids)})
    result = await client.send_action([("Action", "Ping")], timeout=2)
    assert result.action_id.startswith("fixed-")
    assert pbx.received("Ping")[-1].action_id == result.action_id


async def test_unsolicited_responses_are_dropped(
    pbx, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vwell_pbx.ami")

    def core_status(conn, action: Message) -> None:
        conn.send("Response: Error\r\nMessage: Missing action in request\r\n\r\n\r\n")
        conn.send("Response: Success\r\nActionID: somebody-else-7\r\nPing: Pong\r\n\r\n")
        conn.reply(action, ("CoreCurrentCalls", "0"))

    pbx.on("CoreStatus", core_status)
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action([("Action", "CoreStatus")], timeout=2)
    assert result.ok and result.response.get("CoreCurrentCalls") == "0"
    assert "unsolicited response Error" in caplog.text
    assert "somebody-else-7" in caplog.text
    assert not [m for m in seen if m.get("Response")]


# -- event lists ---------------------------------------------------------------------------


async def test_core_show_channels_list_from_transcript_06(pbx, make_client) -> None:
    pbx.on("CoreShowChannels", replayer("06", "conn1-2", chunk=97))
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action([("Action", "CoreShowChannels")], timeout=2)
    assert result.ok
    assert result.response.get("EventList") == "start"
    assert [e.name for e in result.events] == ["CoreShowChannel"] * 3
    assert [e.get("Channel") for e in result.events] == [
        "SIP/267-00000000",
        "Local/100@DLPN_DialPlan269-00000001;2",
        "Local/100@DLPN_DialPlan269-00000001;1",
    ]
    assert result.complete is not None
    assert result.complete.name == "CoreShowChannelsComplete"
    assert result.complete.get("ListItems") == "3"
    assert not [m for m in seen if m.action_id == result.action_id]  # items are ours only


async def test_empty_list_from_transcript_05(pbx, make_client) -> None:
    pbx.on("CoreShowChannels", replayer("05", "conn1-3"))
    client = await make_client(pbx)
    result = await client.send_action([("Action", "CoreShowChannels")], timeout=2)
    assert result.events == ()
    assert result.complete is not None and result.complete.get("ListItems") == "0"


async def test_hangup_regex_list_from_transcript_07(pbx, make_client) -> None:
    pbx.on("Hangup", replayer("07", "conn1-5"))
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action(
        [("Action", "Hangup"), ("Channel", r"/^Local\/.*$/"), ("Cause", "17")], timeout=2
    )
    assert [e.get("Channel") for e in result.events] == [
        "Local/100@DLPN_DialPlan269-00000003;1",
        "Local/100@DLPN_DialPlan269-00000003;2",
    ]
    assert result.complete is not None
    assert result.complete.name == "ChannelsHungupListComplete"
    await until(lambda: any(m.name == "VarSet" for m in seen))
    names = {m.name for m in seen}
    assert "SoftHangupRequest" in names  # the call's own events still reach listeners
    assert "ChannelHungup" not in names and "ChannelsHungupListComplete" not in names


async def test_legacy_list_without_eventlist_header(pbx, make_client) -> None:
    def status(conn, action: Message) -> None:
        conn.reply(action, ("Message", "Channel status will follow"))
        for n in (1, 2):
            conn.event(
                "Status", ("Channel", f"SIP/10{n}-0000000{n}"), ("ActionID", action.action_id or "")
            )
        conn.event("StatusComplete", ("ActionID", action.action_id or ""), ("Items", "2"))

    pbx.on("Status", status)
    client = await make_client(pbx)
    result = await client.send_action([("Action", "Status")], timeout=2)
    assert [e.get("Channel") for e in result.events] == ["SIP/101-00000001", "SIP/102-00000002"]
    assert result.complete is not None and result.complete.get("Items") == "2"


async def test_on_answer_sees_a_list_in_stream_order(
    pbx, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    """The list and the events after it arrive in one read: ``on_answer`` runs before
    listeners see those events, and before the caller resumes."""

    def status(conn, action: Message) -> None:
        action_id = action.action_id or ""
        conn.send(
            encode_message(
                [("Response", "Success"), ("ActionID", action_id), ("EventList", "start")]
            )
            + encode_message(
                [("Event", "Status"), ("Channel", "SIP/101-1"), ("ActionID", action_id)]
            )
            + encode_message(
                [("Event", "StatusComplete"), ("ActionID", action_id), ("EventList", "Complete")]
            )
            + encode_message([("Event", "Hangup"), ("Channel", "SIP/101-1")])
        )

    pbx.on("Status", status)
    client = await make_client(pbx)
    order: list[str] = []
    client.add_listener(lambda m: order.append(f"event {m.name}"))

    def on_answer(result) -> None:
        order.append(f"answer {[e.get('Channel') for e in result.events]}")

    result = await client.send_action([("Action", "Status")], timeout=2, on_answer=on_answer)
    order.append("caller resumed")
    assert order[:2] == ["answer ['SIP/101-1']", "event Hangup"]
    assert order[-1] == "caller resumed"
    assert result.complete is not None

    def broken(result) -> None:
        raise RuntimeError("callback bug")

    again = await client.send_action([("Action", "Status")], timeout=2, on_answer=broken)
    assert again.complete is not None  # the caller still gets its answer
    assert "callback bug" in caplog.text and client.connected


# -- Command ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        (
            "cmd-version",
            True,
            "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on "
            "2026-11-28 03:58:35 UTC",
        ),
        ("cmd-empty-output", True, ""),
        ("cmd-uptime", True, "System uptime: 52\nLast reload: 52"),
        (
            "cmd-nonexistent",
            False,
            "No such command 'gsm send sms 1 123 \"hi\"' (type 'core show "
            "help gsm send' for other possible commands)",
        ),
    ],
)
async def test_command_output_headers_from_transcript_08(
    pbx, make_client, case: tuple[str, bool, str]
) -> None:
    recorded_id, ok, expected = case
    pbx.on("Command", replayer("08", recorded_id))
    client = await make_client(pbx)
    result = await client.send_action([("Action", "Command"), ("Command", "x")], timeout=2)
    assert result.ok is ok  # Response: Error is returned, not raised
    assert result.output == expected


async def test_command_multiline_output_spanning_reads(pbx, make_client) -> None:
    pbx.on("Command", replayer("08", "cmd-dialplan"))
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Command"), ("Command", "dialplan show DLPN_DialPlan269")], timeout=2
    )
    assert result.output is not None
    lines = result.output.split("\n")
    assert lines[0] == "[ Context 'DLPN_DialPlan269' created by 'pbx_config' ]"
    assert lines[1].startswith("  '100' =>")  # leading spaces kept
    assert lines[-2] == ""  # an empty "Output: " line is an empty line
    assert lines[-1] == "-= 10 extensions (31 priorities) in 1 context. =-"


async def test_command_old_follows_format(pbx, make_client) -> None:
    def command(conn, action: Message) -> None:
        conn.send(
            encode_message(
                [
                    ("Response", "Follows"),
                    ("Privilege", "Command"),
                    ("ActionID", action.action_id or ""),
                ],
                output=[
                    "GSM span 2: Power on, Provisioned, Up, Active,Standard",
                    "",
                    "  indented: with colon",
                ],
            )
        )

    pbx.on("Command", command)
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Command"), ("Command", "gsm show spans")], timeout=2
    )
    assert result.ok
    assert result.output == (
        "GSM span 2: Power on, Provisioned, Up, Active,Standard\n\n  indented: with colon"
    )


# -- Originate -------------------------------------------------------------------------------


async def test_async_originate_followup_from_transcript_06(pbx, make_client) -> None:
    pbx.on("Originate", replayer("06", "orig-async-1"))
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action(
        [
            ("Action", "Originate"),
            ("Channel", "Local/100@DLPN_DialPlan269"),
            ("Context", "DLPN_DialPlan269"),
            ("Exten", "267"),
            ("Priority", "1"),
            ("Async", "yes"),
        ],
        timeout=2,
        followup="OriginateResponse",
        followup_timeout=2,
    )
    assert result.ok and result.response.get("Message") == "Originate successfully queued"
    assert result.followup is not None
    event = await result.followup
    assert event.name == "OriginateResponse"
    assert event.get("Response") == "Success" and event.get("Reason") == "4"
    assert event.action_id == result.action_id
    # A real PBX event: listeners get it too.
    await until(lambda: any(m.name == "OriginateResponse" for m in seen))


async def test_async_originate_failure_followup_case_insensitive(pbx, make_client) -> None:
    text = replay_answer("09", "orig-async-chanunavail")
    pbx.on(
        "Originate",
        lambda conn, action: conn.send(retarget(text, "orig-async-chanunavail", action.action_id)),
    )
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate"), ("Async", "yes")],
        timeout=2,
        followup="originateresponse",
        followup_timeout=2,
    )
    assert result.followup is not None
    event = await asyncio.wait_for(result.followup, 2)
    assert event.get("Response") == "Failure" and event.get("Reason") == "0"
    assert event.get("Uniqueid") == "<unknown>"


async def test_originate_error_has_no_followup(pbx, make_client) -> None:
    pbx.on("Originate", replayer("09", "orig-bad-context"))
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate"), ("Async", "yes")],
        timeout=2,
        followup="OriginateResponse",
        followup_timeout=2,
    )
    assert not result.ok
    assert result.response.get("Message") == "Extension does not exist."
    assert result.followup is None


async def test_sync_originate_response_among_events(pbx, make_client) -> None:
    pbx.on("Originate", replayer("09", "orig-sync-app"))
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action([("Action", "Originate"), ("Application", "Wait")], timeout=2)
    assert result.ok and result.events == ()
    await until(lambda: any(m.name == "Newchannel" for m in seen))


async def test_followup_overtaking_its_response(pbx, make_client) -> None:
    def originate(conn, action: Message) -> None:
        conn.event(
            "OriginateResponse",
            ("ActionID", action.action_id or ""),
            ("Response", "Success"),
            ("Reason", "4"),
        )
        conn.reply(action, ("Message", "Originate successfully queued"))

    pbx.on("Originate", originate)
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate")], timeout=2, followup="OriginateResponse", followup_timeout=2
    )
    assert result.followup is not None
    assert (await asyncio.wait_for(result.followup, 1)).get("Reason") == "4"


def legacy_originate_result(
    conn, action: Message, name: str, *, reason: str, uniqueid: str, action_id: str | None = None
) -> None:
    """Asterisk 1.4's report of an async Originate (manager.c ``fast_originate``)."""
    conn.event(
        name,
        ("Privilege", "call,all"),
        ("ActionID", action.action_id if action_id is None else action_id),
        ("Channel", "SIP/269"),
        ("Context", "DLPN_DialPlan269"),
        ("Exten", "267"),
        ("Reason", reason),
        ("Uniqueid", uniqueid),
        ("CallerID", "267"),
        ("CallerIDNum", "267"),
        ("CallerIDName", "<unknown>"),
    )


@pytest.mark.parametrize(
    "report",
    [("OriginateSuccess", "4", "1505301523.6253"), ("OriginateFailure", "5", "<null>")],
)
async def test_asterisk_14_result_events_resolve_the_originate_followup(
    pbx, make_client, report: tuple[str, str, str]
) -> None:
    name, reason, uniqueid = report

    def originate(conn, action: Message) -> None:
        conn.reply(action, ("Message", "Originate successfully queued"))
        # Another action's result first: same names, other ActionID, must not match.
        legacy_originate_result(
            conn, action, name, reason="0", uniqueid="<null>", action_id="someone-else"
        )
        legacy_originate_result(conn, action, name, reason=reason, uniqueid=uniqueid)

    pbx.on("Originate", originate)
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    result = await client.send_action(
        [("Action", "Originate"), ("Async", "yes")],
        timeout=2,
        followup=ORIGINATE_RESULT_EVENTS,
        followup_timeout=2,
    )
    assert result.followup is not None
    event = await asyncio.wait_for(result.followup, 1)
    assert (event.name, event.action_id) == (name, result.action_id)
    assert (event.get("Reason"), event.get("Uniqueid")) == (reason, uniqueid)
    # Real PBX events: listeners get both, the followup took the one with our ActionID.
    await until(lambda: len([m for m in seen if m.name == name]) == 2)


async def test_asterisk_14_result_event_overtaking_its_response(pbx, make_client) -> None:
    def originate(conn, action: Message) -> None:
        legacy_originate_result(conn, action, "OriginateFailure", reason="3", uniqueid="<null>")
        conn.reply(action, ("Message", "Originate successfully queued"))

    pbx.on("Originate", originate)
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate")], timeout=2, followup=ORIGINATE_RESULT_EVENTS, followup_timeout=2
    )
    assert result.followup is not None
    event = await asyncio.wait_for(result.followup, 1)
    assert (event.name, event.get("Reason")) == ("OriginateFailure", "3")


async def test_a_followup_for_one_name_ignores_the_others(pbx, make_client) -> None:
    def originate(conn, action: Message) -> None:
        conn.reply(action, ("Message", "Originate successfully queued"))
        legacy_originate_result(conn, action, "OriginateSuccess", reason="4", uniqueid="1.1")

    pbx.on("Originate", originate)
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate")], timeout=2, followup="OriginateResponse", followup_timeout=0.1
    )
    assert result.followup is not None
    with pytest.raises(ActionTimeout, match=r"no OriginateResponse event"):
        await result.followup


async def test_followup_timeout(pbx, make_client) -> None:
    pbx.on(
        "Originate",
        lambda conn, action: conn.reply(action, ("Message", "Originate successfully queued")),
    )
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate")], timeout=2, followup="OriginateResponse", followup_timeout=0.1
    )
    assert result.followup is not None
    started = time.monotonic()
    with pytest.raises(ActionTimeout, match=r"(?i)originateresponse"):
        await result.followup
    assert time.monotonic() - started < 1.0
    several = await client.send_action(
        [("Action", "Originate")], timeout=2, followup=ORIGINATE_RESULT_EVENTS, followup_timeout=0.1
    )
    assert several.followup is not None
    with pytest.raises(
        ActionTimeout, match=r"no OriginateResponse or OriginateSuccess or OriginateFailure event"
    ):
        await several.followup


async def test_followup_fails_on_connection_loss(pbx, make_client) -> None:
    def originate(conn, action: Message) -> None:
        conn.reply(action, ("Message", "Originate successfully queued"))

    pbx.on("Originate", originate)
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate")], timeout=2, followup="OriginateResponse", followup_timeout=30
    )
    assert result.followup is not None
    pbx.connections[-1].abort()
    with pytest.raises(PbxUnavailable, match="lost"):
        await asyncio.wait_for(result.followup, 1)


async def test_unawaited_failed_followup_is_not_reported(
    pbx, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    pbx.on("Originate", lambda conn, action: conn.reply(action, ("Message", "queued")))
    client = await make_client(pbx)
    result = await client.send_action(
        [("Action", "Originate")], timeout=2, followup="OriginateResponse", followup_timeout=0.05
    )
    followup = result.followup
    assert followup is not None
    await asyncio.wait({followup}, timeout=2)  # without retrieving its exception
    assert followup.done()
    del result, followup
    gc.collect()
    assert "exception was never retrieved" not in caplog.text


# -- timeouts and bounds ---------------------------------------------------------------------


async def test_timeout_removes_pending_and_drops_late_answer(pbx, make_client) -> None:
    late: list[tuple[object, Message]] = []
    pbx.on("CoreShowChannels", lambda conn, action: late.append((conn, action)))
    client = await make_client(pbx, max_pending=1)
    seen: list[Message] = []
    client.add_listener(seen.append)
    started = time.monotonic()
    with pytest.raises(ActionTimeout, match="CoreShowChannels"):
        await client.send_action([("Action", "CoreShowChannels")], timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 0.5
    # The late answer (an event list) is dropped whole: no items reach listeners.
    conn, action = late[0]
    conn.reply(action, ("EventList", "start"), ("Message", "Channels will follow"))
    conn.event("CoreShowChannel", ("ActionID", action.action_id or ""), ("Channel", "late"))
    conn.event(
        "CoreShowChannelsComplete",
        ("ActionID", action.action_id or ""),
        ("EventList", "Complete"),
        ("ListItems", "1"),
    )
    conn.event("Marker")
    # The slot was freed (max_pending=1) and the connection is still fine.
    result = await client.send_action([("Action", "Ping")], timeout=2)
    assert result.response.get("Ping") == "Pong"
    await until(lambda: any(m.name == "Marker" for m in seen))
    assert [m.name for m in seen if m.name != "FullyBooted"] == ["Marker"]


async def test_too_many_pending(pbx, make_client) -> None:
    pbx.on("CoreStatus", lambda conn, action: None)  # never answers
    client = await make_client(pbx, max_pending=2)
    waiting = [
        asyncio.create_task(client.send_action([("Action", "CoreStatus")], timeout=1))
        for _ in range(2)
    ]
    await asyncio.sleep(0.01)
    with pytest.raises(TooManyPending):
        await client.send_action([("Action", "CoreStatus")], timeout=1)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    # Cancelled callers free their slots.
    assert (await client.send_action([("Action", "Ping")], timeout=1)).ok


async def _timed(client: AmiClient, action: str, seconds: float) -> tuple[float, float]:
    """Send an action nobody answers; (its timeout, loop seconds until ActionTimeout)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ActionTimeout, match=action):
        await client.send_action([("Action", action)], timeout=seconds)
    return seconds, loop.time() - started


# Generous: the machine is shared. A wrong sweep is far off either bound (an action
# timed out with the earliest deadline is early; one that waits for the next action's
# deadline, or for a timer never re-armed, is late by 0.2 s or more).
LATE_ALLOWED = 0.15


async def test_concurrent_actions_each_time_out_at_their_own_deadline(pbx, make_client) -> None:
    pbx.on("CoreStatus", lambda conn, action: None)  # never answers
    client = await make_client(pbx, max_pending=20)
    # Started in an order where later actions often have earlier deadlines, and a
    # second wave after the first deadline has passed.
    first = [0.6, 2.0, 0.2, 0.45, 0.2, 1.0, 0.3]
    tasks = [asyncio.create_task(_timed(client, "CoreStatus", t)) for t in first]
    await until(lambda: len(pbx.received("CoreStatus")) == len(first))
    await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    second = [0.25, 0.05, 0.5]
    tasks += [asyncio.create_task(_timed(client, "CoreStatus", t)) for t in second]
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert len(results) == len(first) + len(second)
    for timeout, elapsed in results:
        assert timeout <= elapsed < timeout + LATE_ALLOWED, (timeout, elapsed)
    # Every slot was freed: max_pending actions can wait again, and are answered.
    pings = [client.send_action([("Action", "Ping")], timeout=2) for _ in range(20)]
    assert all(result.ok for result in await asyncio.gather(*pings))


async def test_a_timeout_while_other_actions_are_answered(pbx, make_client) -> None:
    late: list[tuple[object, Message]] = []
    pbx.on("CoreStatus", lambda conn, action: late.append((conn, action)))

    async def slow_status(conn, action: Message) -> None:
        await asyncio.sleep(0.1)  # the PBX takes its time; the action's own wait is longer
        conn.reply(action, ("Message", "slow"))

    pbx.on("Status", slow_status)
    client = await make_client(pbx)
    timing_out = asyncio.create_task(_timed(client, "CoreStatus", 0.3))
    slow = asyncio.create_task(client.send_action([("Action", "Status")], timeout=0.5))
    answered = 0
    while not timing_out.done():
        assert (await client.send_action([("Action", "Ping")], timeout=2)).ok
        answered += 1
    timeout, elapsed = await timing_out
    assert timeout <= elapsed < timeout + LATE_ALLOWED
    assert answered > 1
    assert (await asyncio.wait_for(slow, 2)).response.get("Message") == "slow"
    # Its late answer is dropped; the connection and the other actions are unaffected.
    conn, action = late[0]
    conn.reply(action, ("Message", "too late"))
    assert (await client.send_action([("Action", "Ping")], timeout=2)).ok
    assert client.connected


async def test_the_callers_cancellation_stays_a_cancellation(pbx, make_client) -> None:
    pbx.on("CoreStatus", lambda conn, action: None)
    client = await make_client(pbx, max_pending=1)
    # The caller's own, shorter deadline: its TimeoutError, not the action's.
    with pytest.raises(TimeoutError) as caught:
        await asyncio.wait_for(client.send_action([("Action", "CoreStatus")], timeout=5), 0.1)
    assert not isinstance(caught.value, ActionTimeout)
    # The action's deadline first, inside a longer caller deadline: ActionTimeout.
    async with asyncio.timeout(5):
        with pytest.raises(ActionTimeout):
            await client.send_action([("Action", "CoreStatus")], timeout=0.1)
    # Both slots were freed (max_pending=1), and the client did not cancel anything
    # that was not its own: this task goes on.
    assert (await client.send_action([("Action", "Ping")], timeout=2)).ok


async def test_an_action_stuck_writing_times_out_at_its_deadline(pbx, make_client) -> None:
    # The PBX stops reading after the login: socket buffers fill, writes wait for drain.
    release = asyncio.Event()

    async def stop_reading(conn, action: Message) -> None:
        await release.wait()

    pbx.on("UserEvent", stop_reading)
    client = await make_client(pbx, max_pending=1000)
    filler = [("Action", "UserEvent"), ("UserEvent", "x"), ("Body", "y" * 40_000)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = [asyncio.create_task(client.send_action(filler, timeout=0.5)) for _ in range(500)]
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        elapsed = loop.time() - started
    finally:
        release.set()
    assert all(isinstance(result, ActionTimeout) for result in results)
    # Never early. Late only by the time 500 tasks and 20 MB of writes take on a busy
    # core (0.957 s seen at load 12): a write that ignored its deadline would wait for
    # the release, which comes only after the 5 s wait above.
    assert 0.5 <= elapsed < 2.0


async def test_local_protocol_error_writes_nothing(pbx, make_client) -> None:
    client = await make_client(pbx)
    before = len(pbx.actions)
    with pytest.raises(LocalProtocolError):
        await client.send_action(
            [("Action", "Setvar"), ("Value", "x\r\nAction: Hangup")], timeout=1
        )
    with pytest.raises(LocalProtocolError):
        await client.send_action([("Channel", "SIP/1")], timeout=1)
    with pytest.raises(LocalProtocolError):
        await client.send_action([], timeout=1)
    assert (await client.send_action([("Action", "Ping")], timeout=1)).ok
    assert [a.name for a in pbx.actions[before:]] == ["Ping"]


async def test_not_connected_fails_fast() -> None:
    client = AmiClient(AmiSettings(host="127.0.0.1", port=1, username="u", secret="s"))
    started = time.monotonic()
    with pytest.raises(PbxUnavailable, match="not connected"):
        await client.send_action([("Action", "Ping")], timeout=5)
    with pytest.raises(PbxUnavailable):
        await client.write_action([("Action", "Ping")])
    with pytest.raises(PbxUnavailable):
        await client.wait_event(lambda m: True, timeout=5)
    assert time.monotonic() - started < 0.1
    await client.close()


# -- write_action, wait_event ----------------------------------------------------------------


async def test_write_action_discards_answer(pbx, make_client) -> None:
    pbx.on("CoreShowChannels", replayer("06", "conn1-2"))
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    action_id = await client.write_action([("Action", "CoreShowChannels"), ("ActionID", "mine")])
    assert action_id != "mine"
    await until(lambda: bool(pbx.received("CoreShowChannels")))
    assert pbx.received("CoreShowChannels")[-1].action_id == action_id
    pbx.connections[-1].event("Marker")
    await until(lambda: any(m.name == "Marker" for m in seen))
    assert not [m for m in seen if m.action_id == action_id]


async def test_wait_event_registered_before_sending(pbx, make_client) -> None:
    def user_event(conn, action: Message) -> None:
        # The event comes before the response, as Asterisk may do.
        conn.event("UserEvent", ("UserEvent", action.get("UserEvent") or ""))
        conn.reply(action)

    pbx.on("UserEvent", user_event)
    client = await make_client(pbx)
    waiter = client.wait_event(lambda m: m.get("UserEvent") == "Hello", timeout=2)
    other = client.wait_event(lambda m: m.get("UserEvent") == "Never", timeout=0.1)
    await client.send_action([("Action", "UserEvent"), ("UserEvent", "Hello")], timeout=2)
    event = await waiter
    assert event.name == "UserEvent"
    with pytest.raises(ActionTimeout):
        await other


async def test_wait_event_predicate_error_and_cancel(pbx, make_client) -> None:
    client = await make_client(pbx)

    def broken(message: Message) -> bool:
        raise KeyError("bug")

    bad = client.wait_event(broken, timeout=2)
    cancelled = client.wait_event(lambda m: True, timeout=2)
    cancelled.cancel()
    pbx.connections[-1].event("Anything")
    with pytest.raises(KeyError):
        await asyncio.wait_for(bad, 1)
    assert cancelled.cancelled()


async def test_wait_event_fails_on_loss(pbx, make_client) -> None:
    client = await make_client(pbx)
    waiter = client.wait_event(lambda m: False, timeout=10)
    pbx.connections[-1].abort()
    with pytest.raises(PbxUnavailable, match="lost"):
        await asyncio.wait_for(waiter, 1)


# -- listeners and streams -------------------------------------------------------------------


async def test_listener_errors_are_swallowed_and_removable(
    pbx, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(pbx)
    good: list[str] = []
    removed: list[str] = []

    def broken(message: Message) -> None:
        raise RuntimeError("listener bug")

    client.add_listener(broken)
    remove = client.add_listener(lambda m: removed.append(m.name))
    client.add_listener(lambda m: good.append(m.name))
    conn = pbx.connections[-1]
    conn.event("One")
    await until(lambda: "One" in good)
    remove()
    remove()  # harmless twice
    conn.event("Two")
    await until(lambda: "Two" in good)
    assert "Two" not in removed and "One" in removed
    assert "listener bug" in caplog.text
    assert client.connected


async def test_listeners_with_event_names_get_only_those_in_order(pbx, make_client) -> None:
    """``add_listener(events=...)``: only those names, in any spelling, and every
    listener still in the order added; a listener added or removed later takes effect
    for names already routed."""
    client = await make_client(pbx)
    calls: list[str] = []
    client.add_listener(lambda m: calls.append(f"all {m.name}"))
    client.add_listener(lambda m: calls.append(f"hangup {m.name}"), events=["Hangup"])
    remove = client.add_listener(
        lambda m: calls.append(f"two {m.name}"), events=("newchannel", "HANGUP")
    )
    conn = pbx.connections[-1]
    for name in ("VarSet", "Hangup", "HANGUP", "NewChannel", "VarSet"):
        conn.event(name)
    conn.event("Mark1")
    await until(lambda: "all Mark1" in calls)
    assert calls == [
        "all VarSet",
        "all Hangup",
        "hangup Hangup",
        "two Hangup",
        "all HANGUP",
        "hangup HANGUP",
        "two HANGUP",
        "all NewChannel",
        "two NewChannel",
        "all VarSet",
        "all Mark1",
    ]
    calls.clear()
    remove()
    client.add_listener(lambda m: calls.append(f"late {m.name}"), events={"VarSet"})
    conn.event("Hangup")
    conn.event("VarSet")
    conn.event("Mark2")
    await until(lambda: "all Mark2" in calls)
    assert calls == ["all Hangup", "hangup Hangup", "all VarSet", "late VarSet", "all Mark2"]


async def test_event_stream_drops_oldest(pbx, make_client) -> None:
    client = await make_client(pbx)
    seen: list[Message] = []
    client.add_listener(seen.append)
    async with client.events(maxsize=3) as stream:
        conn = pbx.connections[-1]
        for n in range(10):
            conn.event("Tick", ("N", str(n)))
        await until(lambda: len([m for m in seen if m.name == "Tick"]) == 10)
        assert stream.dropped == 7
        got = [await asyncio.wait_for(anext(stream), 1) for _ in range(3)]
        assert [m.get("N") for m in got] == ["7", "8", "9"]
    assert stream.closed
