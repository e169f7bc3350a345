"""Benchmarks of the whole server, each with a baseline measured in the same run.

    bash bench.sh               # everything, about 8-10 minutes
    bash bench.sh --quick       # a smoke run, about 1-2 minutes
    bash bench.sh --only fanout,roundtrip [--uvloop] [--feeds ast20] [--compare-src DIR]

(``bench.sh`` raises the open-files limit and runs ``python -m bench``.)

This process is the load generator: the AMI feeder (``bench.feeder``) and every client
run here, pinned to CPU 0. The server (``bench._server``) and each baseline
(``bench._baseline``) run in their own process pinned to CPU 1. Figures are printed as
Markdown tables and written to ``bench/results/<date>.json``.

Benchmarks (see docs/performance.md for what each means and the targets):

- ``fanout``: the feeds of ``bench.feeds`` (realistic call runs recorded on Asterisk 20,
  the Yeastar / Asterisk 1.8 dialect, and the old Newchannel-only feed), N operators each
  subscribed to ``Newchannel`` with their own ``CallerIDNum`` plus 2 catch-all
  supervisors. The highest input rate with delivery p99 < 50 ms and nothing lost is
  searched by bisection over a rate ladder.
- ``broadcast``: 10 and 100 catch-all subscribers take every event.
- ``roundtrip``: ``send`` Ping with ``callbackAwait`` over 1 and 50 WebSockets, and
  ``POST /api`` from 50 keep-alive HTTP clients.
- ``connections``: 10,000 idle authenticated WebSockets.
- ``startup``: ``vwell-pbx serve`` to the first 200 from ``/health``.

Fan-out and broadcast run their targets side by side (one step each in turn): the
server, the raw baseline, a server with ``[calls] enabled = false`` (left out with
``--no-calls-off``), a server under uvloop with ``--uvloop``, and with
``--compare-src DIR`` a server importing another checkout's ``src/`` (a "before").
``--feeds`` picks feeds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    CLK_TCK,
    CORES,
    LOAD_CPU,
    OTHER_SOURCES,
    ROOT,
    SERVER_CPU,
    Child,
    CpuMeter,
    child,
    child_env,
    cpu_model,
    credentials,
    percentile,
    pin_self,
    print_table,
    raise_fd_limit,
    rss_kib,
    snapshot_source,
)
from bench.feeder import AmiFeeder
from bench.feeds import FEEDS, Feed, make_feed, operator_number
from bench.wsclient import Recorder, WsClient, connect_many

P99_LIMIT = 0.050
Row = dict[str, Any]


class Settings:
    """Durations, sizes and rate ladders for a full or a quick run."""

    def __init__(self, quick: bool, feeds: tuple[str, ...] = FEEDS) -> None:
        self.quick = quick
        self.feeds = feeds
        self.step_seconds = 2.0 if quick else 3.0
        self.drain_seconds = 2.0
        self.catch_all = 2
        # Filtered operators per feed (plus ``catch_all`` supervisors); the realistic
        # feeds first. Broadcast: catch-all subscribers per feed.
        self.fanout_sizes: dict[str, tuple[int, ...]] = (
            {"ast20": (1000,)}
            if quick
            else {"ast20": (10, 1000), "yeastar": (1000,), "newchannel": (1000,)}
        )
        self.broadcast_sizes: dict[str, tuple[int, ...]] = (
            {"ast20": (10,)} if quick else {"ast20": (10, 100), "yeastar": (10, 100)}
        )
        # Rate ladders, searched by bisection (see fanout_case).
        self.fanout_rates = (
            (2_000, 5_000, 10_000, 20_000, 30_000)
            if quick
            else (
                1_000,
                2_000,
                3_000,
                5_000,
                7_500,
                10_000,
                12_500,
                15_000,
                17_500,
                20_000,
                22_500,
                25_000,
                27_500,
                30_000,
                35_000,
                40_000,
                50_000,
                60_000,
            )
        )
        self.broadcast_rates = {
            10: (2_000, 5_000, 10_000, 15_000)
            if quick
            else (
                1_000,
                2_000,
                3_000,
                4_000,
                6_000,
                8_000,
                10_000,
                12_500,
                15_000,
                17_500,
                20_000,
                25_000,
                30_000,
            ),
            100: (500, 1_000, 2_000)
            if quick
            else (250, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000),
        }
        self.roundtrip_seconds = 2.0 if quick else 4.0
        self.connections = 1_000 if quick else 10_000
        self.startup_runs = 2 if quick else 5


# --------------------------------------------------------------------------- fan-out


async def _subscribe(clients: list[WsClient], operators: int, *, raw_baseline: bool) -> None:
    """Operators first (Newchannel + own number), the rest catch-all supervisors."""
    calls: list[Awaitable[dict[str, Any]]] = []
    for index, client in enumerate(clients):
        if index < operators:
            number = operator_number(index)
            argument: dict[str, Any] = {
                **credentials("op"),
                "name": "Newchannel",
                "event": {"name": "Newchannel", "CallerIDNum": number},
            }
        else:
            argument = {**credentials("sup"), "name": "*"}
        calls.append(client.call({"method": "onEvent", "argument": argument}))
    for answer in await asyncio.gather(*calls):
        if answer.get("err") is not None and not raw_baseline:
            raise RuntimeError(f"onEvent failed: {answer}")


async def _rss_sampler(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak[0] = max(peak[0], rss_kib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def busy_cpu_seconds() -> float:
    """CPU seconds all cores spent busy (from /proc/stat), for the noise column."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


