"""Who sees which call, what a ``call.*`` subscription answers, and bad input.

Operators see only the calls of their own extensions: the built-in ``operator`` as it
is (``own_calls_only``), and one also bound to them for dial/redirect
(``own_extensions_only``); every test runs with both. Agent has extension 269, Other
has 270. The supervisor sees every call, and so does an operator whose role turns
``own_calls_only`` off. Every check goes through the running server over real sockets:
events on WebSockets, ``calls`` and ``callHistory`` over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.calls.server_support import (
    SENTINEL,
    call_object,
    events_until,
    eventually,
    names,
    settle,
    subscribe,
)
from tests.support import AGENT, SUPERVISOR, ApiClient, WsClient, add_user
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.server import RunningServer

OTHER = {"login": "Agent", "login2": "Сидоров С.С.", "sha1": sha1_of_password("other-pw")}


@pytest.fixture(params=["builtin", "own_extensions_only"])
def server_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The built-in operator as it is, or bound to the user's own extensions too."""
    if request.param == "builtin":
        return {}
    return {"roles": {"operator": {"extends": "operator", "own_extensions_only": True}}}


@pytest.fixture
async def other(server: RunningServer) -> dict[str, str]:
    """A second operator, with extension 270."""
    await add_user(server.config, OTHER, role="operator", extensions=("270",))
    return OTHER


@pytest.fixture
async def sockets(api: ApiClient, other: dict[str, str]) -> AsyncIterator[list[WsClient]]:
    """WebSockets of Agent, Other and the supervisor, each subscribed to ``call.*``."""
    opened = [await api.ws() for _ in range(3)]
    for ws, creds in zip(opened, (AGENT, other, SUPERVISOR), strict=True):
        await subscribe(ws, creds, name="call.*")
    yield opened
    for ws in opened:
        await ws.close()


async def _history(api: ApiClient, creds: dict[str, str], **filters: Any) -> list[str]:
    answer = await api.post("callHistory", creds=creds, **filters)
    assert answer["err"] is None, answer
    return [call["callId"] for call in answer["calls"]]


async def test_an_operator_never_sees_another_operators_calls(
    api: ApiClient, simulator: PbxSimulator, sockets: list[WsClient], other: dict[str, str]
) -> None:
    agent_ws, _, boss_ws = sockets
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=2.0)
    answered = (await events_until(agent_ws, "call.answered"))[-1]
    call_id = answered["callId"]

    # During the call: calls, and the answer of a new call.* subscription.
    assert [c["callId"] for c in (await api.post("calls", creds=AGENT))["calls"]] == [call_id]
    assert (await api.post("calls", creds=other))["calls"] == []
    assert [c["callId"] for c in (await api.post("calls", creds=SUPERVISOR))["calls"]] == [call_id]
    late = await api.ws()
    assert (await subscribe(late, other, name="call.*"))["calls"] == []
    assert [c["callId"] for c in (await subscribe(late, AGENT, name="call.*"))["calls"]] == [
        call_id
    ]
    await late.close()

    await events_until(agent_ws, "call.ended")
    assert (await events_until(boss_ws, "call.ended"))[-1]["callId"] == call_id
    # A call of Other's own, after Agent's: Other's first event must be about it.
    await simulator.incoming_call("+79780000001", span=11, to="270", hold=0.2)
    other_call = (await events_until(boss_ws, "call.ended"))[-1]["callId"]
    agent_rest, other_events, boss_rest = await settle(api, *sockets)
    assert agent_rest == []
    assert {e["callId"] for e in other_events} == {other_call}
    assert names(other_events)[-1] == "call.ended"
    assert {e["callId"] for e in boss_rest} <= {other_call}

    async def both_stored() -> bool:
        return len(await _history(api, SUPERVISOR)) == 2

    await eventually(both_stored)
    assert await _history(api, AGENT) == [call_id]
    assert await _history(api, other) == [other_call]
    assert await _history(api, other, number="89787342741") == []
    refused = await api.post("callHistory", creds=other, extension="269")
    assert refused["errCode"] == "forbidden", refused
    assert refused["err"].startswith("argument.extension: extension 269 is not one of yours")
    refused = await api.post("calls", creds=other, extension="269")
    assert refused["errCode"] == "forbidden", refused


