"""Events whose handlers read only a few headers get fields of only those
(``_FEW_READS``): each such handler, and the helper it reads through, must read no
other header, and its fields must still answer as ``Message.get`` does."""

from __future__ import annotations

import inspect
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from vwell_pbx.calls.tracker import _FEW_READS, _READ_KEYS, CallTracker
from vwell_pbx.protocol import Message

# The helpers a few-reads handler may hand its event to, with what they read.
_HELPERS = {"_known": {"Uniqueid", "Channel"}}


def _code(function: object) -> str:
    """A function's source without its docstring (which may say "event")."""
    return re.sub(r'"""[\s\S]*?"""', "", inspect.getsource(function))  # type: ignore[arg-type]


def _handler_source(tracker: CallTracker, event_name: str) -> str:
    handler, _ = tracker._routes_folded[event_name.lower()]
    return _code(handler)


def test_few_reads_handlers_read_only_their_list() -> None:
    tracker = CallTracker(pbx="lab")
    for event_name, keys in _FEW_READS.items():
        source = _handler_source(tracker, event_name)
        read = set(re.findall(r'event\.get\("([A-Za-z0-9]+)"\)', source))
        passed = set(re.findall(r"self\.(_[a-z_]+)\(event\b", source))
        assert passed <= set(_HELPERS), (event_name, passed)
        for helper in passed:
            read |= _HELPERS[helper]
        assert read <= keys, (event_name, read - keys)
        # Every other use of ``event`` is one of the look-ups counted above.
        uses = len(re.findall(r"\bevent\b", source))
        counted = len(re.findall(r'event\.get\("', source)) + len(
            re.findall(r"self\._[a-z_]+\(event\b", source)
        )
        assert uses == counted + 1, event_name  # + 1: the parameter itself


def test_known_reads_what_the_list_says() -> None:
    source = _code(CallTracker._known)
    assert set(re.findall(r'event\.get\("([A-Za-z0-9]+)"\)', source)) == _HELPERS["_known"]
    assert len(re.findall(r"\bevent\b", source)) == 3  # the parameter and two look-ups


@st.composite
def headers(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    keys = draw(st.lists(st.sampled_from([*sorted(_READ_KEYS), "Privilege"]), max_size=12))
    pairs = [("Event", draw(st.sampled_from(sorted(_FEW_READS))))]
    for key in keys:
        spelling = draw(st.sampled_from([key, key.lower(), key.upper()]))
        pairs.append((spelling, draw(st.sampled_from(["1.1", "", "SIP/269-1"]))))
    return tuple(pairs)


@settings(max_examples=200)
@given(st.lists(headers(), min_size=1, max_size=8))
def test_few_reads_fields_answer_as_message_get_does(
    layouts: list[tuple[tuple[str, str], ...]],
) -> None:
    tracker = CallTracker(pbx="lab")
    for pairs in [*layouts, *reversed(layouts)]:  # new layouts, then remembered ones
        message = Message(headers=pairs)
        _, reader = tracker._routes_folded[pairs[0][1].lower()]
        fields = tracker._fields(Message(headers=pairs), reader)
        for key in _FEW_READS[pairs[0][1]]:
            assert fields.get(key) == message.get(key), key