class Target:
    """One process under load in a fan-out case (the server or the baseline), with its
    own clients, its own AMI connection at the feeder and its own copy of the feed (so
    every target gets the same sequence of events)."""

    def __init__(self, name: str, proc: Child, session: set[Any], feed: Feed) -> None:
        self.name = name
        self.proc = proc
        self.session = session
        self.feed = feed
        self.recorder = Recorder()
        self.clients: list[WsClient] = []
        self.rows: list[Row] = []
        self.operators = 0
        self.catch_all = 0
        #: Ladder indices: the highest rate that passed, the lowest that failed.
        self.passed = -1
        self.failed_at = 0

    async def connect(self, operators: int, catch_all: int) -> None:
        """Open and subscribe the clients."""
        self.operators, self.catch_all = operators, catch_all
        host, port = self.proc.info["ws_url"].removeprefix("ws://").split("/")[0].split(":")
        self.clients = await connect_many(host, int(port), operators + catch_all, self.recorder)
        await _subscribe(self.clients, operators, raw_baseline=self.name == "baseline")

    async def rebind(self, feeder: AmiFeeder, within: float = 15.0) -> bool:
        """After the process lost its AMI connection (a backlog longer than its keepalive
        Ping's timeout makes the server drop it), find the one it made again (by its
        AMI ``Username``), so later steps feed it. Returns whether it had to."""
        if self.session & feeder.sessions:
            return False
        users = {session.username for session in self.session}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    fresh = {
                        session
                        for session in feeder.sessions
                        if session.username in users and session not in self.session
                    }
                    if fresh:
                        self.session = fresh
                        return True
                    await asyncio.sleep(0.05)
        return True

    async def reconnect_if_dropped(self) -> bool:
        """After a step in which the server dropped slow clients: new clients, so the
        next step starts whole. Returns whether it had to."""
        if not any(client.closed.done() for client in self.clients):
            return False
        self.close()
        await self.connect(self.operators, self.catch_all)
        return True

    def close(self) -> None:
        """Drop the clients."""
        for client in self.clients:
            client.close()

    @property
    def searching(self) -> bool:
        """Whether the search for the highest passing rate goes on."""
        return self.failed_at - self.passed > 1


async def _attach(
    feeder: AmiFeeder,
    *,
    module: str,
    args: dict[str, Any],
    stack: contextlib.AsyncExitStack,
    name: str,
    feed: Feed,
) -> Target:
    """Start a server or baseline process and find its AMI connection at the feeder."""
    before = set(feeder.sessions)
    proc = await stack.enter_async_context(child(module, {**args, "pbx_port": feeder.port}))
    await feeder.wait_logged_in(len(before) + 1)
    return Target(name, proc, set(feeder.sessions) - before, feed)