async def test_a_call_subscription_answers_with_the_active_calls_it_matches(
    api: ApiClient, simulator: PbxSimulator, sockets: list[WsClient]
) -> None:
    boss_ws = sockets[2]
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=2.0)
    answered = (await events_until(boss_ws, "call.answered"))[-1]
    ws = await api.ws()
    cases: list[tuple[dict[str, Any], list[str] | None]] = [
        ({"name": "call.*"}, [answered["callId"]]),
        ({"name": "CALL.ENDED"}, [answered["callId"]]),  # any call event name, any case
        ({"name": "call.*", "event": {"name": "call.*", "extension": "269"}}, [answered["callId"]]),
        ({"event": {"name": "call.answered", "fromNumber": ["1", "8978*"]}}, [answered["callId"]]),
        ({"event": {"name": "call.*", "direction": "outbound"}}, []),
        ({"event": {"name": "call.ringing", "extension": "270"}}, []),
        ({"name": "Newchannel"}, None),  # not a call event: no `calls` at all
        ({"name": "*"}, None),  # every event: not a call.* subscription either
    ]
    for argument, expected in cases:
        answer = await subscribe(ws, SUPERVISOR, **argument)
        got = None if "calls" not in answer else [c["callId"] for c in answer["calls"]]
        assert got == expected, argument
    (listed,) = (await subscribe(ws, SUPERVISOR, name="call.*"))["calls"]
    (from_calls,) = (await api.post("calls", creds=SUPERVISOR, extension="269"))["calls"]
    assert listed["status"] == "up"
    assert _without_durations(listed) == _without_durations(from_calls)
    await ws.close()


def _without_durations(call: dict[str, Any]) -> dict[str, Any]:
    """A live call object without the seconds that count up between two looks."""
    return {k: v for k, v in call.items() if k not in ("ringSeconds", "talkSeconds")}


async def test_dial_from_a_busy_phone(
    api: ApiClient, sockets: list[WsClient], simulator: PbxSimulator
) -> None:
    """The originating phone is busy (the simulator's 900): one originated call that
    ended busy; dial with wait names it."""
    boss_ws = sockets[2]
    answer = await api.post("dial", creds=SUPERVISOR, **{"from": "900"}, to="270", wait=True)
    assert answer["err"] is None and answer["outcome"] == "busy", answer
    events = await events_until(boss_ws, "call.ended")
    (rest,) = await settle(api, boss_ws)
    assert rest == []
    (ended,) = events
    assert answer["callId"] == ended["callId"]
    assert (ended["endReason"], ended["originated"], ended["actionId"]) == (
        "busy",
        True,
        answer["actionId"],
    )
    assert ended["answeredAt"] is None and ended["talkSeconds"] == 0


def _bad(method: str, problem: str, **argument: Any) -> tuple[str, dict[str, Any], str]:
    return method, argument, problem


BAD_INPUT = [
    _bad("calls", "argument.extention is not an argument of this method", extention="269"),
    _bad("calls", "argument.direction input should be", direction="sideways"),
    _bad("calls", "argument.number ", number="call me"),
    _bad("callHistory", "argument.since must be ISO 8601", since="yesterday"),
    _bad("callHistory", "argument.until must be ISO 8601", until="2024-13-01"),
    _bad("callHistory", "argument.since must be between 1970 and 9999", since="-5"),
    _bad("callHistory", "argument.until must be later than argument.since", since=20, until=10),
    _bad("callHistory", "argument.limit must be between 1 and 1000", limit=1001),
    _bad("callHistory", "argument.limit must be between 1 and 1000", limit=0),
    _bad("callHistory", "argument.limit must be an integer", limit="many"),
    _bad("callHistory", "argument.endReason input should be", endReason="bored"),
    _bad("callHistory", "argument.before is not a cursor of this query", before="garbage"),
    _bad("callHistory", "argument.before is not a cursor of this query", before="a.b.c"),
    _bad("callHistory", "argument.sinse is not an argument", sinse="2024-01-01"),
    _bad("callHistory", "argument.pbx must be one of: office", pbx="branch"),
]


