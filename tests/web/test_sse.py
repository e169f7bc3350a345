"""GET /api/events: Server-Sent Events over real sockets, against the real simulator."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from tests.support import ADMIN, AGENT, add_user
from tests.support.waiting import until
from vwell_pbx.config import EventsConfig, EventStreamConfig, load_config
from vwell_pbx.events.bus import BusEvent
from vwell_pbx.protocol.message import Message
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.server import RunningServer
from vwell_pbx.web.sse import STREAMS_KEY, StreamSettings

QUEUE = 50
LISTENER = {"login": "quiet", "login2": "Nobody", "sha1": sha1_of_password("quiet-pw")}


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    return {"limits": {"ws_queue_size": QUEUE}, "roles": {"no-events": {"methods": ["send"]}}}


@dataclass
class Frame:
    """One SSE frame: its fields and comments."""

    id: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads("\n".join(self.data))
        return result


class Stream:
    """An event-stream reader over aiohttp's client (what EventSource does, in Python)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def frame(self, within: float = 5) -> Frame:
        frame = Frame()
        async with asyncio.timeout(within):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if frame.data or frame.comments or frame.retry is not None:
                        return frame
                    continue
                if line.startswith(":"):
                    frame.comments.append(line[1:].strip())
                    continue
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "id":
                    frame.id = value
                elif key == "data":
                    frame.data.append(value)
                elif key == "retry":
                    frame.retry = int(value)
                else:
                    raise AssertionError(f"unexpected field {line!r}")

    async def event(self, within: float = 5) -> tuple[str, dict[str, Any]]:
        """The next event (comments skipped); its SSE id is its own eventId."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.frame(within)
                if frame.data:
                    assert frame.id is not None
                    assert frame.id == frame.event["eventId"]
                    return frame.id, frame.event


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def events_url(server: RunningServer) -> str:
    return server.http_url + "/api/events"


async def open_stream(
    session: aiohttp.ClientSession,
    server: RunningServer,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Stream:
    response = await session.get(events_url(server), params=params, headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    stream = Stream(response)
    first = await stream.frame()
    assert first.retry is not None
    assert any(c.startswith("subscribed ") for c in first.comments)
    return stream


def header_creds(creds: Mapping[str, str]) -> dict[str, str]:
    return {
        "X-Vwell-Login": quote(creds["login"]),
        "X-Vwell-Login2": quote(creds["login2"]),
        "X-Vwell-Sha1": creds["sha1"],
    }


def fb64(argument: Mapping[str, Any]) -> dict[str, str]:
    return {"fb64json": base64.b64encode(orjson.dumps({"argument": argument})).decode()}


def publish_client_event(server: RunningServer, name: str, **fields: Any) -> None:
    server.api.bus.publish(
        BusEvent.from_client({"name": name, **fields}, login="root", login2="Admin")
    )


def publish_pbx_event(server: RunningServer, name: str, **fields: str) -> None:
    message = Message.build(("Event", name), *fields.items())
    server.api.bus.publish(BusEvent.from_message(message))


# --- refusals before the stream starts ----------------------------------------------


async def test_wrong_credentials_answer_401_with_the_envelope(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    bad = {**AGENT, "sha1": "0" * 40}
    async with session.get(events_url(server), headers=header_creds(bad)) as response:
        assert response.status == 401
        body = await response.json()
    assert body["errCode"] == "auth_failed"
    assert set(body) >= {"err", "errCode", "reqId"}
    async with session.get(events_url(server)) as response:
        assert response.status == 401
        assert (await response.json())["errCode"] == "auth_failed"


async def test_a_malformed_filter_answers_400(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    params = fb64({**AGENT, "event": {"name": "Newchannel", "CallerIDNum": {"no": "objects"}}})
    async with session.get(events_url(server), params=params) as response:
        assert response.status == 400
        body = await response.json()
    assert body["errCode"] == "bad_request"
    assert "CallerIDNum" in body["err"]


async def test_a_role_without_onEvent_gets_403(
    session: aiohttp.ClientSession, server: RunningServer, tmp_path: Path
) -> None:
    await add_user(server.config, LISTENER, role="no-events")
    async with session.get(events_url(server), headers=header_creds(LISTENER)) as response:
        assert response.status == 403
        assert (await response.json())["errCode"] == "forbidden"


# --- events ---------------------------------------------------------------------------


async def test_incoming_call_events_arrive_as_data_lines(
    session: aiohttp.ClientSession, server: RunningServer, simulator: PbxSimulator
) -> None:
    # Credentials in headers, login2 percent-encoded UTF-8; the filter in the query.
    stream = await open_stream(
        session, server, headers=header_creds(AGENT), params={"name": "newchannel"}
    )
    await simulator.incoming_call("+79787342741", hold=0.05)
    event_id, event = await stream.event()
    assert event["name"] == "Newchannel"
    assert event["Event"] == "Newchannel"
    assert event["CallerIDNum"] == "+79787342741"
    assert event_id.startswith(server.api.bus.run_id + "-")
    stream.response.close()


async def test_field_filters_from_fb64json(
    session: aiohttp.ClientSession, server: RunningServer, simulator: PbxSimulator
) -> None:
    argument = {**AGENT, "event": {"name": "Newchannel", "CallerIDNum": "+7978*"}}
    stream = await open_stream(session, server, params=fb64(argument))
    await simulator.incoming_call("+71002003040", hold=0.05)
    await simulator.incoming_call("+79780000001", hold=0.05)
    _, event = await stream.event()
    assert event["CallerIDNum"] == "+79780000001"  # the first call did not match
    stream.response.close()


async def test_bracket_query_parameters_and_cors(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    params = {
        "argument[login]": ADMIN["login"],
        "argument[login2]": ADMIN["login2"],
        "argument[sha1]": ADMIN["sha1"],
        "argument[event][name]": "Brackets",
        "argument[event][colour]": "red",
    }
    response = await session.get(
        events_url(server), params=params, headers={"Origin": "http://crm.example"}
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    stream = Stream(response)
    await stream.frame()
    publish_client_event(server, "Brackets", colour="blue")
    publish_client_event(server, "Brackets", colour="red")
    _, event = await stream.event()
    assert (event["name"], event["colour"], event["origin"]) == ("Brackets", "red", "api")
    response.close()


async def test_heartbeat_comments_on_an_idle_stream(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    server.app[STREAMS_KEY].settings = StreamSettings(heartbeat=0.05)
    stream = await open_stream(
        session, server, headers=header_creds(AGENT), params={"name": "NothingHappens"}
    )
    frame = await stream.frame(within=2)
    assert frame.comments == ["ping"]
    assert not frame.data
    stream.response.close()


async def test_the_role_guard_applies(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    # The operator role receives call events but not, e.g., VarSet or security events.
    stream = await open_stream(session, server, headers=header_creds(AGENT), params={"name": "*"})
    publish_pbx_event(server, "VarSet", Variable="SECRET_THING", Value="x")
    publish_pbx_event(server, "InvalidPassword", Service="AMI")
    publish_pbx_event(server, "Newchannel", Channel="SIP/269-1")
    _, event = await stream.event()
    assert event["name"] == "Newchannel"
    stream.response.close()


# --- Last-Event-ID --------------------------------------------------------------------


async def test_last_event_id_replays_only_the_missed_events(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    headers = header_creds(ADMIN)
    stream = await open_stream(session, server, headers=headers, params={"name": "Replay*"})
    publish_client_event(server, "Replay", n=1)
    seen, event = await stream.event()
    assert event["n"] == 1
    stream.response.close()

    publish_client_event(server, "Replay", n=2)
    publish_client_event(server, "Other", n=99)  # not this stream's filter
    publish_client_event(server, "ReplayToo", n=3)

    stream = await open_stream(
        session, server, params={"name": "Replay*"}, headers={**headers, "Last-Event-ID": seen}
    )
    first_id, first = await stream.event()
    second_id, second = await stream.event()
    assert (first["n"], second["n"]) == (2, 3)
    assert len({seen, first_id, second_id}) == 3
    publish_client_event(server, "Replay", n=4)  # live again, nothing twice
    live_id, live = await stream.event()
    assert live["n"] == 4
    assert live_id not in (seen, first_id, second_id)
    stream.response.close()


@pytest.mark.parametrize(
    "server_overrides", [{"events": {"replay_size": 2}, "limits": {"ws_queue_size": QUEUE}}]
)
async def test_replay_is_bounded_and_says_so(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    headers = header_creds(ADMIN)
    stream = await open_stream(session, server, headers=headers, params={"name": "Gap"})
    publish_client_event(server, "Gap", n=0)
    seen, _ = await stream.event()
    stream.response.close()
    for n in range(1, 6):
        publish_client_event(server, "Gap", n=n)
    stream = await open_stream(
        session, server, params={"name": "Gap"}, headers={**headers, "Last-Event-ID": seen}
    )
    frame = await stream.frame()
    assert any(c.startswith("replay incomplete") for c in frame.comments)
    replayed = [frame.event["n"]] if frame.data else []
    while len(replayed) < 2:
        replayed.append((await stream.event())[1]["n"])
    assert replayed == [4, 5]  # only the buffer's two newest were left
    stream.response.close()


@pytest.mark.parametrize("sent", ["17", "yesterday", "earlier0run-3", " "])
async def test_an_id_that_is_not_of_this_run_is_a_gap_never_an_error(
    session: aiohttp.ClientSession, server: RunningServer, sent: str
) -> None:
    # A number is what earlier releases sent as ids; "earlier0run-3" is well formed but
    # of another run (this run's id is base32, which has no "0").
    publish_client_event(server, "Old", n=1)
    stream = await open_stream(
        session,
        server,
        params={"name": "Old", "lastEventId": sent},
        headers=header_creds(ADMIN),
    )
    publish_client_event(server, "Old", n=2)
    frame = await stream.frame()
    if sent.strip():
        assert any(c.startswith("replay incomplete") for c in frame.comments), frame
        frame = await stream.frame()
    assert frame.event["n"] == 2  # nothing replayed: the buffer cannot place that id
    stream.response.close()


# --- slow readers ---------------------------------------------------------------------


async def test_a_stream_that_does_not_read_is_dropped(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    registry = server.app[STREAMS_KEY].metrics.registry

    def dropped() -> float:
        return registry.get_sample_value("vwell_slow_clients_dropped_total") or 0.0

    before = dropped()
    stream = await open_stream(
        session, server, headers=header_creds(ADMIN), params={"name": "Flood"}
    )
    for n in range(QUEUE + 10):  # synchronously: the writer cannot run in between
        publish_client_event(server, "Flood", n=n)
    assert dropped() == before + 1
    with pytest.raises((EOFError, aiohttp.ClientError)):
        async with asyncio.timeout(5):
            while True:
                await stream.frame()
    stream.response.close()
    await until(lambda: not server.app[STREAMS_KEY].open_streams, what="the stream to end")


async def test_a_stream_is_one_subscription_and_leaves_none(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    # Only the stream itself is a subscription, and nothing is left once it ends
    # (found by the next heartbeat); its name stays wanted for the resume grace.
    server.app[STREAMS_KEY].settings = StreamSettings(heartbeat=0.05)
    stream = await open_stream(
        session, server, headers=header_creds(ADMIN), params={"name": "Counted"}
    )
    stats = server.api.bus.stats
    assert (stats.subscriptions, stats.subscribers) == (1, 1)
    publish_client_event(server, "Counted", n=1)
    event_id, _ = await stream.event()
    assert server.api.bus.last_event_id == event_id
    stream.response.close()
    streams = server.app[STREAMS_KEY]
    await until(
        lambda: not streams.open_streams and not server.api.bus.stats.subscribers,
        what="the stream and its subscriber to end",
    )
    assert server.api.bus.stats.subscriptions == 0
    assert server.api.bus.interested("Counted")  # lingering, for EventSource's return


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_overrides",
    [{"event_stream": {"heartbeat_seconds": 0.05, "replay_size": 2, "retry_ms": 1234}}],
)
async def test_heartbeat_retry_and_the_earlier_replay_size_come_from_the_configuration(
    session: aiohttp.ClientSession, server: RunningServer
) -> None:
    streams = server.app[STREAMS_KEY]
    assert streams.settings == StreamSettings(heartbeat=0.05, retry_ms=1234)
    response = await session.get(
        events_url(server), headers=header_creds(ADMIN), params={"name": "Conf"}
    )
    stream = Stream(response)
    head = await stream.frame()
    assert head.retry == 1234
    publish_client_event(server, "Conf", n=0)
    await stream.event()
    frame = await stream.frame(within=2)  # idle: the configured heartbeat
    assert frame.comments == ["ping"]
    stream.response.close()
    for n in range(1, 4):
        publish_client_event(server, "Conf", n=n)
    # [event_stream] replay_size is the earlier name of [events] replay_size.
    replay = server.api.bus.replay
    assert replay.max_events == 2
    assert [event.fields["n"] for event in replay.after(0)] == [2, 3]


def test_the_example_configuration_shows_the_event_stream_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "app-config.example.toml"
    config = load_config(example, env={})
    assert config.event_stream == EventStreamConfig()
    assert config.events == EventsConfig()
    text = example.read_text(encoding="utf-8")
    assert "[event_stream]" in text and "[events]" in text