async def _settle(target: Target, feeder: AmiFeeder, within: float = 15.0) -> None:
    """Wait until what the last step sent has been read and delivered (or ``within``):
    the feeder's buffer for this target is empty and nothing arrived for 0.3 s."""
    recorder = target.recorder
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                seen = recorder.events + recorder.other
                await asyncio.sleep(0.3)
                quiet = recorder.events + recorder.other == seen
                if quiet and feeder.write_buffered(target.session) == 0:
                    return


async def fanout_step(
    target: Target,
    *,
    feeder: AmiFeeder,
    rate: int,
    label: str,
    settings: Settings,
) -> Row:
    """One step: ``rate`` events/s for ``step_seconds`` to one target, then drain."""
    recorder = target.recorder
    pid = target.proc.pid
    recorder.reset()
    peak = [0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_rss_sampler(pid, peak, stop))
    server_cpu, load_cpu = CpuMeter(pid), CpuMeter(os.getpid())
    server_cpu.start()
    load_cpu.start()
    busy0, t0 = busy_cpu_seconds(), time.perf_counter()
    result = await feeder.blast(target.feed, rate, settings.step_seconds, only=target.session)
    expected = result.expected
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.drain_seconds):
            while recorder.events < expected:  # noqa: ASYNC110  (counted in data_received)
                await asyncio.sleep(0.01)
    server_pct, load_pct = server_cpu.percent(), load_cpu.percent()
    server_seconds = server_cpu.seconds()
    others = (
        100.0 * (busy_cpu_seconds() - busy0) / (time.perf_counter() - t0) - server_pct - load_pct
    )
    stop.set()
    await sampler
    latencies = sorted(recorder.latencies)
    lost = expected - recorder.events
    p99 = percentile(latencies, 0.99)
    closed = sum(1 for c in target.clients if c.closed.done())
    ok = lost == 0 and p99 < P99_LIMIT and result.rate >= 0.95 * rate
    print(
        f"  {target.name:<15} {label:<22} {rate:>6}/s: p99={p99 * 1e3:7.1f} ms lost={lost} "
        f"sent={result.rate:,.0f}/s srv={server_pct:.0f}% load={load_pct:.0f}% "
        f"others={others:.0f}% rss={peak[0] / 1024:.0f} MB closed={closed} "
        f"other_msgs={recorder.other}",
        flush=True,
    )
    return {
        "target": target.name,
        "case": label,
        "subs": len(target.clients),
        "rate_in": rate,
        "sent/s": result.rate,
        "delivered/s": recorder.events / result.seconds,
        "lost": lost,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": p99 * 1e3,
        "srv_cpu%": server_pct,
        "srv_cpu_s": server_seconds,
        "sent": result.sent,
        "load_cpu%": load_pct,
        "others_cpu%": max(0.0, others),
        "srv_rss_MB": peak[0] / 1024,
        "closed": closed,
        "other_msgs": recorder.other,
        "ok": ok,
    }


async def _step_and_recover(
    target: Target, *, feeder: AmiFeeder, rate: int, label: str, settings: Settings
) -> Row:
    """One step, its drain, and whatever the next step needs put back: the target's AMI
    connection if it lost it, its clients if the server dropped some."""
    row = await fanout_step(target, feeder=feeder, rate=rate, label=label, settings=settings)
    await _settle(target, feeder)
    if await target.rebind(feeder):
        print(f"  {target.name}: lost its AMI connection, found it again")
        row["ami_reconnected"] = True
    if await target.reconnect_if_dropped():
        print(f"  {target.name}: clients dropped by the server, reconnected")
    return row


