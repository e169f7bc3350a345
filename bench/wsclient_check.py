"""Checks that ``WsClient`` (bench/wsclient.py) counts what a frame-by-frame reading
counts, on byte streams recorded from the real server and the baseline.

    PYTHONPATH=.:src .venv/bin/python -m bench.wsclient_check

The receiver reads each chunk's frame headers only and takes the feed's timestamps
from the whole chunk with one ``findall``; ``FrameByFrame`` below is the reading it
replaced (every payload sliced, scanned for ``errCode``, searched for the
``Timestamp``). The check records what a few clients of the server (catch-all and
filtered subscribers, their ``onEvent`` answers, the server's own ``call.*`` events)
and of the fan-out baseline receive while the feeder sends the ``ast20`` feed, with
the chunks as they came off the socket, adds control frames (pings, a binary frame, a
close), and replays every stream into both readers, as recorded and cut at random
places (seeded), with the same clock. Events, other messages, every latency (in
order), answers and the frames written back (pongs) must be equal. It ends with the
CPU each reader spends per frame on the recorded streams. Not part of the test suite:
it starts the server and the baseline (a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import wsclient
from bench.common import child, credentials, snapshot_source
from bench.feeder import AmiFeeder
from bench.feeds import make_feed, operator_number
from bench.wsclient import Recorder, WsClient, connect_many


class FrameByFrame(WsClient):
    """The reference: each frame sliced out and read on its own (the former reader)."""

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            upgraded = self._upgrade(buffer)
            if upgraded is None:
                return
            buffer = upgraded
        now = time.time()
        position = 0
        size = len(buffer)
        while size - position >= 2:
            first = buffer[position]
            length = buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            position = end
            if opcode in {0x1, 0x2}:
                self._data(buffer[start:end], now)
            else:
                self._control(opcode, buffer[start:end])
        self._buffer = buffer[position:]


class _Recording(WsClient):
    """A live client that also keeps every chunk it received, as it came."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.chunks: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        super().data_received(data)


class _Transport:
    """Stands in for the socket on replay: keeps what the reader writes back."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def _server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked frame, as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


def _frames(stream: bytes) -> list[bytes]:
    """``stream`` split into whole frames (headers included)."""
    frames: list[bytes] = []
    position = 0
    while position < len(stream):
        length = stream[position + 1] & 0x7F
        start = position + 2
        if length == 126:
            length = int.from_bytes(stream[start : start + 2], "big")
            start += 2
        elif length == 127:
            length = int.from_bytes(stream[start : start + 8], "big")
            start += 8
        frames.append(stream[position : start + length])
        position = start + length
    return frames


def _frames_after_handshake(stream: bytes) -> list[bytes]:
    """The handshake's answer, then each frame: one chunk each."""
    head = stream.index(b"\r\n\r\n") + 4
    return [stream[:head], *_frames(stream[head:])]