@pytest.mark.parametrize(("method", "argument", "problem"), BAD_INPUT)
async def test_bad_input_is_refused_naming_the_argument(
    api: ApiClient, method: str, argument: dict[str, Any], problem: str
) -> None:
    answer = await api.post(method, creds=SUPERVISOR, **argument)
    assert answer["errCode"] == "bad_request", answer
    assert answer["err"].startswith(problem), answer


async def test_a_cursor_works_only_for_its_own_query(
    api: ApiClient, simulator: PbxSimulator, sockets: list[WsClient]
) -> None:
    boss_ws = sockets[2]
    for to in ("269", "270"):
        await simulator.incoming_call("+79787342741", span=11, to=to, hold=0.05)
        await events_until(boss_ws, "call.ended")

    async def both_stored() -> bool:
        return len(await _history(api, SUPERVISOR)) == 2

    await eventually(both_stored)
    first = await api.post("callHistory", creds=SUPERVISOR, limit=1)
    cursor = first["next"]
    assert isinstance(cursor, str)
    second = await api.post("callHistory", creds=SUPERVISOR, limit=1, before=cursor)
    assert second["err"] is None and second["next"] is None, second
    assert {c["callId"] for c in first["calls"] + second["calls"]} == set(
        await _history(api, SUPERVISOR)
    )
    # The same page size does not matter; the filters do.
    assert (await api.post("callHistory", creds=SUPERVISOR, before=cursor))["err"] is None
    for argument in ({"direction": "inbound"}, {"number": "89787342741"}, {"since": 0}):
        answer = await api.post("callHistory", creds=SUPERVISOR, before=cursor, **argument)
        assert answer["errCode"] == "bad_request", (argument, answer)
        assert answer["err"].startswith("argument.before is not a cursor of this query")
    # Another user's restriction is another query: Agent sees only extension 269.
    agent = await api.post("callHistory", creds=AGENT, before=cursor)
    assert agent["errCode"] == "bad_request", agent
    # A tampered cursor: a changed character is noticed wherever it is (but in the
    # last one, whose low bits base64 may not use).
    body, _, signature = cursor.partition(".")
    for index in range(0, len(body) - 1, 3):
        changed = body[:index] + ("A" if body[index] != "A" else "B") + body[index + 1 :]
        answer = await api.post(
            "callHistory", creds=SUPERVISOR, limit=1, before=f"{changed}.{signature}"
        )
        assert answer["errCode"] == "bad_request", (index, answer)


async def test_nothing_but_the_sentinel_reaches_an_idle_subscriber(
    api: ApiClient, sockets: list[WsClient]
) -> None:
    """The sentinel itself: what the other tests rely on to know nothing else came."""
    for events in await settle(api, *sockets):
        assert events == []
    answer = await api.post("dispatchEvent", creds=SUPERVISOR, event={"name": SENTINEL})
    assert answer["delivered"] == 3
    for ws in sockets:
        event = await ws.next_event()
        assert call_object(event)["origin"] == "api"


@pytest.mark.parametrize(
    "server_overrides",
    [{"roles": {"operator": {"extends": "operator", "own_calls_only": False}}}],
    ids=["own_calls_only=false"],
)
async def test_a_role_may_show_every_call_to_its_users(
    api: ApiClient, simulator: PbxSimulator, sockets: list[WsClient], other: dict[str, str]
) -> None:
    """``own_calls_only = false``: an operator sees other extensions' calls too."""
    _, other_ws, _ = sockets
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=0.2)
    ended = (await events_until(other_ws, "call.ended"))[-1]
    assert ended["extension"] == "269"

    async def stored() -> bool:
        return await _history(api, other) == [ended["callId"]]

    await eventually(stored)
    whoami = await api.post("whoami", creds=other)
    assert whoami["ownCallsOnly"] is False, whoami
