"""The simulator's answers against the recorded Asterisk 20 transcripts.

For each transcript connection the same actions are replayed, in order, to a simulator
configured like the lab box (user ``vwell``); each answer must have the recorded header
keys in the recorded order and the same values, except values that depend on time or
on randomness.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.support.ami_peer import Connect, RawAmi, keys
from tests.support.simulator import fast_simulator
from tests.support.transcripts import transcript
from vwell_pbx.protocol import Message

DYNAMIC = {
    "timestamp",
    "challenge",
    "corestartupdate",
    "corestartuptime",
    "corereloaddate",
    "corereloadtime",
    "coreprocessedcalls",
}
UNSUPPORTED = {
    "sippeers",
    "sipshowpeer",
    "extensionstatelist",
    "extensionstate",
    "listcommands",
    "waitevent",
    "bridgelist",
}
COMPARED = {
    "01": None,  # None: every action with an ActionID
    "02": None,
    "03": None,
    "05": {
        "conn1-2",
        "conn1-3",
        "conn1-4",
        "conn1-5",
        "conn1-6",
        "conn1-7",
        "conn1-13",
        "conn1-14",
        "conn1-15",
        "conn1-16",
        "conn1-17",
        "conn1-18",
        "conn1-19",
        "conn1-20",
        "conn1-21",
        "upper-case-keys",
        "pipelined-1",
        "pipelined-2",
        "no-action-header",
        "conn1-25",
    },
    "07": {"redirect-missing", "conn1-1"},
    "08": {
        "conn1-1",
        "cmd-version",
        "cmd-nonexistent",
        "cmd-empty-output",
        "cmd-missing-header",
        "conn1-2",
    },
    "09": {
        "conn1-1",
        "orig-sync-app",
        "orig-async-chanunavail",
        "orig-sync-chanunavail",
        "orig-async-busy",
        "orig-bogus-tech",
        "orig-missing-channel",
        "orig-bad-context",
    },
}


def _same(ours: Message, recorded: Message) -> None:
    assert keys(ours) == keys(recorded), (ours, recorded)
    for (key, value), (_, expected) in zip(ours.headers, recorded.headers, strict=True):
        if key.lower() not in DYNAMIC:
            assert value == expected, (key, ours, recorded)


@pytest.mark.parametrize("prefix", sorted(COMPARED))
async def test_answers_match_transcript(prefix: str, connect: Connect) -> None:
    wanted = COMPARED[prefix]
    messages = transcript(prefix)
    conns = sorted({conn for conn, _, _ in messages})
    async with fast_simulator(
        username="vwell",
        secret="vwellsecret",
        gsm=False,
        auth_failure_delay=0.01,
        call_hold=0.05,
        contexts=["DLPN_DialPlan269"],
    ) as sim:
        compared = 0
        for conn in conns:
            client: RawAmi = await connect(sim)
            await client.banner()
            answers = {
                m.action_id: m
                for c, d, m in messages
                if c == conn and d == "S->C" and m.kind.value == "response"
            }
            challenge = ""
            for c, direction, action in messages:
                if c != conn or direction != "C->S" or action.action_id is None:
                    continue
                name = (action.get("Action") or "").lower()
                if name in UNSUPPORTED:
                    continue
                if wanted is not None and action.action_id not in wanted and name != "login":
                    continue
                pairs = list(action.headers)
                if prefix == "02" and action.get("Key"):
                    key = hashlib.md5((challenge + "vwellsecret").encode()).hexdigest()
                    pairs = [(k, key if k == "Key" else v) for k, v in pairs]
                if pairs[0][0].lower() != "action":
                    client.send_raw("".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n")
                else:
                    client.send(*pairs)
                ours = await client.response(action.action_id)
                challenge = ours.get("Challenge") or challenge
                recorded = answers.get(action.action_id)
                if recorded is not None and (wanted is None or action.action_id in wanted):
                    _same(ours, recorded)
                    compared += 1
        assert compared >= 2


async def test_command_version_text_matches(connect: Connect) -> None:
    (recorded,) = [
        m for _, d, m in transcript("08") if d == "S->C" and m.action_id == "cmd-version"
    ]
    client = await connect(login=True, events="off")
    ours = await client.action(
        ("Action", "Command"), ("ActionID", "cmd-version"), ("Command", "core show version")
    )
    assert ours.headers == recorded.headers
