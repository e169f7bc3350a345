"""What an action handler is and what it may use of its connection.

A handler is one small coroutine per AMI action::

    async def ping(session: ActionSession, action: Message, action_id: str | None) -> None:
        session.send(response("Success", action_id, ("Ping", "Pong"), ...))

It answers through ``session.send`` (never awaiting a client), reads and changes the
simulated PBX through ``session.sim``, and ends the connection by raising
``SessionEnd`` (after a failed login, on ``Logoff``). ``action_id`` is the action's
``ActionID``, or ``None`` when it has none or a blank one (Asterisk then answers
without one).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from vwell_pbx.protocol import Message, encode_message

if TYPE_CHECKING:  # the simulator is only a type here; it imports this package
    from vwell_pbx.simulator.server import PbxSimulator

Pairs = list[tuple[str, str]]


class SessionEnd(Exception):
    """Raised by a handler to end its connection (the session closes the socket)."""


class ActionSession(Protocol):
    """The connection an action arrived on, as a handler sees it."""

    sim: PbxSimulator
    authenticated: bool
    events_on: bool
    challenge: str | None

    def send(self, data: bytes) -> None:
        """Write to this client without awaiting (a client that does not read is dropped)."""
        ...

    def holding_events(self) -> AbstractContextManager[None]:
        """Keep events for this client back until the block ends, then send them.

        A sync ``Originate`` answers only when the call is decided; the events that
        happened meanwhile reach the client after that answer, as Asterisk does it.
        """
        ...


Handler = Callable[[ActionSession, Message, "str | None"], Coroutine[Any, Any, None]]


def response(status: str, action_id: str | None, *pairs: tuple[str, str]) -> bytes:
    """``Response: status``, the ``ActionID`` when there is one, then ``pairs``, encoded."""
    headers: Pairs = [("Response", status)]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    headers.extend(pairs)
    return encode_message(headers)


def with_action_id(headers: Pairs, action_id: str | None) -> Pairs:
    """``headers`` with ``ActionID`` appended when the action had one (list items)."""
    return [*headers, ("ActionID", action_id)] if action_id is not None else headers
