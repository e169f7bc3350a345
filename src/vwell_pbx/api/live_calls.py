"""The live calls of one PBX: the sans-IO ``CallTracker`` bound to its AMI connection.

``LiveCalls`` is the tracker's asyncio side, as ``AmiClient`` is the codec's:

- **Events.** It listens to the AMI client once per event name the tracker reads:
  every PBX event of those names that the reader dispatches goes, with the
  wall-clock time it was read, to the tracker's observer of its name
  (``CallTracker.observer``, which is ``observe`` without the look-up of the name:
  the client routes events by name anyway; the others, such as the ``VarSet``
  floods that are half of a busy PBX's events, stop at the client's one dict
  look-up by name, before the clock is read), and the call events that come back
  are handed to the sinks, synchronously, in order (the server's sinks publish
  them on the event bus and queue ended calls for the history). A sink must not
  block; its exceptions are logged.
- **Never stuck.** After every (re)connect, and every ``reconcile_interval`` seconds
  while connected, it reads the PBX's channel list and hands it to
  ``CallTracker.reconcile``: ``CoreShowChannels``, or, when the PBX answers that with
  an error (Asterisk 1.4), ``Status``; which one works is remembered per connection.
  The list is applied through ``send_action(on_answer=...)``, that is inside the AMI
  reader at the point of the stream where the list completed, so events read after
  it are observed after it: a ``Hangup`` that follows the list can never be
  undone by it. Calls whose channels are gone end with ``endReason: unknown``; calls
  found on the list that the tracker did not know are reported.
- **Click-to-call.** ``expect_originate`` tells the tracker about an ``Originate``
  of our own ``dial`` as soon as the PBX accepted it; ``call_id_for_action`` then
  names the call it became.

While the AMI connection is down the tracker keeps what it knew (no events arrive);
the reconciliation after the reconnect ends or rebuilds it. Every wait has a timeout
(``list_timeout`` per channel list). Memory is the tracker's (``TrackerLimits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

from vwell_pbx.ami.client import ActionResult, AmiClient, ConnectionState, ConnectionStatus
from vwell_pbx.ami.errors import AmiError
from vwell_pbx.calls import CallEvent, CallSnapshot, CallTracker
from vwell_pbx.calls.tracker import Observer
from vwell_pbx.protocol import Message

__all__ = ["CHANNEL_LIST_ACTIONS", "LiveCalls"]

log = logging.getLogger(__name__)

CHANNEL_LIST_ACTIONS: Final = ("CoreShowChannels", "Status")
"""The channel-list actions, in the order they are tried."""

CallSink = Callable[[CallEvent], None]


class LiveCalls:
    """One PBX's calls as they happen (see the module docstring).

    ``clock`` gives epoch seconds (``time.time``); ``reconcile_interval`` 0 reads the
    channel list only after a (re)connect. Call ``start()`` once the sinks are added,
    and ``aclose()`` at shutdown.
    """

    def __init__(
        self,
        client: AmiClient,
        tracker: CallTracker,
        *,
        list_timeout: float = 15.0,
        reconcile_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if list_timeout <= 0 or reconcile_interval < 0:
            raise ValueError("list_timeout must be positive and reconcile_interval >= 0")
        self.tracker = tracker
        self._client = client
        self._list_timeout = list_timeout
        self._interval = reconcile_interval
        self._clock = clock
        self._sinks: list[CallSink] = []
        self._removers: list[Callable[[], None]] = []
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._list_action: str | None = None  # the one that worked on this connection
        #: Channel lists applied so far (after connects and periodically).
        self.reconciles = 0
        #: Channel lists that could not be read (timeouts, errors, a lost connection).
        self.reconcile_failures = 0

    @property
    def pbx(self) -> str:
        """The PBX's name (the call object's ``pbx``)."""
        return self.tracker.pbx

    def add_sink(self, sink: CallSink) -> None:
        """Hand every call event to ``sink`` (synchronously, in order; must not block)."""
        self._sinks.append(sink)

    def start(self) -> None:
        """Listen to the AMI client and start the reconciliation task."""
        if self._task is not None:
            return
        # One listener per event name the tracker reads, each with the tracker's
        # observer of that name: the client routes events by name anyway, so nothing
        # looks the name up again per event.
        self._removers = [
            *(
                self._client.add_listener(
                    self._listener(self.tracker.observer(name)), events=(name,)
                )
                for name in sorted(self.tracker.CONSUMED_EVENTS)
            ),
            self._client.add_state_listener(self._on_state),
        ]
        self._task = asyncio.get_running_loop().create_task(
            self._reconcile_loop(), name=f"calls-reconcile-{self.pbx}"
        )
        if self._client.connected:
            self._due.set()

    async def aclose(self) -> None:
        """Stop listening and stop the reconciliation task."""
        for remove in self._removers:
            remove()
        self._removers = []
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- what the API reads ----------------------------------------------------------

    def active(self) -> list[CallSnapshot]:
        """The live calls, oldest first, with their durations counted up to now."""
        return self.tracker.active(self._clock())

    def now(self) -> float:
        """The tracker's clock (``expect_originate``'s ``sent`` is a reading of it)."""
        return self._clock()

    def expect_originate(
        self, action_id: str, channel: str, to_number: str | None, *, sent: float | None = None
    ) -> None:
        """An ``Originate`` of our ``dial`` was accepted: mark the call it makes.

        ``sent`` (:meth:`now` before the action was written): calls that started
        earlier are not this one's, even on the same phone (another instance's).
        """
        self.tracker.expect_originate(
            action_id, channel, self._clock(), to_number=to_number, sent=sent
        )

    def call_id_for_action(self, action_id: str) -> str | None:
        """The id of the call an ``expect_originate`` became, if it is known."""
        return self.tracker.call_id_for_action(action_id)

    # -- the event path (the AMI reader) ---------------------------------------------

    def _listener(self, observe: Observer) -> Callable[[Message], None]:
        """The AMI listener of the events one tracker observer reads (see ``start``)."""
        # A closure: it runs for nearly every event of a busy PBX, and its names are
        # then local reads rather than attribute look-ups on self.
        clock = self._clock
        emit = self._emit

        def on_event(message: Message) -> None:
            events = observe(message, clock())
            if events:
                emit(events)

        return on_event

    def _emit(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            for sink in self._sinks:
                try:
                    sink(event)
                except Exception:  # the AMI reader must never see a sink's bug
                    log.exception("PBX %s: call event sink %r failed", self.pbx, sink)

    def _on_state(self, state: ConnectionState) -> None:
        if state.status is ConnectionStatus.CONNECTED:
            self._list_action = None  # maybe another PBX (version) now
            self._due.set()

    # -- never stuck: the channel list -----------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval or None):
                    await self._due.wait()
            self._due.clear()
            if self._client.connected:
                await self.reconcile()

    async def reconcile(self) -> bool:
        """Read the channel list now and rebuild the live calls from it; ``False``
        (logged) when no list could be read."""
        actions = (self._list_action,) if self._list_action else CHANNEL_LIST_ACTIONS
        problem = "no channel-list action answered"
        for action in actions:
            try:
                result = await self._client.send_action(
                    [("Action", action)], timeout=self._list_timeout, on_answer=self._apply
                )
            except AmiError as exc:
                problem = str(exc)
                break
            if result.ok:
                self._list_action = action
                return True
            problem = f"{action}: {result.response.get('Message') or 'Error'}"
        self._list_action = None
        self.reconcile_failures += 1
        log.warning("PBX %s: cannot rebuild the live calls: %s", self.pbx, problem)
        return False

    def _apply(self, result: ActionResult) -> None:
        """Runs in the AMI reader when a channel list is complete (``on_answer``)."""
        if not result.ok:
            return
        self.reconciles += 1
        events = self.tracker.reconcile(result.events, self._clock())
        if events:
            self._emit(events)
