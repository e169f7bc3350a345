"""Pure rules for reading AMI answers: event lists, command output, success.

No asyncio here; ``AmiClient`` applies these rules to each message it reads, and the
tests check them as plain tables.

Event lists come in two styles (the recorded transcripts' notes, items 5 and 12):

* ``MARKED`` (Asterisk 1.8+, all modern actions): the response carries
  ``EventList: start``; item events carry the same ``ActionID``; the list ends with an
  event carrying ``EventList: Complete``. Its name is irregular
  (``PeerlistComplete``, ``ChannelsHungupListComplete``), so only the header counts.
* ``LEGACY`` (Asterisk 1.4 ``Status`` and friends, Yeastar MyPBX): no ``EventList``
  header, the response says ``Message: ... will follow`` and the list ends with an
  event with our ``ActionID`` whose name ends in ``Complete`` (``StatusComplete``).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from vwell_pbx.protocol import Message

OK_RESPONSES = frozenset({"success", "follows", "goodbye"})

ORIGINATE_RESULT_EVENTS: Final = ("OriginateResponse", "OriginateSuccess", "OriginateFailure")
"""The events that tell what became of an async ``Originate`` (same ``ActionID``).

Asterisk 1.6 and later (Yeastar's 1.8-based firmware included) send
``OriginateResponse`` with ``Response: Success|Failure``; Asterisk 1.4 sent
``OriginateSuccess`` or ``OriginateFailure`` instead, with the same ``Reason``,
``Uniqueid`` (``<null>`` when no channel was made) and ``Channel`` headers. Pass this
as ``AmiClient.send_action(followup=...)`` to accept whichever the PBX speaks.
"""


class ListStyle(Enum):
    """How the end of an event list is recognised."""

    MARKED = "marked"
    LEGACY = "legacy"


def is_ok(response: Message) -> bool:
    """True for ``Success``, ``Follows`` (old Command) and ``Goodbye`` (Logoff)."""
    return response.name.lower() in OK_RESPONSES


def list_style(response: Message) -> ListStyle | None:
    """The event-list style this response opens, or ``None`` if it is a plain answer."""
    marker = response.get("EventList")
    if marker is not None:
        return ListStyle.MARKED if marker.strip().lower() == "start" else None
    message = (response.get("Message") or "").strip().lower()
    if response.name.lower() == "success" and message.endswith("will follow"):
        return ListStyle.LEGACY
    return None


def ends_list(style: ListStyle | None, event: Message) -> bool:
    """True if ``event`` (already known to carry the list's ActionID) closes the list.

    ``style=None`` accepts either marker; it is used for lists whose caller gave up.
    """
    marked = (event.get("EventList") or "").strip().lower() == "complete"
    if style is ListStyle.MARKED:
        return marked
    return marked or event.name.lower().endswith("complete")


def command_output(response: Message) -> str | None:
    """``Command`` output as text, lines joined with ``"\\n"``; ``None`` if there is none.

    Asterisk 14+ sends one ``Output:`` header per line (an empty line is ``Output: ``);
    older servers send ``Response: Follows`` with raw lines, kept in ``Message.output``.
    """
    if response.output is not None:
        return "\n".join(response.output)
    lines = response.get_all("Output")
    return "\n".join(lines) if lines else None