async def fanout_case(
    feeder: AmiFeeder,
    *,
    label: str,
    feed_name: str,
    operators: int,
    catch_all: int,
    rates: tuple[int, ...],
    settings: Settings,
    variants: list[tuple[str, str, dict[str, Any]]],
) -> list[Target]:
    """Server(s) and baseline side by side, each searching ``rates`` (ascending) for the
    highest rate that passes, by bisection (a failed step is retried once: the machine
    is shared, and noise can make a step fail, hardly pass). The targets take turns,
    one step each, so noise hits them alike. Clients the server dropped are replaced
    before the next step, and each step starts once the previous one has drained."""
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for name, module, args in variants:
            feed = make_feed(feed_name, operators=operators, catch_all=catch_all)
            targets.append(
                await _attach(feeder, module=module, args=args, stack=stack, name=name, feed=feed)
            )
        for target in targets:
            target.failed_at = len(rates)
            await target.connect(operators, catch_all)
            # Warm-up (first allocations, caches) outside the measured steps.
            await feeder.blast(target.feed, 500, 1.0, only=target.session)
        await asyncio.sleep(0.5)
        for target in targets:
            await _settle(target, feeder)
        while any(target.searching for target in targets):
            for target in targets:
                if not target.searching:
                    continue
                index = (target.passed + target.failed_at + 1) // 2
                for _attempt in range(2):
                    row = await _step_and_recover(
                        target, feeder=feeder, rate=rates[index], label=label, settings=settings
                    )
                    if row["ok"]:
                        break
                target.rows.append(row)
                if row["ok"]:
                    target.passed = index
                else:
                    target.failed_at = index
        for target in targets:
            target.close()
        await asyncio.sleep(0.5)
    return targets


def best(rows: list[Row]) -> Row | None:
    """The highest-rate step that passed."""
    passed = [row for row in rows if row["ok"]]
    return max(passed, key=lambda row: row["rate_in"]) if passed else None


def first_failure(rows: list[Row], above: int) -> Row | None:
    """The lowest-rate step above ``above`` that failed (what the limit looked like)."""
    failed = [row for row in rows if not row["ok"] and row["rate_in"] > above]
    return min(failed, key=lambda row: row["rate_in"]) if failed else None


async def with_server(
    feeder: AmiFeeder,
    run: Callable[[Child], Awaitable[list[Row]]],
    *,
    uvloop: bool = False,
    ws_queue_size: int = 1000,
    src: str | None = None,
) -> list[Row]:
    """Run ``run`` against a fresh server process (``src``: see ``child_env``)."""
    args: dict[str, Any] = {
        "pbx_port": feeder.port,
        "uvloop": uvloop,
        "ws_queue_size": ws_queue_size,
    }
    if src is not None:
        args["src"] = src
    async with child("bench._server", args) as server:
        return await run(server)


async def with_baseline(
    mode: str, feeder: AmiFeeder, run: Callable[[Child], Awaitable[list[Row]]]
) -> list[Row]:
    """Run ``run`` against a fresh baseline process."""
    async with child("bench._baseline", {"mode": mode, "pbx_port": feeder.port}) as base:
        return await run(base)


def fanout_cases(settings: Settings, *, broadcast: bool) -> list[tuple[str, str, int, int]]:
    """(label, feed, operators, catch-all subscribers) of each case, realistic feeds first."""
    cases: list[tuple[str, str, int, int]] = []
    for feed_name in settings.feeds:
        if broadcast:
            sizes = settings.broadcast_sizes.get(feed_name, ())
            cases += [(f"{feed_name} broadcast {n}", feed_name, 0, n) for n in sizes]
        else:
            sizes = settings.fanout_sizes.get(feed_name, ())
            catch_all = settings.catch_all
            cases += [
                (f"{feed_name} filtered {n}+{catch_all}", feed_name, n, catch_all) for n in sizes
            ]
    return cases


def _cpu_at_common_rate(ours: list[Row], other: list[Row]) -> str:
    """The two servers' CPU at the highest rate both passed (``"15,000/s: 81 % vs 53 %"``):
    the tracker's cost finer than the ladder's steps. "-" if they share no passed step."""
    passed = {row["rate_in"]: row for row in other if row["ok"]}
    common = [row for row in ours if row["ok"] and row["rate_in"] in passed]
    if not common:
        return "-"
    row = max(common, key=lambda r: r["rate_in"])
    return (
        f"{row['rate_in']:,}/s: {row['srv_cpu%']:.0f} % vs "
        f"{passed[row['rate_in']]['srv_cpu%']:.0f} %"
    )


