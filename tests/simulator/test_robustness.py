"""Bad clients, faults on demand, shutdown hygiene and the command-line entry point."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

import pytest

from tests.support.ami_peer import Connect, RawAmi
from tests.support.simulator import fast_simulator
from tests.support.waiting import until
from vwell_pbx.protocol import Message
from vwell_pbx.simulator import PbxSimulator, cli
from vwell_pbx.simulator.cli import build_parser, serve
from vwell_pbx.simulator.server import MAX_LINE


async def test_too_long_line_disconnects_only_that_client(
    pbx: PbxSimulator, connect: Connect
) -> None:
    good = await connect(login=True, events="off")
    bad = await connect(login=True, events="off")
    bad.send_raw(b"Action: Ping\r\nX: " + b"a" * (MAX_LINE + 10))
    assert await bad.closed()
    assert (await good.action(("Action", "Ping"), ("ActionID", "still"))).get("Ping") == "Pong"


async def test_garbage_disconnects(connect: Connect) -> None:
    for garbage in (
        b"\x00\x01\x02binary\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"hello there\r\n\r\n",
    ):
        client = await connect()
        await client.banner()
        client.send_raw(garbage)
        assert await client.closed()


async def test_too_many_headers_disconnect(connect: Connect) -> None:
    client = await connect(login=True, events="off")
    client.send_raw(b"Action: Ping\r\n" + b"X: y\r\n" * 400 + b"\r\n")
    assert await client.closed()


async def test_emit_respects_login_and_events(pbx: PbxSimulator, connect: Connect) -> None:
    anonymous = await connect()
    await anonymous.banner()
    listener = await connect(login=True)
    pbx.emit(Message.build(("Event", "Custom"), ("Key", "v")))
    event = await listener.event(lambda m: m.name == "Custom")
    assert event.get("Key") == "v"
    bye = await anonymous.action(("Action", "Logoff"), ("ActionID", "b"))
    assert bye.name == "Goodbye"  # nothing arrived before the answer


async def test_drop_connections_and_counts(pbx: PbxSimulator, connect: Connect) -> None:
    clients = [await connect(login=True, events="off") for _ in range(3)]
    assert pbx.connections == 3
    pbx.drop_connections()
    for client in clients:
        assert await client.closed()
    await until(lambda: pbx.connections == 0)
    again = await connect(login=True, events="off")
    assert (await again.action(("Action", "Ping"), ("ActionID", "p"))).get("Ping") == "Pong"


async def test_mute_then_recover(pbx: PbxSimulator, connect: Connect) -> None:
    old = await connect(login=True, events="off")
    pbx.mute = True
    fresh = await connect()
    await until(lambda: pbx.connections == 2)
    old.send(("Action", "Ping"), ("ActionID", "lost"))
    try:
        await fresh.banner(wait=0.2)
        raise AssertionError("a muted PBX sent its banner")
    except TimeoutError:
        pass
    try:
        await old.next(wait=0.2)
        raise AssertionError("a muted PBX answered")
    except TimeoutError:
        pass
    pbx.mute = False
    assert (await fresh.banner()).line.startswith("Asterisk Call Manager/")
    assert (await old.action(("Action", "Ping"), ("ActionID", "back"))).get("Ping") == "Pong"


async def test_stop_closes_everything_and_leaks_no_tasks(connect: Connect) -> None:
    before = {t for t in asyncio.all_tasks() if not t.done()}
    sim = fast_simulator(call_hold=30, auth_failure_delay=5)
    await sim.start()
    client = await connect(sim, login=True)
    waiting = await connect(sim)
    await waiting.banner()
    waiting.send(("Action", "Login"), ("Username", "admin"), ("Secret", "bad"))
    await sim.incoming_call(hold=30)
    sim.start_traffic(5)
    client.send(
        ("Action", "Originate"), ("ActionID", "sync"), ("Channel", "SIP/901"), ("Exten", "1")
    )
    await until(lambda: any(a.name == "Originate" for a in sim.actions_received))
    await asyncio.wait_for(sim.stop(), 3)
    assert await client.closed()
    assert sim.live_channels == [] and sim.connections == 0
    await asyncio.sleep(0)
    leaked = {t for t in asyncio.all_tasks() if not t.done()} - before
    assert leaked == set()


async def test_cli_serves_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--username",
            "u",
            "--secret",
            "s",
            "--dialect",
            "yeastar",
            "--spans",
            "2,3",
        ]
    )
    assert (args.host, args.username, args.secret, args.traffic) == ("127.0.0.1", "u", "s", 0)
    assert args.spans == [2, 3]
    assert build_parser().parse_args([]).port == 5038
    stop = asyncio.Event()
    task = asyncio.create_task(serve(args, stop))
    out: list[str] = []

    def printed() -> str:
        out.append(capsys.readouterr().out)
        return "".join(out)

    await until(lambda: "listening on" in printed())
    banner = printed().strip()
    assert banner.startswith("PBX simulator (yeastar) listening on 127.0.0.1:"), banner
    reader, writer = await asyncio.open_connection("127.0.0.1", int(banner.rsplit(":", 1)[1]))
    assert (await RawAmi(reader, writer).banner()).line == "Asterisk Call Manager/1.1"
    writer.close()
    stop.set()
    assert await asyncio.wait_for(task, 3) == 0


def test_cli_legacy_originate_events_option() -> None:
    assert not cli.simulator_from_args(build_parser().parse_args([])).engine.legacy_originate_events
    args = build_parser().parse_args(["--legacy-originate-events"])
    assert cli.simulator_from_args(args).engine.legacy_originate_events


def test_cli_rejects_a_bad_span_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--spans", "2,x"])
    assert exited.value.code == 2
    assert "--spans" in capsys.readouterr().err


async def test_cli_traffic_reaches_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["--port", "0", "--traffic", "50"])
    stop = asyncio.Event()
    sims: list[PbxSimulator] = []
    original = cli.simulator_from_args

    def capture(namespace: argparse.Namespace) -> PbxSimulator:
        sim = original(namespace)
        sims.append(sim)
        return sim

    monkeypatch.setattr(cli, "simulator_from_args", capture)
    task = asyncio.create_task(serve(args, stop))
    await until(lambda: bool(sims) and sims[0].port != 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", sims[0].port)
    client = RawAmi(reader, writer)
    assert (await client.login()).name == "Success"
    await client.event(lambda m: m.name == "Newchannel")
    writer.close()
    stop.set()
    assert await asyncio.wait_for(task, 3) == 0


def test_python_dash_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vwell_pbx.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "--traffic" in result.stdout and "--dialect" in result.stdout
