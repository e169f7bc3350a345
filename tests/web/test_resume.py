"""Resuming after a reconnect over real sockets: onEvent/onceEvent ``since``, ``gap``,
the replay buffer's bounds, permissions on replayed events, and ids shared with the
event stream. PBX events come from the simulator over AMI (``emit``); ``call.*`` events
are dispatched by a supervisor until the call tracker publishes real ones."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import ADMIN, AGENT, SUPERVISOR, add_test_users, make_config
from vwell_pbx.events.ids import parse_event_id
from vwell_pbx.protocol.message import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import RunningServer, serving

_req_ids = itertools.count(1)

Event = dict[str, Any]


class Connection:
    """A WebSocket that keeps every message, answers and events, in arrival order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(orjson.loads(message.data))
                self._arrived.set()

    async def send(self, method: str, creds: Mapping[str, str] | None, **argument: Any) -> str:
        """Send a request without waiting; returns its reqId."""
        req_id = f"q{next(_req_ids)}"
        envelope = {"method": method, "argument": {**(creds or {}), "reqId": req_id, **argument}}
        await self.ws.send_bytes(orjson.dumps(envelope))
        return req_id

    async def call(
        self, method: str, creds: Mapping[str, str] | None = None, **argument: Any
    ) -> dict[str, Any]:
        """Send a request and wait for its answer."""
        req_id = await self.send(method, creds, **argument)
        return await self.answer(req_id)

    async def answer(self, req_id: str, within: float = 10) -> dict[str, Any]:
        """The answer to ``req_id``, once it arrived."""
        await self.until(lambda: any(_is_answer(m, req_id) for m in self.messages), within)
        return next(m for m in self.messages if _is_answer(m, req_id))

    @property
    def events(self) -> list[Event]:
        """The pushed events so far (answers left out)."""
        return [m for m in self.messages if not _is_answer(m)]

    async def until(self, condition: Callable[[], bool], within: float = 10) -> None:
        """Wait until ``condition()`` holds after some message arrived (or already)."""
        async with asyncio.timeout(within):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        """Close from this side and stop reading."""
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _is_answer(message: Mapping[str, Any], req_id: str | None = None) -> bool:
    if "err" not in message or "errCode" not in message:
        return False
    return req_id is None or message.get("reqId") == req_id


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def connect(
    session: aiohttp.ClientSession, server: RunningServer, creds: Mapping[str, str]
) -> Connection:
    """A signed-in WebSocket (the login is remembered for later requests)."""
    connection = Connection(await session.ws_connect(server.ws_url))
    answer = await connection.call("whoami", creds)
    assert answer["err"] is None, answer
    return connection


def newchannel(index: int, channel: str = "SIP/269") -> Message:
    return Message.build(
        ("Event", "Newchannel"),
        ("Privilege", "call,all"),
        ("Channel", f"{channel}-{index:08x}"),
        ("ChannelState", "4"),
        ("CallerIDNum", "+79787342741"),
        ("Exten", "269"),
        ("Context", "from-trunk"),
        ("Uniqueid", f"1700000000.{index}"),
    )


def index_of(event: Event) -> int:
    """The traffic index an event carries (Newchannel: its Uniqueid; call.*: ``n``)."""
    if event["name"] == "Newchannel":
        return int(str(event["Uniqueid"]).rsplit(".", 1)[1])
    return int(event["n"])


class Traffic:
    """Interleaved Newchannel (from the PBX) and call.test (dispatched) events,
    numbered 0, 1, 2, ...: even numbers are Newchannel, odd ones call.test."""

    def __init__(self, simulator: PbxSimulator, sender: Connection) -> None:
        self.simulator = simulator
        self.sender = sender
        self.next = 0

    async def flow(self, count: int, *, over: float = 0.0) -> None:
        """Send ``count`` events, spread over ``over`` seconds (the length of the
        scenario, not a wait for anything)."""
        for _ in range(count):
            index = self.next
            self.next += 1
            if index % 2 == 0:
                self.simulator.emit(newchannel(index))
            else:
                answer = await self.sender.call(
                    "dispatchEvent", event={"name": "call.test", "n": index}
                )
                assert answer["err"] is None, answer
            if over:
                await asyncio.sleep(over / count)