def _with_controls(stream: bytes) -> bytes:
    """``stream`` with pings, a pong and a binary frame put between its frames here
    and there, and a close at the end (what a short live run hardly ever shows)."""
    frames = _frames_after_handshake(stream)
    extra = [
        _server_frame(0x9, b""),
        _server_frame(0x9, b"ping-payload"),
        _server_frame(0x2, b'{"event":"x","Timestamp":"1.5"}'),
        _server_frame(0xA, b""),
    ]
    step = max(1, len(frames) // (len(extra) + 1))
    for index, frame in enumerate(extra):
        frames.insert(min(len(frames), 1 + (index + 1) * step + index), frame)
    frames.append(_server_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
    return b"".join(frames)


def _recut(stream: bytes, rng: random.Random, largest: int) -> list[bytes]:
    """``stream`` cut at random places into pieces of 1..``largest`` bytes."""
    pieces: list[bytes] = []
    position = 0
    while position < len(stream):
        size = rng.randint(1, largest)
        pieces.append(stream[position : position + size])
        position += size
    return pieces


def _replay(cls: type[WsClient], chunks: list[bytes], now: float) -> dict[str, Any]:
    """Feed ``chunks`` to a fresh ``cls`` reader; what it counted and answered."""
    loop = asyncio.new_event_loop()
    clock = wsclient.time.time
    try:
        asyncio.set_event_loop(loop)

        async def run() -> dict[str, Any]:
            recorder = Recorder()
            client = cls(recorder)
            transport = _Transport()
            client.transport = transport  # type: ignore[assignment]
            answered: list[object] = []
            client._answer = answered.append  # type: ignore[method-assign]
            wsclient.time.time = lambda: now  # type: ignore[assignment]
            for chunk in chunks:
                if transport.aborted:
                    break
                client.data_received(chunk)
            return {
                "events": recorder.events,
                "other": recorder.other,
                "latencies": recorder.latencies,
                "answers": answered,
                "written": transport.written,
                "close_code": client.close_code,
                "left": client._buffer,
            }

        return loop.run_until_complete(run())
    finally:
        wsclient.time.time = clock  # type: ignore[assignment]
        asyncio.set_event_loop(None)
        loop.close()


async def _record(rate: int, seconds: float) -> dict[str, list[list[bytes]]]:
    """Streams (chunk lists) received by clients of the server and of the baseline."""
    streams: dict[str, list[list[bytes]]] = {}
    async with AmiFeeder() as feeder:
        for name, module, args in (
            ("server", "bench._server", {"ami_user": "check"}),
            ("baseline", "bench._baseline", {"mode": "fanout"}),
        ):
            before = set(feeder.sessions)
            async with child(module, {**args, "pbx_port": feeder.port}) as proc:
                await feeder.wait_logged_in(len(before) + 1)
                session = set(feeder.sessions) - before
                host, port = proc.info["ws_url"].removeprefix("ws://").split("/")[0].split(":")
                clients: list[Any] = await connect_many(host, int(port), 3, Recorder())
                # connect_many makes WsClients; record with fresh _Recording ones.
                for client in clients:
                    client.close()
                recording = [
                    await _Recording.connect(host, int(port), Recorder()) for _ in range(3)
                ]
                operator = {
                    **credentials("op"),
                    "name": "Newchannel",
                    "event": {"name": "Newchannel", "CallerIDNum": operator_number(0)},
                }
                catch_all = {**credentials("sup"), "name": "*"}
                for index, client in enumerate(recording):
                    argument = operator if index == 0 else catch_all
                    await client.call({"method": "onEvent", "argument": dict(argument)})
                feed = make_feed("ast20", operators=1, catch_all=2)
                await feeder.blast(feed, rate, seconds, only=session)
                await asyncio.sleep(1.0)
                for client in recording:
                    client.close()
                streams[name] = [client.chunks for client in recording]
    return streams


def _cpu_per_frame(cls: type[WsClient], chunks: list[bytes], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        result = _replay(cls, chunks, 0.0)
    frames = result["events"] + result["other"] + len(result["answers"])
    return (time.process_time() - started) / repeat / max(1, frames) * 1e6


def main() -> int:
    """Record, compare, print; exit status 1 on any difference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=3000, help="feed events/s while recording")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vwell-check-src-") as tmp:
        snapshot_source(Path(tmp))
        streams = asyncio.run(_record(args.rate, args.seconds))
    rng = random.Random(args.seed)
    now = time.time()
    failures = 0
    for name, clients in streams.items():
        for index, chunks in enumerate(clients):
            stream = b"".join(chunks)
            controls = _with_controls(stream)
            cuts = {
                "as received": chunks,
                "with control frames": _frames_after_handshake(controls),
                "the same, cut 1-4096": _recut(controls, rng, 4096),
                "cut into 1-64 bytes": _recut(stream, rng, 64),
                "cut into 1-4096 bytes": _recut(stream, rng, 4096),
                "one piece": [stream],
            }
            for cut, pieces in cuts.items():
                expected = _replay(FrameByFrame, pieces, now)
                got = _replay(WsClient, pieces, now)
                same = got == expected
                same_latencies = got["latencies"] == expected["latencies"]
                failures += not same
                print(
                    f"{name} client {index} {cut:<22} chunks={len(pieces):>6} "
                    f"events={got['events']:>6} (reference {expected['events']}) "
                    f"other={got['other']:>5} ({expected['other']}) "
                    f"answers={len(got['answers'])} ({len(expected['answers'])}) "
                    f"written={len(got['written'])} ({len(expected['written'])}) "
                    f"latencies {'equal' if same_latencies else 'DIFFER'}"
                    f" -> {'same' if same else 'DIFFERENT'}"
                )
    for name, clients in streams.items():
        chunks = clients[-1]
        with contextlib.suppress(ZeroDivisionError):
            old = _cpu_per_frame(FrameByFrame, chunks, 5)
            new = _cpu_per_frame(WsClient, chunks, 5)
            print(
                f"{name}: CPU per frame on the recorded chunks ({len(chunks)} chunks): "
                f"frame by frame {old:.2f} µs, WsClient {new:.2f} µs"
            )
    print("all equal" if not failures else f"{failures} DIFFERENT")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