async def bench_fanout(
    feeder: AmiFeeder, settings: Settings, uvloop: bool, broadcast: bool, calls_off: bool = True
) -> tuple[list[Row], list[Row]]:
    """Fan-out (or broadcast) steps against the server and the baseline; summary rows."""
    all_rows: list[Row] = []
    summary: list[Row] = []
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("server", "bench._server", {"ami_user": "server"}),
        ("baseline", "bench._baseline", {"mode": "fanout"}),
    ]
    if uvloop:
        variants.append(("server+uvloop", "bench._server", {"uvloop": True, "ami_user": "uv"}))
    if calls_off:
        variants.append(("server-no-calls", "bench._server", {"calls": False, "ami_user": "nc"}))
    if "before" in OTHER_SOURCES:
        variants.append(("before", "bench._server", {"src": "before", "ami_user": "before"}))
    for label, feed_name, operators, catch_all in fanout_cases(settings, broadcast=broadcast):
        rates = settings.broadcast_rates[catch_all] if broadcast else settings.fanout_rates
        targets = await fanout_case(
            feeder,
            label=label,
            feed_name=feed_name,
            operators=operators,
            catch_all=catch_all,
            rates=rates,
            settings=settings,
            variants=variants,
        )
        for target in targets:
            all_rows.extend(target.rows)
        base = best(next(t for t in targets if t.name == "baseline").rows)
        calls_off_best = next((best(t.rows) for t in targets if t.name == "server-no-calls"), None)
        for target in targets:
            if target.name == "baseline":
                continue
            ours = best(target.rows)
            above = first_failure(target.rows, ours["rate_in"] if ours else 0)
            row: Row = {
                "case": label,
                "target": target.name,
                "max_rate_in": ours["rate_in"] if ours else 0,
                "delivered/s": ours["delivered/s"] if ours else 0.0,
                "p99_ms": ours["p99_ms"] if ours else float("nan"),
                "srv_cpu%": ours["srv_cpu%"] if ours else float("nan"),
                "srv_rss_MB": ours["srv_rss_MB"] if ours else float("nan"),
                "load_cpu%": ours["load_cpu%"] if ours else float("nan"),
                "others_cpu%": ours["others_cpu%"] if ours else float("nan"),
                "next_failed": (
                    f"{above['rate_in']:,}: p99 {above['p99_ms']:.0f} ms, lost {above['lost']}, "
                    f"srv {above['srv_cpu%']:.0f}%"
                    if above
                    else "-"
                ),
                "baseline_max_rate": base["rate_in"] if base else 0,
                "ratio": (ours["rate_in"] / base["rate_in"]) if ours and base else float("nan"),
                "ceiling_hit": ours is not None and ours["rate_in"] == rates[-1],
            }
            if target.name == "server" and calls_off_best is not None:
                row["vs_no_calls"] = (
                    ours["rate_in"] / calls_off_best["rate_in"] if ours else float("nan")
                )
                row["cpu_vs_no_calls"] = _cpu_at_common_rate(
                    target.rows, next(t for t in targets if t.name == "server-no-calls").rows
                )
            summary.append(row)
    return all_rows, summary


# ------------------------------------------------------------------------ round trip


def _ping_envelope() -> dict[str, Any]:
    return {
        "method": "send",
        "argument": {**credentials("op"), "callbackAwait": 1, "fields": {"action": "Ping"}},
    }


async def ws_pings(ws_url: str, sockets: int, seconds: float, pid: int) -> Row:
    """``sockets`` WebSockets each doing send Ping round trips in a closed loop."""
    host, port = ws_url.removeprefix("ws://").split("/")[0].split(":")
    clients = await connect_many(host, int(port), sockets, Recorder())
    for client in clients:  # log in once per socket, outside the timing
        await client.call(_ping_envelope())
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def one(client: WsClient) -> None:
        nonlocal errors
        while loop.time() < deadline:
            started = time.perf_counter()
            answer = await client.call(_ping_envelope())
            latencies.append(time.perf_counter() - started)
            if answer.get("err") is not None:
                errors += 1

    cpu, load = CpuMeter(pid), CpuMeter(os.getpid())
    cpu.start()
    load.start()
    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in clients))
    elapsed = time.perf_counter() - started
    pct, load_pct = cpu.percent(), load.percent()
    for client in clients:
        client.close()
    latencies.sort()
    return {
        "req/s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
        "srv_cpu%": pct,
        "load_cpu%": load_pct,
    }