def per_subscription(
    messages: list[dict[str, Any]], subscriptions: Mapping[str, Callable[[Event], bool]]
) -> dict[str, list[Event]]:
    """What each subscription of a resumed connection received, the way the JS client
    routes it: an answer's replayed ``events`` go to its own subscription; a pushed
    event goes to each subscription whose filter matches and whose answer came before
    it (events before the answer were published before the subscription, so they are
    in its replay when they are new to it)."""
    received: dict[str, list[Event]] = {req: [] for req in subscriptions}
    live: set[str] = set()
    for message in messages:
        if _is_answer(message):
            req_id = message["reqId"]
            if req_id in subscriptions:
                received[req_id].extend(message["events"])
                live.add(req_id)
            continue
        for req_id, matches in subscriptions.items():
            if req_id in live and matches(message):
                received[req_id].append(message)
    return received


def is_newchannel(event: Event) -> bool:
    return event["name"] == "Newchannel"


def is_call(event: Event) -> bool:
    return str(event["name"]).startswith("call.")


# --- the round trip ------------------------------------------------------------------


async def test_away_5_s_while_100_events_flow_then_every_one_once_in_order(
    session: aiohttp.ClientSession, server: RunningServer, simulator: PbxSimulator
) -> None:
    sender = await connect(session, server, SUPERVISOR)
    traffic = Traffic(simulator, sender)
    client = await connect(session, server, SUPERVISOR)
    for name in ("Newchannel", "call.*"):
        answer = await client.call("onEvent", name=name)
        assert answer["err"] is None and "gap" not in answer and "events" not in answer
        parse_event_id(answer["lastEventId"])
    await traffic.flow(10)
    await client.until(lambda: len(client.events) == 10)
    since = {
        "Newchannel": [e for e in client.events if is_newchannel(e)][-1]["eventId"],
        "call.*": [e for e in client.events if is_call(e)][-1]["eventId"],
    }
    await client.close()

    # Away for 5 s while 100 events flow; then back while 20 more are still flowing.
    await traffic.flow(100, over=5.0)
    client = await connect(session, server, SUPERVISOR)
    more = asyncio.create_task(traffic.flow(20))
    requests = {
        await client.send("onEvent", None, name="Newchannel", since=since["Newchannel"]): (
            is_newchannel
        ),
        await client.send("onEvent", None, event={"name": "call.*"}, since=since["call.*"]): (
            is_call
        ),
    }
    for req_id in requests:
        answer = await client.answer(req_id)
        assert answer["err"] is None, answer
        assert answer["gap"] is False
    await more
    expected_newchannel = list(range(10, 130, 2))
    expected_calls = list(range(11, 130, 2))

    def complete() -> bool:
        got = per_subscription(client.messages, requests)
        return [len(events) for events in got.values()] == [60, 60]

    await client.until(complete)
    got = per_subscription(client.messages, requests)
    newchannels, calls = got.values()
    assert [index_of(e) for e in newchannels] == expected_newchannel
    assert [index_of(e) for e in calls] == expected_calls
    # Once each, and the ids say so too: every event id distinct, all of this run.
    ids = [e["eventId"] for e in newchannels + calls]
    assert len(set(ids)) == len(ids) == 120
    assert {parse_event_id(i).run for i in ids} == {server.api.bus.run_id}
    # Nothing more arrives for them: let 2 more events through and look again.
    await traffic.flow(2)
    await client.until(
        lambda: [len(v) for v in per_subscription(client.messages, requests).values()] == [61, 61]
    )
    await client.close()
    await sender.close()


