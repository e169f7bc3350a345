"""Ended calls are freed by reference counting, not left for the garbage collector.

A channel points at its call and a call at its first channel, so an ended call would be a
reference cycle that only a garbage collection frees. At thousands of PBX events a
second those collections were the server's longest stalls (docs/performance.md), so the
tracker cuts the cycle once a call has ended and its last channel is gone. Each stream
below (the real recordings, the old-dialect scripts, two long protocol transcripts, and
every one of them joined halfway through) runs with the collector off; a collection
afterwards that keeps what it finds (``DEBUG_SAVEALL``) must find no tracker object.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.calls.replay import TRANSCRIPTS, Stream, feed, load_recording, load_script
from vwell_pbx.calls import CallRules, CallTracker
from vwell_pbx.calls.state import Call, Channel

STREAMS: dict[str, Stream] = {
    **{f"rec{n}": load_recording(str(n)) for n in range(13, 24)},
    **{f"old{n:02d}": load_script(f"{n:02d}") for n in range(1, 8)},
    "transcript07": load_recording("07", folder=TRANSCRIPTS, conn="conn1"),
    "transcript10": load_recording("10", folder=TRANSCRIPTS, conn="conn1"),
}


@contextmanager
def unreachable_found() -> Iterator[list[object]]:
    """The objects that became unreachable inside the block and only a collection frees."""
    found: list[object] = []
    flags = gc.get_debug()
    was_enabled = gc.isenabled()
    gc.collect()  # whatever earlier tests left behind is not ours to count
    gc.disable()
    try:
        yield found
        gc.set_debug(flags | gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("half", [False, True], ids=["whole", "joined_halfway"])
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_ended_calls_need_no_garbage_collection(name: str, half: bool) -> None:
    events = STREAMS[name].events
    if half:
        events = events[len(events) // 2 :]
    tracker = CallTracker(pbx="lab")
    with unreachable_found() as found:
        reported = feed(tracker, events)
        del reported
    assert [obj for obj in found if isinstance(obj, Call | Channel)] == []


def test_the_check_sees_a_cycle() -> None:
    """The check above can fail: a call and a channel pointing at each other are found."""
    tracker = CallTracker(pbx="lab")
    with unreachable_found() as found:
        feed(tracker, STREAMS["rec13"].events[:5])
        call = Call(call_id="cycle", started_ms=0)
        info = CallRules().classify("SIP/1-1")
        call.origin = Channel(uniqueid="1.1", name="SIP/1-1", info=info, call=call, created_ms=0)
        del call
    assert any(isinstance(obj, Call) and obj.call_id == "cycle" for obj in found)