async def http_posts(url: str, clients: int, seconds: float, pid: int) -> Row:
    """``clients`` keep-alive HTTP clients each POSTing send Ping in a closed loop."""
    body = json.dumps(_ping_envelope()).encode()
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Content-Type": "application/json"}

        async def once() -> bool:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                return response.status == 200 and b'"err":null' in payload

        await asyncio.gather(*(once() for _ in range(clients)))  # open the connections
        deadline = loop.time() + seconds

        async def one() -> None:
            nonlocal errors
            while loop.time() < deadline:
                started = time.perf_counter()
                ok = await once()
                latencies.append(time.perf_counter() - started)
                errors += not ok

        cpu, load = CpuMeter(pid), CpuMeter(os.getpid())
        cpu.start()
        load.start()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        pct, load_pct = cpu.percent(), load.percent()
    latencies.sort()
    return {
        "req/s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
        "srv_cpu%": pct,
        "load_cpu%": load_pct,
    }


async def ami_pings(feeder: AmiFeeder, concurrency: int, seconds: float) -> Row:
    """The raw AMI Ping baseline, run in its own process on the server's core."""
    args = {"mode": "ping", "pbx_port": feeder.port, "concurrency": concurrency, "seconds": seconds}
    async with child("bench._baseline", args) as proc:
        assert proc.proc.stdout is not None
        stdout = proc.proc.stdout
        cpu, load = CpuMeter(proc.pid), CpuMeter(os.getpid())
        cpu.start()
        load.start()
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), seconds + 30)
        pct, load_pct = cpu.percent(), load.percent()
    result = json.loads(line)
    return {
        "req/s": result["count"] / result["seconds"],
        "p50_ms": result["p50"] * 1e3,
        "p99_ms": result["p99"] * 1e3,
        "errors": 0,
        "srv_cpu%": pct,
        "load_cpu%": load_pct,
    }


async def bench_roundtrip(
    feeder: AmiFeeder, settings: Settings, uvloop: bool
) -> tuple[list[Row], list[Row]]:
    """Round trips through the API and their baselines."""
    seconds = settings.roundtrip_seconds
    rows: list[Row] = []
    summary: list[Row] = []
    variants: list[tuple[str, bool, str | None]] = [("server", False, None)]
    if uvloop:
        variants.append(("server+uvloop", True, None))
    if "before" in OTHER_SOURCES:
        variants.append(("before", False, "before"))
    for name, use_uvloop, src in variants:

        async def run(proc: Child, name: str = name) -> list[Row]:
            out: list[Row] = []
            for sockets in (1, 50):
                row = await ws_pings(proc.info["ws_url"], sockets, seconds, proc.pid)
                out.append({"case": f"WS send Ping x{sockets}", "target": name, **row})
            row = await http_posts(proc.info["http_url"] + "/api", 50, seconds, proc.pid)
            out.append({"case": "POST /api x50", "target": name, **row})
            return out

        rows.extend(await with_server(feeder, run, uvloop=use_uvloop, src=src))
    for concurrency in (1, 50):
        row = await ami_pings(feeder, concurrency, seconds)
        rows.append(
            {"case": f"WS send Ping x{concurrency}", "target": "baseline: raw AMI Ping", **row}
        )

    async def bare(proc: Child) -> list[Row]:
        row = await http_posts(proc.info["http_url"] + "/api", 50, seconds, proc.pid)
        return [{"case": "POST /api x50", "target": "baseline: bare aiohttp", **row}]

    rows.extend(await with_baseline("http", feeder, bare))
    for row in rows:
        if row["target"].startswith("baseline"):
            continue
        base = next(
            r for r in rows if r["case"] == row["case"] and r["target"].startswith("baseline")
        )
        summary.append(
            {
                "case": row["case"],
                "target": row["target"],
                "req/s": row["req/s"],
                "p50_ms": row["p50_ms"],
                "p99_ms": row["p99_ms"],
                "baseline_req/s": base["req/s"],
                "ratio": row["req/s"] / base["req/s"],
            }
        )
    return rows, summary


