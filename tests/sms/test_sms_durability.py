"""Nothing lost, nothing doubled: the outbox across a SIGKILL of ``vwell-pbx serve`` and a
restart, and a PBX that goes away mid-queue. (Two instances on one PostgreSQL, one of
them killed mid-send: tests/instances/test_shared_sms.py.)

The server runs as a real process (``python -m vwell_pbx.cli serve``) with a configuration
file; the PBX is the simulator in this test process, which records every SMS it was
asked to send, so the test counts what really reached the PBX and compares it with what
``smsHistory`` says.

What must hold after the dust settles, whatever the moment of the kill or the outage:

- every SMS reaches a final status (none stays queued or sending);
- an SMS reported ``sent`` reached the PBX exactly once;
- an SMS reported ``unknown`` reached it at most once, and at most one SMS per
  interruption is ``unknown`` (the one in flight);
- no SMS reached the PBX twice; none failed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.storage.pg_cluster import free_port
from tests.support import ADMIN, add_test_users, make_config
from tests.support.waiting import until
from vwell_pbx.config import load_config
from vwell_pbx.simulator import PbxSimulator
from vwell_pbx.web.server import serving

SERVE = [sys.executable, "-m", "vwell_pbx.cli", "serve"]
COUNT = 20


class ServerProcess:
    """One ``vwell-pbx serve`` process; its output is read all along (a full pipe would
    block the server) and kept."""

    def __init__(self, config: Path, env: Mapping[str, str], http_port: int) -> None:
        self.config = config
        self.env = {**os.environ, **env}
        self.url = f"http://127.0.0.1:{http_port}/api"
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *SERVE,
            "--config",
            str(self.config),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await until(lambda: self._seen("connected to"), within=30)

    def _seen(self, marker: str) -> bool:
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError("the server exited:\n" + "".join(self.lines[-40:]))
        return any(marker in line for line in self.lines)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace"))

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()
        if self._reader is not None:
            await self._reader

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader


def config_text(*, http_port: int, pbx_port: int, storage_url: str, sms: Mapping[str, Any]) -> str:
    lines = [
        "[server]",
        f'http = "127.0.0.1:{http_port}"',
        'ws = ""',
        "[storage]",
        f'url = "{storage_url}"',
        "[limits]",
        "sms_per_minute_user = 100000",
        "requests_per_second = 10000",
        "burst = 10000",
        "[[pbx]]",
        'name = "office"',
        'host = "127.0.0.1"',
        f"port = {pbx_port}",
        'username = "admin"',
        'secret = "admin"',
        "connect_timeout = 2",
        "reconnect_max = 0.5",
        "[sms]",
        "span = 2",
        *(f"{key} = {value}" for key, value in sms.items()),
    ]
    return "\n".join(lines) + "\n"


FAST_SMS = {
    "interval_seconds": 0.2,
    "lease_seconds": 2,
    "poll_seconds": 0.1,
    "answer_seconds": 1,
    "retry_seconds": 0.5,
}


async def post(
    session: aiohttp.ClientSession, url: str, method: str, **argument: Any
) -> dict[str, Any]:
    async with session.post(url, json={"method": method, "argument": {**ADMIN, **argument}}) as r:
        assert r.status == 200, await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


async def queue_sms(session: aiohttp.ClientSession, url: str, count: int) -> dict[str, str]:
    """Queue ``count`` SMS with distinct texts; their ids by text."""
    ids = {}
    for index in range(count):
        text = f"durable {index:02d}"
        answer = await post(session, url, "gsmSendSMS", tel="100", msg=text)
        assert answer["status"] == "queued", answer
        ids[text] = answer["smsId"]
    return ids


async def final_statuses(
    session: aiohttp.ClientSession, url: str, ids: Mapping[str, str], within: float
) -> dict[str, str]:
    """Wait until every SMS has a final status; the statuses by text."""
    statuses: dict[str, str] = {}

    async def settled() -> bool:
        history = await post(session, url, "smsHistory", direction="out", limit=1000)
        assert history["err"] is None, history
        by_id = {m["smsId"]: m["status"] for m in history["messages"]}
        statuses.clear()
        statuses.update({text: by_id.get(sms_id, "missing") for text, sms_id in ids.items()})
        return all(s in ("sent", "failed", "unknown") for s in statuses.values())

    async with asyncio.timeout(within):
        while not await settled():
            await asyncio.sleep(0.2)
    return statuses


def check_counts(
    statuses: Mapping[str, str], sim: PbxSimulator, *, interruptions: int
) -> collections.Counter[str]:
    """The invariants of the module docstring; the statuses counted."""
    reached = collections.Counter(sms.text for sms in sim.sms_sent if sms.ok)
    assert max(reached.values(), default=0) <= 1, reached  # nothing doubled
    for text, status in statuses.items():
        if status == "sent":
            assert reached[text] == 1, (text, status, reached[text])
        else:
            assert status == "unknown", (text, status)
            assert reached[text] <= 1
    counted = collections.Counter(statuses.values())
    assert counted["unknown"] <= interruptions, counted
    return counted


async def prepared(tmp_path: Path, sim: PbxSimulator, storage_url: str) -> tuple[Path, int]:
    """A configuration file for one server process, and the test users."""
    http_port = free_port()
    path = tmp_path / f"app-config-{http_port}.toml"
    path.write_text(
        config_text(http_port=http_port, pbx_port=sim.port, storage_url=storage_url, sms=FAST_SMS),
        encoding="utf-8",
    )
    await add_test_users(load_config(path, env={}))
    return path, http_port


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sigkill_mid_queue_then_restart(tmp_path: Path) -> None:
    async with (
        PbxSimulator(username="admin", secret="admin", sms_answer_delay=0.1) as sim,
        aiohttp.ClientSession() as session,
    ):
        path, port = await prepared(tmp_path, sim, f"sqlite:{tmp_path / 'vwell.sqlite3'}")
        first = ServerProcess(path, {}, port)
        await first.start()
        try:
            ids = await queue_sms(session, first.url, COUNT)
            await until(lambda: len(sim.sms_sent) >= 5, within=30)
        finally:
            await first.kill()  # mid-queue, perhaps mid-send: no shutdown code runs
        reached_at_kill = len(sim.sms_sent)
        assert reached_at_kill < COUNT
        second = ServerProcess(path, {}, port)
        await second.start()
        try:
            statuses = await final_statuses(session, second.url, ids, within=60)
        finally:
            await second.stop()
    counted = check_counts(statuses, sim, interruptions=1)
    assert counted["sent"] >= COUNT - 1, counted
    # Pacing held across the restart too: no two SMS closer than the interval.
    arrivals = [sms.at for sms in sim.sms_sent if sms.ok]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.19, gaps


async def _pbx_outage(tmp_path: Path, seconds: float) -> None:
    """The PBX goes away (listener closed, connections dropped) for ``seconds`` while SMS
    are queued; the server (in this process) retries and finishes the queue."""
    async with PbxSimulator(username="admin", secret="admin") as sim:
        config = make_config(
            tmp_path,
            sim.port,
            sms={**FAST_SMS, "span": 2},
            limits={"sms_per_minute_user": 100000},
        )
        await add_test_users(config)
        async with serving(config, wait_for_pbx=5) as server, aiohttp.ClientSession() as session:
            url = server.http_url + "/api"
            ids = await queue_sms(session, url, COUNT)
            await until(lambda: len(sim.sms_sent) >= 5, within=30)
            await sim.stop()  # the PBX goes away mid-queue
            reached_before = len(sim.sms_sent)
            await asyncio.sleep(seconds)  # the outage itself: nothing to wait on but time
            assert len(sim.sms_sent) == reached_before  # nothing was sent meanwhile
            await sim.start()  # the same port: the server's client reconnects
            statuses = await final_statuses(session, url, ids, within=60)
    counted = check_counts(statuses, sim, interruptions=1)
    assert counted["sent"] >= COUNT - 1, counted


@pytest.mark.slow  # a server process and seconds of PBX absence
async def test_pbx_away_for_a_few_seconds(tmp_path: Path) -> None:
    await _pbx_outage(tmp_path, 3.0)


# Half a minute of waiting: a soak test (VWELL_SOAK=1); the 3 s absence above runs in CI.
@pytest.mark.soak
@pytest.mark.timeout(180)
async def test_pbx_away_for_thirty_seconds(tmp_path: Path) -> None:
    await _pbx_outage(tmp_path, 30.0)
