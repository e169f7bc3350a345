"""``callHistory`` from the running server on each storage backend (SQLite and a
throw-away PostgreSQL): calls played by the simulator end, are stored once, and are
found by every filter and page by page, and at once after their ``call.ended``.

The server here lingers a minute before writing a call (``history_flush_seconds``, the
most there is), far longer than any of these tests: a call found in the history was
written because ``callHistory`` flushed the writer first (read your writes), never by
the writer's timer."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import pytest

from tests.calls.server_support import events_until, eventually, subscribe
from tests.support import SUPERVISOR, ApiClient
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.storage import StorageUrl
from vwell_pbx.web.server import RunningServer

LINGER = {"history_flush_seconds": 60}


@pytest.fixture
def server_overrides(storage_url: StorageUrl) -> dict[str, Any]:
    """The server's storage on the backend under test; the writer lingers (LINGER)."""
    if storage_url.backend == "sqlite":
        return {"storage": {"url": f"sqlite:{storage_url.path}"}, "calls": LINGER}
    assert storage_url.password is not None
    return {
        "storage": {"url": storage_url.dsn(), "password": storage_url.password.get_secret_value()},
        "calls": LINGER,
    }


async def _history(api: ApiClient, **filters: Any) -> dict[str, Any]:
    answer = await api.post("callHistory", creds=SUPERVISOR, **filters)
    assert answer["err"] is None, (filters, answer)
    return answer


def _ids(answer: dict[str, Any]) -> list[str]:
    return [call["callId"] for call in answer["calls"]]


async def test_history_of_played_calls_by_every_filter(
    api: ApiClient, simulator: PbxSimulator
) -> None:
    ws = await api.ws()
    await subscribe(ws, SUPERVISOR, name="call.ended")
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=0.05)
    answered = (await events_until(ws, "call.ended"))[-1]
    await simulator.incoming_call("+79780000001", span=11, to="270", answer=False, hold=0.05)
    missed = (await events_until(ws, "call.ended"))[-1]
    dialled = await api.post("dial", creds=SUPERVISOR, **{"from": "269"}, to="270", wait=True)
    internal = (await events_until(ws, "call.ended"))[-1]
    assert dialled["callId"] == internal["callId"]
    await ws.close()
    newest_first = [internal["callId"], missed["callId"], answered["callId"]]

    async def all_stored() -> bool:
        return len(_ids(await _history(api))) == 3

    await eventually(all_stored)
    everything = await _history(api)
    assert _ids(everything) == newest_first and everything["next"] is None
    stored = {call["callId"]: call for call in everything["calls"]}
    for pushed in (answered, missed, internal):
        assert stored[pushed["callId"]] == {
            k: v for k, v in pushed.items() if k not in ("name", "eventId")
        }

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"extension": "269"}, [internal["callId"], answered["callId"]]),
        ({"extension": "270"}, [internal["callId"], missed["callId"]]),
        ({"number": "+7 978 734-27-41"}, [answered["callId"]]),  # normalised like the rest
        ({"number": "270"}, [internal["callId"], missed["callId"]]),  # from or to
        ({"extension": "269", "number": "270"}, [internal["callId"]]),
        ({"direction": "inbound"}, [missed["callId"], answered["callId"]]),
        ({"endReason": "cancelled"}, [missed["callId"]]),
        ({"since": missed["startedAt"]}, [internal["callId"], missed["callId"]]),
        ({"until": missed["startedAt"]}, [answered["callId"]]),
        ({"since": 0, "until": "9999-01-01T00:00:00"}, newest_first),
        ({"extension": "999"}, []),
    ]
    for filters, expected in cases:
        assert _ids(await _history(api, **filters)) == expected, filters

    # Page by page, one call at a time, with the cursor of each answer.
    paged: list[str] = []
    cursor = None
    for _ in range(5):
        page = await _history(api, limit=1, **({"before": cursor} if cursor else {}))
        paged += _ids(page)
        cursor = page["next"]
        if cursor is None:
            break
    assert paged == newest_first


async def _one_call_ended(api: ApiClient, simulator: PbxSimulator) -> dict[str, Any]:
    """Play an answered incoming call to 269; its pushed ``call.ended`` event."""
    ws = await api.ws()
    await subscribe(ws, SUPERVISOR, name="call.ended")
    await simulator.incoming_call("+79787342741", span=11, to="269", hold=0.05)
    ended = (await events_until(ws, "call.ended"))[-1]
    await ws.close()
    return ended


async def test_a_call_is_in_the_history_as_soon_as_its_end_is_pushed(
    api: ApiClient, simulator: PbxSimulator, server: RunningServer
) -> None:
    ended = await _one_call_ended(api, simulator)
    writer = server.api.history_writer
    assert writer is not None
    assert writer.pending == 1 and writer.written == 0  # lingering: not written yet
    # The page an integrator's script asks for right after the event has the call.
    answer = await _history(api, extension="269")
    assert _ids(answer) == [ended["callId"]]
    assert answer["calls"][0]["endReason"] == ended["endReason"]
    assert writer.pending == 0 and writer.written == 1


@pytest.mark.parametrize("storage_backend", ["sqlite"])
async def test_history_answers_from_what_is_stored_when_the_flush_cannot_finish(
    api: ApiClient, simulator: PbxSimulator, server: RunningServer, storage_url: StorageUrl
) -> None:
    """Another process holds the SQLite write lock: the writer cannot write, so the
    flush times out and ``callHistory`` answers without the call, not with an error."""
    assert storage_url.path is not None
    await _history(api)  # the cursor key is made (a write) before the lock is taken
    with contextlib.closing(sqlite3.connect(storage_url.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # the write lock, until the rollback
        ended = await _one_call_ended(api, simulator)
        assert _ids(await _history(api)) == []
        other.execute("ROLLBACK")
    writer = server.api.history_writer
    assert writer is not None and writer.pending == 1  # still in hand, not lost

    async def stored() -> bool:
        return _ids(await _history(api)) == [ended["callId"]]

    await eventually(stored)