# ----------------------------------------------------------------------- connections


async def idle_connections(ws_url: str, count: int, pid: int, *, baseline: bool) -> Row:
    """Open ``count`` WebSockets and authenticate each; RSS per connection."""
    host, port = ws_url.removeprefix("ws://").split("/")[0].split(":")
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    recorder = Recorder()
    started = time.perf_counter()
    clients = await connect_many(host, int(port), count, recorder, concurrency=200)
    connected = time.perf_counter() - started
    semaphore = asyncio.Semaphore(500)

    async def login(client: WsClient) -> bool:
        async with semaphore:
            answer = await client.call(
                {"method": "rmEvent", "argument": {**credentials("op"), "all": True}}
            )
            return answer.get("err") is None

    oks = await asyncio.gather(*(login(c) for c in clients))
    authenticated = time.perf_counter() - started
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    alive = sum(1 for c in clients if not c.closed.done())
    for client in clients:
        client.close()
    await asyncio.sleep(1.0)
    return {
        "target": "baseline: bare aiohttp WS" if baseline else "server",
        "connections": count,
        "authenticated": sum(oks),
        "alive": alive,
        "connect_s": connected,
        "connect+auth_s": authenticated,
        "rss_before_MB": before / 1024,
        "rss_after_MB": after / 1024,
        "KB_per_conn": (after - before) / count,
    }


async def bench_connections(feeder: AmiFeeder, settings: Settings) -> list[Row]:
    """Idle authenticated WebSockets on the server and on the bare aiohttp baseline."""
    count = settings.connections

    async def ours(proc: Child) -> list[Row]:
        return [await idle_connections(proc.info["ws_url"], count, proc.pid, baseline=False)]

    async def base(proc: Child) -> list[Row]:
        return [await idle_connections(proc.info["ws_url"], count, proc.pid, baseline=True)]

    rows = await with_server(feeder, ours)
    rows += await with_baseline("fanout", feeder, base)
    return rows


# --------------------------------------------------------------------------- startup


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _time_to_health(argv: list[str], url: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "taskset",
        "-c",
        str(SERVER_CPU),
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return time.perf_counter() - started
                await asyncio.sleep(0.005)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def bench_startup(feeder: AmiFeeder, settings: Settings) -> list[Row]:
    """``vwell-pbx serve`` (real CLI, real config file) to the first 200 from /health."""
    from bench._server import add_users, make_config  # noqa: PLC0415

    env = child_env()
    ours: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="vwell-bench-") as tmp:
        folder = Path(tmp)
        await add_users(make_config(folder, {"pbx_port": feeder.port}))
        for _ in range(settings.startup_runs):
            http_port, ws_port = _free_port(), _free_port()
            config = folder / "app-config.toml"
            config.write_text(
                f'[server]\nhttp = "127.0.0.1:{http_port}"\nws = "127.0.0.1:{ws_port}"\n'
                'log_level = "warning"\n'
                f'[users]\ndatabase = "{folder / "users.sqlite3"}"\n'
                f'[[pbx]]\nname = "office"\nhost = "127.0.0.1"\nport = {feeder.port}\n'
                'username = "bench"\nsecret = "bench"\nauth = "plain"\n'
            )
            ours.append(
                await _time_to_health(
                    [sys.executable, "-m", "vwell_pbx.cli", "serve", "--config", str(config)],
                    f"http://127.0.0.1:{http_port}/health",
                    env,
                )
            )
            port = _free_port()
            bare.append(
                await _time_to_health(
                    [
                        sys.executable,
                        "-m",
                        "bench._baseline",
                        json.dumps({"mode": "http", "port": port}),
                    ],
                    f"http://127.0.0.1:{port}/health",
                    env,
                )
            )
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    return [
        {
            "target": "vwell-pbx serve",
            "runs": len(ours),
            "median_s": ours_median,
            "max_s": max(ours),
            "baseline_median_s": bare_median,
            "ratio": ours_median / bare_median,
        }
    ]