async def test_once_event_with_since_fires_on_the_first_buffered_match(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    client = await connect(session, server, SUPERVISOR)
    start = (await client.call("onEvent", name="Ticket"))["lastEventId"]
    for n in range(3):
        await client.call("dispatchEvent", event={"name": "Ticket", "n": n})
    answer = await client.call("onceEvent", name="Ticket", since=start)
    assert [e["n"] for e in answer["events"]] == [0]
    assert answer["gap"] is False
    assert server.api.bus.stats.subscriptions == 1  # only the onEvent one
    await client.close()


# --- gaps ------------------------------------------------------------------------------


@pytest.mark.parametrize("server_overrides", [{"events": {"replay_size": 5}}])
async def test_a_since_older_than_the_buffer_says_gap_and_replays_what_is_left(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    client = await connect(session, server, SUPERVISOR)
    await client.call("onEvent", name="call.*")
    await client.call("dispatchEvent", event={"name": "call.test", "n": 0})
    await client.until(lambda: len(client.events) == 1)
    since = client.events[0]["eventId"]
    await client.close()
    client = await connect(session, server, SUPERVISOR)
    for n in range(1, 11):
        await client.call("dispatchEvent", event={"name": "call.test", "n": n})
    answer = await client.call("onEvent", name="call.*", since=since)
    assert answer["gap"] is True
    assert [e["n"] for e in answer["events"]] == [6, 7, 8, 9, 10]
    await client.close()
    async with session.get(server.http_url + "/metrics") as response:
        metrics = await response.text()
    for line in (
        "vwell_resumes_total 1.0",
        "vwell_resume_gaps_total 1.0",
        "vwell_replay_events 5.0",
    ):
        assert line in metrics.splitlines(), line


@pytest.mark.parametrize("server_overrides", [{"events": {"replay_bytes": 2048}}])
async def test_the_byte_bound_is_honoured(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    client = await connect(session, server, SUPERVISOR)
    start = (await client.call("onEvent", name="Big"))["lastEventId"]
    for n in range(12):
        await client.call("dispatchEvent", event={"name": "Big", "n": n, "pad": "x" * 300})
    await client.until(lambda: len(client.events) == 12)
    sizes = [len(orjson.dumps(e)) for e in client.events]
    assert all(350 < size < 500 for size in sizes)
    replay = server.api.bus.replay
    assert replay.bytes <= 2048
    answer = await client.call("onEvent", name="Big", since=start)
    assert answer["gap"] is True
    replayed = answer["events"]
    assert sum(len(orjson.dumps(e)) for e in replayed) <= 2048
    assert [e["n"] for e in replayed] == list(range(12 - len(replayed), 12))
    assert 3 <= len(replayed) <= 5
    await client.close()


async def test_a_since_from_another_run_says_gap_after_a_restart(
    session: aiohttp.ClientSession, tmp_path: Path, simulator: PbxSimulator
) -> None:
    config = make_config(tmp_path, simulator.port)
    await add_test_users(config)
    async with serving(config, wait_for_pbx=5) as first:
        client = await connect(session, first, SUPERVISOR)
        await client.call("onEvent", name="call.*")
        await client.call("dispatchEvent", event={"name": "call.test", "n": 1})
        await client.until(lambda: len(client.events) == 1)
        since = client.events[0]["eventId"]
        await client.close()
    async with serving(config, wait_for_pbx=5) as second:
        assert second.api.bus.run_id != first.api.bus.run_id
        client = await connect(session, second, SUPERVISOR)
        await client.call("dispatchEvent", event={"name": "call.test", "n": 2})
        answer = await client.call("onEvent", name="call.*", since=since)
        assert answer["err"] is None and answer["gap"] is True
        assert answer["events"] == []  # nothing can be placed after another run's id
        await client.call("dispatchEvent", event={"name": "call.test", "n": 3})
        await client.until(lambda: len(client.events) == 1)
        assert client.events[0]["n"] == 3  # subscribed all the same
        await client.close()


@pytest.mark.parametrize(
    ("since", "problem"),
    [
        ("17", "must be an eventId received from this server"),
        ("yesterday", "must be an eventId received from this server"),
        (42, "must be an eventId received from this server"),
        (["a-1"], "must be a string"),
    ],
)
async def test_a_malformed_since_is_a_bad_request_naming_it_and_changes_nothing(
    session: aiohttp.ClientSession, server: RunningServer, since: object, problem: str
) -> None:
    client = await connect(session, server, SUPERVISOR)
    for method in ("onEvent", "onceEvent"):
        answer = await client.call(method, name="Newchannel", since=since)
        assert answer["errCode"] == "bad_request", answer
        assert answer["err"].startswith("argument.since "), answer
        assert problem in answer["err"]
    assert server.api.bus.stats.subscriptions == 0
    assert server.api.bus.stats.resumes == 0
    await client.close()


# --- permissions -------------------------------------------------------------------------


async def test_a_resumed_connection_gets_only_what_its_role_may_see(
    session: aiohttp.ClientSession, server: RunningServer, simulator: PbxSimulator
) -> None:
    positions: dict[str, str] = {}
    for who, creds in (("operator", AGENT), ("supervisor", SUPERVISOR), ("admin", ADMIN)):
        client = await connect(session, server, creds)
        positions[who] = (await client.call("onEvent", name="*"))["lastEventId"]
        await client.close()
    # While all three are away (their "*" keeps everything coming into the buffer):
    watcher = await connect(session, server, ADMIN)
    await watcher.call("onEvent", name="Marker")
    simulator.emit(Message.build(("Event", "VarSet"), ("Variable", "SECRET"), ("Value", "x")))
    simulator.emit(
        Message.build(("Event", "InvalidPassword"), ("Service", "AMI"), ("RemoteAddress", "x"))
    )
    simulator.emit(newchannel(1))
    simulator.emit(Message.build(("Event", "Marker")))
    await watcher.until(lambda: len(watcher.events) == 1)  # all four are published

    seen: dict[str, list[str]] = {}
    for who, creds in (("operator", AGENT), ("supervisor", SUPERVISOR), ("admin", ADMIN)):
        client = await connect(session, server, creds)
        answer = await client.call("onEvent", name="*", since=positions[who])
        assert answer["gap"] is False
        seen[who] = [e["name"] for e in answer["events"]]
        await client.close()
    assert seen["operator"] == ["Newchannel"]
    assert seen["supervisor"] == ["VarSet", "Newchannel", "Marker"]  # no security events
    assert seen["admin"] == ["VarSet", "InvalidPassword", "Newchannel", "Marker"]
    await watcher.close()


# --- one id space for every transport -------------------------------------------------------


async def test_an_id_from_the_websocket_resumes_the_event_stream(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    client = await connect(session, server, SUPERVISOR)
    await client.call("onEvent", name="Shared")
    await client.call("dispatchEvent", event={"name": "Shared", "n": 1})
    await client.until(lambda: len(client.events) == 1)
    since = client.events[0]["eventId"]
    await client.call("dispatchEvent", event={"name": "Shared", "n": 2})
    headers = {
        "X-Vwell-Login": "boss",
        "X-Vwell-Login2": "%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%20%D0%9F.%D0%9F.",
        "X-Vwell-Sha1": SUPERVISOR["sha1"],
        "Last-Event-ID": since,
    }
    async with session.get(
        server.http_url + "/api/events", params={"name": "Shared"}, headers=headers
    ) as response:
        assert response.status == 200, await response.text()
        lines: list[str] = []
        async with asyncio.timeout(5):
            while not any(line.startswith("data: ") for line in lines):
                lines.append((await response.content.readline()).decode().rstrip("\n"))
    data = next(line for line in lines if line.startswith("data: "))
    event = orjson.loads(data.removeprefix("data: "))
    assert event["n"] == 2
    assert lines[lines.index(data) - 1] == f"id: {event['eventId']}"
    assert not any("replay incomplete" in line for line in lines)
    await client.close()
