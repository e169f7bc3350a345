"""Pure answer rules: which responses open event lists, what closes them, Command output."""

from __future__ import annotations

import pytest

from vwell_pbx.ami.answers import ListStyle, command_output, ends_list, is_ok, list_style
from vwell_pbx.protocol import Message

M = Message.build


@pytest.mark.parametrize(
    ("response", "style"),
    [
        (
            M(("Response", "Success"), ("EventList", "start"), ("Message", "Channels will follow")),
            ListStyle.MARKED,
        ),
        (M(("Response", "Success"), ("eventlist", "Start")), ListStyle.MARKED),
        (M(("Response", "Success"), ("Message", "Channel status will follow")), ListStyle.LEGACY),
        (M(("Response", "Success"), ("Message", "Command output follows")), None),
        (M(("Response", "Success"), ("Message", "Originate successfully queued")), None),
        (M(("Response", "Error"), ("Message", "Permission denied")), None),
        (M(("Response", "Error"), ("Message", "list will follow")), None),
        (
            M(
                ("Response", "Success"),
            ),
            None,
        ),
    ],
)
def test_list_style(response: Message, style: ListStyle | None) -> None:
    assert list_style(response) is style


@pytest.mark.parametrize(
    ("style", "event", "ends"),
    [
        (ListStyle.MARKED, M(("Event", "PeerlistComplete"), ("EventList", "Complete")), True),
        (
            ListStyle.MARKED,
            M(("Event", "ChannelsHungupListComplete"), ("EventList", "Complete")),
            True,
        ),
        # The header counts, not the name: an item named ...Complete does not end a list.
        (
            ListStyle.MARKED,
            M(
                ("Event", "StatusComplete"),
            ),
            False,
        ),
        (
            ListStyle.MARKED,
            M(
                ("Event", "CoreShowChannel"),
            ),
            False,
        ),
        (ListStyle.LEGACY, M(("Event", "StatusComplete"), ("Items", "1")), True),
        (
            ListStyle.LEGACY,
            M(
                ("Event", "Status"),
            ),
            False,
        ),
        (None, M(("Event", "X"), ("EventList", "Complete")), True),
        (
            None,
            M(
                ("Event", "StatusComplete"),
            ),
            True,
        ),
    ],
)
def test_ends_list(style: ListStyle | None, event: Message, ends: bool) -> None:
    assert ends_list(style, event) is ends


def test_command_output_both_formats() -> None:
    modern = M(
        ("Response", "Success"),
        ("Message", "Command output follows"),
        ("Output", "line 1"),
        ("Output", "  indented"),
        ("Output", ""),
        ("Output", "end"),
    )
    assert command_output(modern) == "line 1\n  indented\n\nend"
    old = M(("Response", "Follows"), output=["a", "", " b"])
    assert command_output(old) == "a\n\n b"
    assert command_output(M(("Response", "Follows"), output=[])) == ""
    assert command_output(M(("Response", "Success"), ("Ping", "Pong"))) is None


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Success", True),
        ("success", True),
        ("Follows", True),
        ("Goodbye", True),
        ("Error", False),
        ("Failure", False),
    ],
)
def test_is_ok(name: str, ok: bool) -> None:
    assert is_ok(M(("Response", name))) is ok