# ------------------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected benchmarks; return everything for the JSON file."""
    settings = Settings(args.quick, tuple(args.feeds.split(",")) if args.feeds else FEEDS)
    only = (
        set(args.only.split(","))
        if args.only
        else {"fanout", "broadcast", "roundtrip", "connections", "startup"}
    )
    results: dict[str, Any] = {}
    if only & {"fanout", "broadcast"}:
        feeds = [
            {"feed": name, **make_feed(name, operators=1000, catch_all=2).describe()}
            for name in settings.feeds
        ]
        print_table("Feeds", feeds)
        results["feeds"] = feeds
    async with AmiFeeder() as feeder:
        if "startup" in only:
            rows = await bench_startup(feeder, settings)
            print_table("Start-up: spawn to the first 200 from /health", rows)
            results["startup"] = rows
        if "fanout" in only:
            steps, summary = await bench_fanout(
                feeder, settings, args.uvloop, broadcast=False, calls_off=not args.no_calls_off
            )
            print_table("Fan-out steps", steps)
            print_table("Fan-out: highest input rate with p99 < 50 ms and nothing lost", summary)
            results["fanout"] = {"steps": steps, "summary": summary}
        if "broadcast" in only:
            steps, summary = await bench_fanout(
                feeder, settings, args.uvloop, broadcast=True, calls_off=not args.no_calls_off
            )
            print_table("Broadcast steps", steps)
            print_table("Broadcast: highest input rate with p99 < 50 ms and nothing lost", summary)
            results["broadcast"] = {"steps": steps, "summary": summary}
        if "roundtrip" in only:
            rows, summary = await bench_roundtrip(feeder, settings, args.uvloop)
            print_table("Round trips", rows)
            print_table("Round trips against their baselines", summary)
            results["roundtrip"] = {"rows": rows, "summary": summary}
        if "connections" in only:
            rows = await bench_connections(feeder, settings)
            print_table("Idle authenticated WebSockets", rows)
            results["connections"] = rows
    return results


def _git_state() -> str:
    """HEAD and whether src/ has uncommitted changes (what exactly was measured)."""
    import subprocess  # noqa: PLC0415

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip()

    dirty = bool(git("status", "--porcelain", "--", "src"))
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted src changes" if dirty else "")


def cli() -> None:
    """``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    parser.add_argument(
        "--only", help="comma-separated: fanout,broadcast,roundtrip,connections,startup"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="also run the server under uvloop (if installed)"
    )
    parser.add_argument(
        "--no-calls-off",
        action="store_true",
        help="leave out the server without the call tracker ([calls] enabled = false)",
    )
    parser.add_argument("--feeds", help="comma-separated, of: " + ",".join(FEEDS))
    parser.add_argument(
        "--compare-src",
        type=Path,
        help="also run the server from this src/ folder (another checkout's), side by side",
    )
    args = parser.parse_args()
    pin_self(LOAD_CPU)
    limit = raise_fd_limit()
    started = dt.datetime.now(dt.UTC)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "cores": CORES,
        "cpu": cpu_model(),
        "git": _git_state(),
        "command": "bash bench.sh " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "fd_limit": limit,
        "server_cpu": SERVER_CPU,
        "load_cpu": LOAD_CPU,
    }
    print(
        f"vwell-pbx-srv benchmarks: cores={CORES} (os.cpu_count()), {meta['cpu']}, python "
        f"{meta['python']}, server on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}, "
        f"open files {limit}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="vwell-bench-src-") as tmp:
        snapshot_source(Path(tmp))
        if args.compare_src is not None:
            meta["compare_src"] = str(args.compare_src)
            snapshot_source(Path(tmp) / "compare", args.compare_src.resolve(), name="before")
        results = asyncio.run(main(args))
    meta["seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started.strftime('%Y-%m-%dT%H%M%S')}.json"
    path.write_text(json.dumps({"meta": meta, **results}, indent=1, default=str))
    print(f"\nwritten {path.relative_to(ROOT)} ({meta['seconds']} s)")


if __name__ == "__main__":
    cli()
