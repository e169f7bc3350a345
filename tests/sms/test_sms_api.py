"""gsmSendSMS, smsStatus, smsHistory and the sms.* events through the real server and
simulator: the answer and the statuses, keys, bounds, bad input, the inbox of every
backend, and who sees which SMS."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from tests.support import ADMIN, AGENT, SUPERVISOR, ApiClient, WsClient, add_user
from tests.support.waiting import until
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.users import sha1_of_password
from vwell_pbx.web.server import RunningServer

# A second operator, and an operator whose role sees the inbox of span 3.
OTHER = {"login": "Agent", "login2": "Петров П.П.", "sha1": sha1_of_password("other-pw")}
INBOX = {"login": "desk", "login2": "Front desk", "sha1": sha1_of_password("desk-pw")}


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    return {
        "roles": {"inbox": {"extends": "operator", "sms_spans": ["3", "dongle0"]}},
        "sms": {"lease_seconds": 5, "poll_seconds": 0.1, "answer_seconds": 2},
    }


@pytest.fixture
async def users(server: RunningServer) -> None:
    await add_user(server.config, OTHER, role="operator")
    await add_user(server.config, INBOX, role="inbox")


async def subscribed(api: ApiClient, creds: dict[str, str], name: str = "sms.*") -> WsClient:
    ws = await api.ws()
    answer = await ws.call("onEvent", creds=creds, name=name)
    assert answer["err"] is None, answer
    return ws


async def statuses_of(ws: WsClient, sms_id: str, until: str) -> list[str]:
    seen = []
    while not seen or seen[-1] != until:
        event = await ws.next_event(within=10)
        if event.get("smsId") == sms_id:
            seen.append(event["status"])
    return seen


def no_events(ws: WsClient) -> list[dict[str, Any]]:
    return [ws.events.get_nowait() for _ in range(ws.events.qsize())]


async def test_the_answer_the_statuses_and_the_events(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    ws = await subscribed(api, AGENT, "sms.status")
    answer = await api.post("gsmSendSMS", tel="+7 100 200 30 40", msg="Привет", reqId=1)
    assert answer["err"] is None and answer["reqId"] == 1, answer
    sms_id = answer["smsId"]
    assert len(sms_id) == 32 and int(sms_id, 16) >= 0
    assert {k: answer[k] for k in ("status", "tel", "backend", "direction", "duplicate")} == {
        "status": "queued",
        "tel": "81002003040",
        "backend": "yeastar",
        "direction": "out",
        "duplicate": False,
    }
    assert answer["span"] is None  # span "auto": found when it is sent
    assert await statuses_of(ws, sms_id, "sent") == ["queued", "sending", "sent"]
    status = await api.post("smsStatus", smsId=sms_id.upper())
    assert (status["status"], status["span"], status["attempts"], status["text"]) == (
        "sent",
        "2",
        1,
        "Привет",
    )
    assert status["doneAt"].endswith("Z") and status["error"] is None
    assert [(s.number, s.text) for s in simulator.sms_sent] == [("81002003040", "Привет")]


async def test_wait_answers_with_the_final_status(api: ApiClient, simulator: PbxSimulator) -> None:
    simulator.fail_sms("error")
    failed = await api.post("gsmSendSMS", tel="100", msg="x", wait=True)
    assert failed["err"] is None, failed  # the request was fine; the SMS failed
    assert failed["status"] == "failed" and "rejected" in failed["error"]
    sent = await api.post("gsmSendSMS", tel="100", msg="y", wait=True, timeout=5000)
    assert sent["status"] == "sent"


async def test_the_same_key_concurrently_is_one_sms(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    answers = await asyncio.gather(
        *(api.post("gsmSendSMS", tel="100", msg=f"try {i}", key="crm-order-17") for i in range(6))
    )
    assert len({a["smsId"] for a in answers}) == 1, answers
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 5
    await until(lambda: len(simulator.sms_sent) >= 1)
    later = await api.post("gsmSendSMS", tel="100", msg="again", key="crm-order-17", wait=True)
    assert later["smsId"] == answers[0]["smsId"] and later["status"] == "sent"
    assert len(simulator.sms_sent) == 1
    # The key is the user's own: another user's same key is another SMS.
    other = await api.post("gsmSendSMS", creds=ADMIN, tel="100", msg="x", key="crm-order-17")
    assert other["smsId"] != answers[0]["smsId"]


@pytest.mark.parametrize("server_overrides", [{"sms": {"outbox_max_per_user": 2}}])
async def test_a_full_outbox_answers_sms_queue_full(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    simulator.mute = True  # nothing gets sent: the outbox fills
    try:
        codes = [
            (await api.post("gsmSendSMS", tel="100", msg=f"m{i}"))["errCode"] for i in range(3)
        ]
        assert codes == [None, None, "sms_queue_full"]
        full = await api.post("gsmSendSMS", tel="100", msg="m")
        assert "outbox_max_per_user" in full["err"]
        assert (await api.post("gsmSendSMS", creds=ADMIN, tel="100", msg="m"))["err"] is None
    finally:
        simulator.mute = False


@pytest.mark.parametrize(
    ("argument", "where"),
    [
        ({"smsId": "12345"}, "argument.smsId must be an SMS id"),
        ({"smsId": "z" * 32}, "argument.smsId must be an SMS id"),
        ({}, "argument.smsId is required"),
    ],
)
async def test_sms_status_bad_ids(api: ApiClient, argument: dict[str, Any], where: str) -> None:
    answer = await api.post("smsStatus", **argument)
    assert answer["errCode"] == "bad_request" and answer["err"].startswith(where), answer


async def test_sms_status_of_an_unknown_id(api: ApiClient) -> None:
    answer = await api.post("smsStatus", smsId="0" * 32)
    assert answer["errCode"] == "not_found", answer
    assert "argument.smsId" in answer["err"]


@pytest.mark.parametrize(
    ("argument", "where"),
    [
        ({"direction": "sideways"}, "argument.direction"),
        ({"status": "lost"}, "argument.status"),
        ({"status": ["sent", "lost"]}, "argument.status"),
        ({"limit": 1001}, "argument.limit"),
        ({"limit": 0}, "argument.limit"),
        ({"since": "yesterday"}, "argument.since"),
        ({"until": "2024-13-40"}, "argument.until"),
        ({"before": "not a cursor"}, "argument.before"),
        ({"before": base64.urlsafe_b64encode(b"nan:1").decode()}, "argument.before"),
        ({"number": "x" * 65}, "argument.number"),
        ({"number": "+7 (978) 12a"}, "argument.number"),
        ({"sender": "100"}, "argument.sender is not an argument of this method"),
    ],
)
async def test_sms_history_bad_filters(
    api: ApiClient, argument: dict[str, Any], where: str
) -> None:
    answer = await api.post("smsHistory", **argument)
    assert answer["errCode"] == "bad_request" and where in answer["err"], answer


async def test_a_text_over_the_backends_limit(api: ApiClient, simulator: PbxSimulator) -> None:
    # 500 Cyrillic letters: within the 512 characters any text may have, but the CLI line
    # would be over 1000 bytes, more than Asterisk's line buffer takes.
    answer = await api.post("gsmSendSMS", tel="100", msg="Ж" * 500)
    assert answer["errCode"] == "bad_request" and answer["err"].startswith("argument.msg"), answer
    assert "too long for the PBX" in answer["err"]
    over = await api.post("gsmSendSMS", tel="100", msg="x" * 513)
    assert over["errCode"] == "bad_request" and "argument.msg" in over["err"]
    history = await api.post("smsHistory", creds=ADMIN)
    assert history["messages"] == []  # nothing was stored
    assert simulator.sms_sent == []


async def test_history_pages_newest_first(api: ApiClient) -> None:
    ids = [(await api.post("gsmSendSMS", tel=f"10{i}", msg=f"m{i}"))["smsId"] for i in range(5)]
    seen: list[str] = []
    before = None
    while True:
        page = await api.post("smsHistory", limit=2, **({"before": before} if before else {}))
        assert page["err"] is None, page
        seen += [m["smsId"] for m in page["messages"]]
        before = page["next"]
        if before is None:
            break
    assert seen == list(reversed(ids))
    by_number = await api.post("smsHistory", number="+7 (103)")  # normalised like all numbers
    assert by_number["messages"] == []
    exact = await api.post("smsHistory", number="103", direction="out")
    assert [m["smsId"] for m in exact["messages"]] == [ids[3]]


@pytest.mark.usefixtures("users")
async def test_operators_see_their_own_sms_only(api: ApiClient) -> None:
    mine_ws = await subscribed(api, AGENT)
    other_ws = await subscribed(api, OTHER)
    boss_ws = await subscribed(api, SUPERVISOR)
    mine = await api.post("gsmSendSMS", tel="100", msg="mine", wait=True)
    assert mine["status"] == "sent"
    assert await statuses_of(boss_ws, mine["smsId"], "sent") == ["queued", "sending", "sent"]
    assert await statuses_of(mine_ws, mine["smsId"], "sent") == ["queued", "sending", "sent"]
    assert no_events(other_ws) == []
    hidden = await api.post("smsStatus", creds=OTHER, smsId=mine["smsId"])
    assert hidden["errCode"] == "not_found"  # the same answer as for an id that does not exist
    assert (await api.post("smsHistory", creds=OTHER))["messages"] == []
    assert len((await api.post("smsHistory", creds=SUPERVISOR))["messages"]) == 1
    assert (await api.post("smsStatus", creds=ADMIN, smsId=mine["smsId"]))["text"] == "mine"


@pytest.mark.usefixtures("users")
@pytest.mark.parametrize(
    ("shape", "span", "options"),
    [
        ("mypbx", "3", {"span": 3, "parts": 3, "order": [3, 1, 2]}),
        ("tg", "3", {"span": 3, "parts": 2}),
        ("dongle", "dongle0", {}),
    ],
)
async def test_incoming_sms_of_each_backend(
    api: ApiClient, simulator: PbxSimulator, shape: str, span: str, options: dict[str, Any]
) -> None:
    text = "Входящее: код 4321, 100% готово\nвторая строка"
    desk_ws = await subscribed(api, INBOX)
    agent_ws = await subscribed(api, AGENT, "*")  # every event its role allows
    simulator.incoming_sms("+7 978 734-27-41", text, shape=shape, **options)  # type: ignore[arg-type]
    event = await desk_ws.next_event(within=10)
    assert event["name"] == "sms.received"
    assert {k: event[k] for k in ("fromNumber", "span", "text", "direction", "status")} == {
        "fromNumber": "89787342741",
        "span": span,
        "text": text,
        "direction": "in",
        "status": "received",
    }
    assert event["receivedAt"].endswith("Z") and event["undecodable"] is False
    history = await api.post("smsHistory", creds=INBOX, direction="in")
    assert [m["smsId"] for m in history["messages"]] == [event["smsId"]]
    assert (await api.post("smsStatus", creds=INBOX, smsId=event["smsId"]))["text"] == text
    # The operator without the span sees neither the SMS nor the PBX's raw events of it.
    await asyncio.sleep(0)  # (the events were published before the desk's arrived)
    assert [e["name"] for e in no_events(agent_ws)] == []
    assert (await api.post("smsHistory", creds=AGENT, direction="in"))["messages"] == []
    hidden = await api.post("smsStatus", creds=AGENT, smsId=event["smsId"])
    assert hidden["errCode"] == "not_found"


@pytest.mark.usefixtures("users")
async def test_raw_incoming_events_follow_the_span_rule(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    desk_ws = await subscribed(api, INBOX, "ReceivedSMS")
    agent_ws = await subscribed(api, AGENT, "ReceivedSMS")
    boss_ws = await subscribed(api, SUPERVISOR, "ReceivedSMS")
    simulator.incoming_sms("100", "not for the desk", span=2)
    simulator.incoming_sms("100", "for the desk", span=3)
    raw = await boss_ws.next_event()
    assert raw["GsmSpan"] == "2"
    assert (await boss_ws.next_event())["GsmSpan"] == "3"
    assert (await desk_ws.next_event())["GsmSpan"] == "3"  # only its span
    assert no_events(desk_ws) == [] and no_events(agent_ws) == []


async def test_undecodable_bytes_are_stored_and_kept(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    boss_ws = await subscribed(api, SUPERVISOR, "sms.received")
    data = "Привет".encode("cp1251") + b" \xff"
    simulator.incoming_sms("+79780000000", data=data, shape="tg", span=2)
    event = await boss_ws.next_event(within=10)
    assert event["undecodable"] is True
    assert base64.b64decode(event["raw"]) == data
    assert "\ufffd" in event["text"]
    stored = await api.post("smsStatus", creds=SUPERVISOR, smsId=event["smsId"])
    assert stored["err"] is None and stored["raw"] == event["raw"]


async def test_sms_status_events_carry_filters(api: ApiClient, simulator: PbxSimulator) -> None:
    """An onEvent field filter works on the record: here, only failures."""
    ws = await api.ws()
    answer = await ws.call("onEvent", event={"name": "sms.status", "status": "failed"})
    assert answer["err"] is None
    ok = await api.post("gsmSendSMS", tel="100", msg="fine", wait=True)
    assert ok["status"] == "sent"
    simulator.fail_sms("error")
    bad = await api.post("gsmSendSMS", tel="100", msg="refused", wait=True)
    assert bad["status"] == "failed"
    event = await ws.next_event()
    assert (event["smsId"], event["status"], event["tel"]) == (bad["smsId"], "failed", "100")
    assert no_events(ws) == []
