"""The simulated PBX's call engine: live channels and the steps every call is made of.

Every call is one asyncio task that emits events (spelt by the dialect) and sleeps
between steps. The steps are the engine's methods: a caller's channel appears, the
Dial application rings one or more phones, a phone answers and is bridged, a party
hangs up, a channel is redirected, a transfer moves parties between bridges. Each step
emits its events in the order the recordings of a real Asterisk 20 show them (and, for
``dialect="yeastar"``, in the order Asterisk 1.8's code sends them); the scenarios
(``simulator.scenarios``) and the AMI actions (``simulator.actions``) are sequences of
these steps. Invariants:

1. Events are emitted synchronously between two awaits, so the registry of live
   channels always matches what clients have been told.
2. A call task never emits from a ``finally`` block: when a Redirect, Hangup or Atxfer
   action cancels it, the action's handler has already emitted what changed.
3. A channel is in ``CallEngine.channels`` from its ``Newchannel`` until its ``Hangup``
   (under its current name: a masquerade or an attended transfer renames it).
4. A channel is in at most one bridge; a bridge is destroyed when its last member leaves.

Outcome rules for calls nobody scripted (an ``Originate``, a redirected channel):

* An endpoint's behaviour comes from ``extensions`` (key ``TECH/ext`` first, then the
  bare ``ext``), default :data:`~vwell_pbx.simulator.model.DEFAULT_EXTENSIONS`; anything
  not listed answers after ``step_delay`` seconds of ringing.
* ``Originate`` with a technology other than SIP, PJSIP, IAX2 or Local fails with
  Reason 0 (like ``Bogus/123`` in transcript 09); an UNREGISTERED non-Local endpoint
  fails with Reason 0 and no channel events (like ``SIP/100``). BUSY gives Reason 5,
  NO_ANSWER Reason 3 (after ``min(Timeout, no_answer_after)`` seconds of ringing),
  CONGESTION Reason 8, ANSWER Reason 4.
* After the originated leg answers it runs ``Exten`` in the dialplan
  (:class:`~vwell_pbx.simulator.model.Dialplan`): an application extension (``100``,
  ``700``) answers and waits ``hold`` seconds; a ring group rings its phones; another
  short number rings ``SIP/<exten>``; a longer one goes out through the first ready GSM
  span (``YSGSM/<span>``, else ``SIP/trunk``). The dialled leg behaves as its table
  entry says; once bridged, the call lasts ``hold`` seconds.
* A redirected channel leaves its bridge (the party it talked to hangs up) and runs the
  new extension the same way; a context outside ``contexts`` (when a set of contexts is
  configured) makes it hang up after one step.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vwell_pbx.protocol import Message
from vwell_pbx.simulator.dialects import Asterisk20Events
from vwell_pbx.simulator.gsm import SpanState
from vwell_pbx.simulator.model import (
    STATE_RINGING,
    STATE_UP,
    Bridge,
    Call,
    Channel,
    Dialplan,
    ExtensionBehaviour,
    IdAllocator,
)
from vwell_pbx.simulator.runs import CallRun

KNOWN_TECHS = {"sip": "SIP", "pjsip": "PJSIP", "iax2": "IAX2", "local": "Local"}
FAILURE_REASON = {
    ExtensionBehaviour.BUSY: 5,
    ExtensionBehaviour.NO_ANSWER: 3,
    ExtensionBehaviour.UNREGISTERED: 0,
    ExtensionBehaviour.CONGESTION: 8,
}
DIAL_STATUS = {
    ExtensionBehaviour.BUSY: "BUSY",
    ExtensionBehaviour.NO_ANSWER: "NOANSWER",
    ExtensionBehaviour.UNREGISTERED: "CHANUNAVAIL",
    ExtensionBehaviour.CONGESTION: "CONGESTION",
}
HANGUP_CAUSE = {
    ExtensionBehaviour.BUSY: 17,
    ExtensionBehaviour.NO_ANSWER: 19,
    ExtensionBehaviour.UNREGISTERED: 20,
    ExtensionBehaviour.CONGESTION: 34,
}
MAX_LIVE_CHANNELS = 2000  # past this, new calls fail with CONGESTION (bounded memory)
ATXFER_CODE = "*2"  # features.conf ``atxfer => *2`` on the lab PBX

Outcome = Literal["answer", "busy", "no_answer", "cancel", "unavailable", "congestion"]
"""How a Dial ends: a phone answers; every phone is busy; nobody answers before the
timeout; the caller gives up while it rings; the phone is not registered; congestion."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialScript:
    """What happens while the Dial application rings: ``outcome`` after ``ring`` seconds
    (``answer_by``: which of several phones answers; default the first)."""

    outcome: Outcome
    ring: float
    answer_by: str | None = None


@dataclass(eq=False)
class DialRun:
    """One running Dial application: who dials, the phones it rings, how it ended."""

    caller: Channel
    callees: list[Channel]
    dialstrings: list[str]
    answered: Channel | None = None


class CallEngine:
    """Live channels plus the steps that create, connect, move and end them."""

    def __init__(
        self,
        *,
        dialect: Asterisk20Events,
        emit: Callable[[Message], None],
        ids: IdAllocator,
        clock: Callable[[], float],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        extensions: dict[str, ExtensionBehaviour],
        contexts: frozenset[str] | None,
        spans: Callable[[], list[SpanState]],
        step_delay: float,
        hold: float,
        no_answer_after: float,
        dialplan: Dialplan | None = None,
        legacy_originate_events: bool = False,
    ) -> None:
        self.dialect = dialect
        # Asterisk 1.4 reported an async Originate as OriginateSuccess/OriginateFailure.
        self.legacy_originate_events = legacy_originate_events
        self._emit = emit
        self.ids = ids
        self._clock = clock
        self._spawn = spawn
        self.extensions = extensions
        self.contexts = contexts
        self._spans = spans
        self.step_delay = step_delay
        self.hold = hold
        self.no_answer_after = no_answer_after
        self.dialplan = dialplan or Dialplan()
        self.channels: dict[str, Channel] = {}
        self.calls_processed = 0

    # ------------------------------------------------------------------ basics
    def send(self, messages: list[Message]) -> None:
        """Emit a dialect builder's events to every client."""
        for message in messages:
            self._emit(message)

    async def sleep(self, seconds: float) -> None:
        """Wait between two steps of a call (never negative)."""
        await asyncio.sleep(max(0.0, seconds))

    def behaviour(self, tech: str, ext: str) -> ExtensionBehaviour:
        """The configured behaviour of ``TECH/ext`` (default: answer)."""
        found = self.extensions.get(f"{tech}/{ext}") or self.extensions.get(ext)
        return found if found is not None else ExtensionBehaviour.ANSWER

    def context_exists(self, context: str) -> bool:
        """Every context exists unless a set of contexts was configured."""
        return self.contexts is None or context in self.contexts

    def find(self, name: str) -> Channel | None:
        """A live channel by exact name."""
        return self.channels.get(name)

    def match(self, pattern: str) -> list[Channel]:
        """Live channels whose name matches a regular expression (Hangup ``/re/``)."""
        try:
            regex = re.compile(pattern)
        except re.error:
            return []
        return [ch for name, ch in list(self.channels.items()) if regex.search(name)]

    def start(
        self, call: Call, flow: Coroutine[Any, Any, None], run: CallRun | None = None
    ) -> asyncio.Task[None]:
        """Run ``flow`` as ``call``'s task (counted by ``run`` until it ends)."""
        task = self._spawn(flow)
        call.task = task
        if run is not None:
            run.task_started(task)
        return task

    @staticmethod
    def stop_task(call: Call | None) -> None:
        """Cancel a call's task unless it is the one running (an action's own flow)."""
        if call is not None and call.task is not None and call.task is not asyncio.current_task():
            call.task.cancel()

    # -------------------------------------------------------------- primitives
    def new_channel(
        self,
        call: Call,
        tech: str,
        resource: str,
        *,
        run: CallRun | None = None,
        uniqueid: str | None = None,
        linkedid: str | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> Channel:
        """A new channel ``TECH/resource-<suffix>`` (or ``name``), registered, not announced."""
        uid = uniqueid or self.ids.uniqueid()
        if name is None:
            name = f"{tech}/{resource}-{self.ids.hex_suffix(tech)}"
        channel = Channel(
            name=name,
            uniqueid=uid,
            linkedid=linkedid or uid,
            tech=tech,
            created=self._clock(),
            **fields,
        )
        channel.call = call
        channel.run = run
        call.channels.append(channel)
        self.channels[name] = channel
        if run is not None:
            run.channel_created(name, uid)
        return channel

    def announce(self, ch: Channel) -> None:
        """``Newchannel``."""
        self.send(self.dialect.newchannel(ch))

    def set_state(self, ch: Channel, state: int) -> None:
        """``Newstate`` (nothing when the state is already that)."""
        if ch.state != state:
            ch.state = state
            self.send(self.dialect.newstate(ch))

    def set_callerid(self, ch: Channel, number: str, name: str) -> None:
        """``NewCallerid``."""
        ch.cid_num, ch.cid_name = number, name
        self.send(self.dialect.newcallerid(ch))

    def set_connected(self, ch: Channel, number: str, name: str) -> None:
        """``NewConnectedLine`` (Asterisk 12+; the state is kept on old dialects too)."""
        ch.connected_num, ch.connected_name = number, name
        self.send(self.dialect.newconnectedline(ch))

    def exten(self, ch: Channel, app: str, data: str) -> None:
        """``Newexten``: ``ch`` runs ``app(data)`` at its current place in the dialplan."""
        ch.application, ch.app_data = app, data
        self.send(self.dialect.newexten(ch, app, data))

    def varset(self, ch: Channel, name: str, value: str) -> None:
        """``VarSet``."""
        ch.variables[name] = value
        self.send(self.dialect.varset(ch, name, value))

    def bridge(self, first: Channel, second: Channel) -> Bridge:
        """Create a bridge and put ``first`` (the answering side) then ``second`` in it."""
        bridge = Bridge(uniqueid=self.ids.bridge_id())
        self.send(self.dialect.bridge_create(bridge))
        self.enter(bridge, first)
        self.enter(bridge, second)
        return bridge

    def enter(self, bridge: Bridge, ch: Channel) -> None:
        """``BridgeEnter`` (``ch`` leaves its old bridge first)."""
        if ch.bridge is not None and ch.bridge is not bridge:
            self.leave(ch)
        bridge.members.append(ch)
        bridge.parties.append(ch)
        ch.bridge = bridge
        self.send(self.dialect.bridge_enter(bridge, ch))

    def leave(self, ch: Channel, *, destroy: bool = True) -> Bridge | None:
        """``BridgeLeave``, and ``BridgeDestroy`` when the bridge is left empty."""
        bridge = ch.bridge
        if bridge is None:
            return None
        ch.bridge = None
        if ch in bridge.members:
            bridge.members.remove(ch)
        self.send(self.dialect.bridge_leave(bridge, ch))
        if destroy and not bridge.members:
            self.send(self.dialect.bridge_destroy(bridge))
        return bridge

    def request_hangup(self, ch: Channel, cause: int | None = 16) -> None:
        """``HangupRequest``: the far end (a phone's BYE or CANCEL) ends the channel."""
        self.send(self.dialect.hangup_request(ch, cause))

    def soft_hangup(self, ch: Channel, cause: int = 16) -> None:
        """``SoftHangupRequest``: Asterisk itself ends the channel."""
        self.send(self.dialect.soft_hangup_request(ch, cause))

    def gone(self, ch: Channel, cause: int) -> None:
        """``Hangup``: the channel is destroyed (it leaves its bridge first)."""
        if self.channels.get(ch.name) is not ch:
            return
        self.leave(ch)
        self.send(self.dialect.hangup(ch, cause))
        del self.channels[ch.name]
        ch.call = None
        if ch.run is not None:
            ch.run.channel_gone()
            ch.run = None

    def rename(self, ch: Channel, new_name: str) -> None:
        """Old dialects' ``Rename`` (the registry follows the new name)."""
        self.send(self.dialect.rename(ch, new_name))
        if self.channels.get(ch.name) is ch:
            del self.channels[ch.name]
        ch.name = new_name
        self.channels[new_name] = ch

    def alive(self, ch: Channel) -> bool:
        """``ch`` has not hung up."""
        return self.channels.get(ch.name) is ch

    # ------------------------------------------------------------ phone names
    def phone_name(self, exten: str) -> str:
        """A phone's caller ID name as the dialect's PBX configures it."""
        return self.dialect.phone_name(exten)

    def dial_timeout(self) -> str:
        """The timeout argument of the simulated ``Dial()`` (whole seconds)."""
        return str(max(1, math.ceil(self.no_answer_after)))

    def route(self, exten: str) -> list[tuple[str, str, str]]:
        """``(tech, resource, dial string)`` for each endpoint dialling ``exten`` rings."""
        group = self.dialplan.ring_groups.get(exten)
        if group is not None:
            return [("SIP", member, member) for member in group]
        if not exten or (exten.isdigit() and len(exten) <= 5):
            return [("SIP", exten, exten)]
        for span in self._spans():
            if span.can_send:
                return [("YSGSM", str(span.number), f"{span.number}/{exten}")]
        return [("SIP", "trunk", f"trunk/{exten}")]

    def _callee_name(self, tech: str, resource: str) -> str:
        if tech == "YSGSM":
            span = int(resource)
            return f"YSGSM/{span}-{self.ids.gsm_index(span)}"
        return f"{tech}/{resource}-{self.ids.hex_suffix(tech)}"

    def script_for(self, exten: str) -> DialScript:
        """What the configured behaviours make of dialling ``exten`` (nobody scripted it)."""
        behaviours = [self.behaviour(tech, res) for tech, res, _ in self.route(exten)]
        if len(self.channels) >= MAX_LIVE_CHANNELS:
            return DialScript(outcome="congestion", ring=self.step_delay)
        if ExtensionBehaviour.ANSWER in behaviours:
            answering = self.route(exten)[behaviours.index(ExtensionBehaviour.ANSWER)][1]
            return DialScript(outcome="answer", ring=self.step_delay, answer_by=answering)
        if ExtensionBehaviour.NO_ANSWER in behaviours:
            return DialScript(outcome="no_answer", ring=self.no_answer_after)
        if all(b is ExtensionBehaviour.UNREGISTERED for b in behaviours):
            return DialScript(outcome="unavailable", ring=self.step_delay)
        if ExtensionBehaviour.CONGESTION in behaviours:
            return DialScript(outcome="congestion", ring=self.step_delay)
        return DialScript(outcome="busy", ring=self.step_delay)

    # ------------------------------------------------------------------ dialling
    async def dial(
        self,
        caller: Channel,
        exten: str,
        script: DialScript,
        *,
        before_bridge: Callable[[], None] | None = None,
        on_ringing: Callable[[], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        targets: list[tuple[str, str, str]] | None = None,
    ) -> DialRun | None:
        """``caller`` runs ``Dial()`` to ``exten`` and it goes as ``script`` says.

        ``targets`` (``(tech, resource, dial string)``) replaces what the dialplan
        routes ``exten`` to. Returns the bridged dial when a phone answered, ``None``
        when the dial failed (the caller has then been hung up, as the lab's dialplan
        does; ``on_failure`` replaces that with the caller's own ending, given the dial
        status).
        """
        targets = self._start_dial(caller, exten, targets)
        call = caller.call or Call()
        if script.outcome == "unavailable" or len(self.channels) >= MAX_LIVE_CHANNELS:
            await self.sleep(self.step_delay)
            self._dial_failed(caller, "CHANUNAVAIL", 20, on_failure)
            return None
        dial = self.begin_dial(call, caller, targets)
        if script.outcome in ("busy", "congestion"):
            await self.sleep(min(script.ring, self.step_delay))
            status = "BUSY" if script.outcome == "busy" else "CONGESTION"
            cause = 17 if script.outcome == "busy" else 34
            for callee in dial.callees:
                self.send(self.dialect.dial_end(caller, callee, status))
                self.gone(callee, cause)
            self._dial_failed(caller, status, cause, on_failure)
            return None
        for callee in dial.callees:
            self.ring(dial, callee)
        if on_ringing is not None:
            on_ringing()
        await self.sleep(script.ring)
        if script.outcome == "answer":
            chosen = next(
                (c for c in dial.callees if script.answer_by and c.peer == script.answer_by),
                dial.callees[0],
            )
            self.answer(dial, chosen, before_bridge=before_bridge)
            return dial
        if script.outcome == "cancel":
            self.caller_cancels(dial)
            return None
        for callee in dial.callees:
            self.send(self.dialect.dial_end(caller, callee, "NOANSWER"))
            self.gone(callee, 16)
        self._dial_failed(caller, "NOANSWER", 16, on_failure)
        return None

    def _start_dial(
        self, caller: Channel, exten: str, targets: list[tuple[str, str, str]] | None
    ) -> list[tuple[str, str, str]]:
        """``Newexten`` of ``Dial(...)`` on the caller; returns where it dials."""
        targets = targets or self.route(exten)
        caller.priority += 1
        data = "&".join(f"{tech}/{dialstring}" for tech, _, dialstring in targets)
        self.exten(caller, "Dial", f"{data},{self.dial_timeout()}")
        caller.dial_status = "NOANSWER"
        return targets

    def ringing(
        self, caller: Channel, exten: str, *, targets: list[tuple[str, str, str]] | None = None
    ) -> DialRun:
        """``caller`` dials ``exten`` and its phones ring, until a step decides more (a
        pickup, an answer, a cancel)."""
        targets = self._start_dial(caller, exten, targets)
        dial = self.begin_dial(caller.call or Call(), caller, targets)
        for callee in dial.callees:
            self.ring(dial, callee)
        return dial

    def begin_dial(
        self, call: Call, caller: Channel, targets: list[tuple[str, str, str]]
    ) -> DialRun:
        """The callees appear and are dialled (Asterisk 20: all channels, then the
        ``DialBegin`` of each; 1.8: each channel and its ``Dial Begin`` in turn)."""
        callees: list[Channel] = []
        for tech, resource, _ in targets:
            phone = tech != "YSGSM" and resource.isdigit()
            callee = self.new_channel(
                call,
                tech,
                resource,
                run=caller.run,
                name=self._callee_name(tech, resource),
                linkedid=caller.linkedid,
                context=caller.context,
                exten=self.dialect.callee_initial_exten,
                cid_num=resource if phone else "",
                cid_name=self.phone_name(resource) if phone else "",
                account=caller.account,
                pbx=False,
                # What app_dial sets on a channel it dials (1.4 to 20), shown by
                # CoreShowChannels and `core show channels` (transcript 06).
                application="AppDial",
                app_data="(Outgoing Line)",
            )
            callees.append(callee)
        dial = DialRun(caller=caller, callees=callees, dialstrings=[d for _, _, d in targets])
        if self.dialect.dial_end_at_exit:
            for callee, dialstring in zip(callees, dial.dialstrings, strict=True):
                self.announce(callee)
                self.send(self.dialect.dial_begin(caller, callee, dialstring))
                callee.exten = caller.exten
                callee.connected_num, callee.connected_name = caller.cid_num, caller.cid_name
            return dial
        for callee in callees:
            self.announce(callee)
            callee.exten = caller.exten
            self.set_connected(callee, caller.cid_num, caller.cid_name)
        for callee, dialstring in zip(callees, dial.dialstrings, strict=True):
            self.send(self.dialect.dial_begin(caller, callee, dialstring))
        if len(callees) == 1:
            self.set_connected(caller, callees[0].cid_num, callees[0].cid_name)
        return dial

    def ring(self, dial: DialRun, callee: Channel) -> None:
        """A dialled phone rings."""
        self.set_state(callee, STATE_RINGING)
        self.send(self.dialect.dial_state(dial.caller, callee, "RINGING"))

    def answer(
        self, dial: DialRun, callee: Channel, *, before_bridge: Callable[[], None] | None = None
    ) -> Bridge:
        """``callee`` answers: the other phones stop ringing (answered elsewhere), the
        caller is answered and both are bridged (recordings 13 and 17)."""
        caller = dial.caller
        self.set_state(callee, STATE_UP)
        others = [c for c in dial.callees if c is not callee and self.alive(c)]
        if len(dial.callees) > 1:
            self.set_connected(caller, callee.cid_num, callee.cid_name)
        for other in others:
            self.send(self.dialect.dial_end(caller, other, "CANCEL"))
            self.gone(other, 26)
        self.send(self.dialect.dial_end(caller, callee, "ANSWER"))
        dial.answered = callee
        dial.callees = [callee]
        caller.dial_status = "ANSWER"
        self.set_state(caller, STATE_UP)
        if before_bridge is not None:
            before_bridge()
        callee.exten = ""
        return self.bridge(callee, caller)

    def caller_cancels(self, dial: DialRun) -> None:
        """The caller hangs up while the phones ring (recording 14: a SIP CANCEL)."""
        caller = dial.caller
        self.request_hangup(caller, None)
        live = [c for c in dial.callees if self.alive(c)]
        for callee in live:
            self.send(self.dialect.dial_end(caller, callee, "CANCEL"))
            if not self.dialect.dial_end_at_exit:
                self.gone(callee, 16)
        if self.dialect.dial_end_at_exit:
            for callee in live:
                self.gone(callee, 16)
            self.dial_exit(caller, "CANCEL")
            self.gone(caller, 16)
            return
        self.soft_hangup(caller, 16)
        self.gone(caller, 0 if caller.tech == "SIP" else 16)

    def dial_exit(self, caller: Channel, status: str) -> None:
        """Old dialects: the Dial application on ``caller`` returns (``Dial End``, once)."""
        if caller.dial_status is not None:
            caller.dial_status = None
            self.send(self.dialect.dial_exit(caller, status))

    def _dial_failed(
        self,
        caller: Channel,
        status: str,
        cause: int,
        on_failure: Callable[[str], None] | None,
    ) -> None:
        self.dial_exit(caller, status)
        caller.dial_status = None
        if on_failure is not None:
            on_failure(status)
            return
        self.soft_hangup(caller, 16)
        self.gone(caller, cause)
        partner = caller.partner
        if partner is not None and self.alive(partner):
            self.soft_hangup(partner, 16)
            self.gone(partner, cause)

    # ------------------------------------------------------------------ hanging up
    def hangup_in_bridge(self, ch: Channel, *, cause_header: bool = True) -> None:
        """The phone on ``ch`` hangs up while it talks in a two-party bridge.

        Asterisk 20 (recordings 13, 20, 21): the caller's side is ended by its own
        thread before the bridge goes; the dialled side leaves first and Asterisk then
        ends the caller. Asterisk 1.8: ``Unlink``, the dialled channel's ``Hangup``,
        the caller's ``Dial End``, the caller's ``Hangup``, whoever hung up.
        """
        bridge = ch.bridge
        peer = next((m for m in bridge.members if m is not ch), None) if bridge else None
        if peer is None:
            self.request_hangup(ch, 16 if cause_header else None)
            self.soft_hangup(ch, 16)
            self.gone(ch, 16)
            return
        caller, callee = (ch, peer) if ch.pbx or not peer.pbx else (peer, ch)
        if self.dialect.dial_end_at_exit:
            self.leave(ch)
            self.leave(peer)
            self.gone(callee, 16)
            self.dial_exit(caller, "ANSWER")
            self.gone(caller, 16)
            self._local_pair_ends(caller)
            return
        self.request_hangup(ch, 16 if cause_header else None)
        self.leave(ch)
        if ch is caller:
            self.soft_hangup(ch, 16)
            self.gone(ch, 16)
            self.leave(peer)
            self.gone(peer, 16)
        else:
            self.gone(ch, 16)
            self.leave(peer)
            self.soft_hangup(peer, 16)
            self.gone(peer, 16)
        self._local_pair_ends(caller)

    def _local_pair_ends(self, half: Channel) -> None:
        """The twin of an ended Local half goes, and the phone it talked to (the end of
        recording 19: ``;2`` is asked to hang up, leaves, goes; then its peer)."""
        partner = half.partner
        if partner is None or not self.alive(partner):
            return
        bridge = partner.bridge
        peer = next((m for m in bridge.members if m is not partner), None) if bridge else None
        if self.dialect.dial_end_at_exit:
            # 1.8: the twin's own Dial returns: Unlink, its phone, Dial End, itself.
            self.leave(partner)
            if peer is not None:
                self.leave(peer)
                self.gone(peer, 16)
            self.dial_exit(partner, "ANSWER")
            self.gone(partner, 16)
            return
        self.request_hangup(partner, 16)
        self.leave(partner, destroy=False)
        self.soft_hangup(partner, 16)
        self.gone(partner, 16)
        if peer is not None and self.alive(peer):
            self.leave(peer)
            self.gone(peer, 16)
        elif bridge is not None and not bridge.members:
            self.send(self.dialect.bridge_destroy(bridge))

    def put_on_hold(self, ch: Channel) -> None:
        """The phone on ``ch`` puts its call on hold (a SIP re-INVITE)."""
        self.send(self.dialect.hold(ch))

    def take_off_hold(self, ch: Channel) -> None:
        """The phone on ``ch`` takes its call back."""
        self.send(self.dialect.unhold(ch))

    def phone_hangs_up(self, ch: Channel) -> None:
        """The phone on ``ch``, alone in an application, hangs up (recording 18's end)."""
        self.request_hangup(ch, 16)
        self.soft_hangup(ch, 16)
        self.gone(ch, 16)

    def end_alone(self, ch: Channel) -> None:
        """A channel (and its Local twin) at the end of an application (transcript 06)."""
        partner = ch.partner
        if partner is not None and self.alive(partner) and self.dialect.dial_end_at_exit:
            # 1.8: the twin ends; the bridge it leaves behind ends the Dial on ``ch``.
            peer = next((m for m in ch.bridge.members if m is not ch), None) if ch.bridge else None
            self.exten(partner, "Hangup", "")
            self.gone(partner, 16)
            self.leave(ch)
            if peer is not None:
                self.gone(peer, 16)
            self.dial_exit(ch, "ANSWER")
            self.gone(ch, 16)
            return
        if partner is not None and self.alive(partner):
            self.exten(partner, "Hangup", "")
            self.soft_hangup(partner, 16)
            self.request_hangup(ch, 16)
            self.gone(partner, 16)
            peer = next((m for m in ch.bridge.members if m is not ch), None) if ch.bridge else None
            self.leave(ch)
            self.soft_hangup(ch, 16)
            self.gone(ch, 16)
            if peer is not None:
                self.gone(peer, 16)
            return
        if ch.tech in ("SIP", "PJSIP", "IAX2", "YSGSM"):
            self.phone_hangs_up(ch)
        else:
            self.soft_hangup(ch, 16)
            self.gone(ch, 16)

    # ----------------------------------------------------------- the dialplan
    async def run_exten(
        self,
        ch: Channel,
        exten: str,
        *,
        hangup_by: Literal["caller", "callee"] = "caller",
        talk: float | None = None,
    ) -> None:
        """``ch`` runs ``exten`` in the simulated dialplan and the call goes on by itself:
        an application answers and waits, phones ring as their behaviours say, a bridged
        call lasts ``talk`` (default ``hold``) seconds and ``hangup_by`` ends it."""
        talk = self.hold if talk is None else talk
        app = self.dialplan.applications.get(exten)
        if app is not None:
            self.exten(ch, "Answer", "")
            self.set_state(ch, STATE_UP)
            self.exten(ch, app[0], app[1])
            await self.sleep(talk)
            self.end_alone(ch)
            return
        dial = await self.dial(ch, exten, self.script_for(exten))
        if dial is None or dial.answered is None:
            return
        await self.sleep(talk)
        answered = dial.answered
        if not self.alive(answered) or not self.alive(ch):
            return
        if ch.partner is not None and hangup_by == "caller":
            self.end_alone(ch)
            return
        self.hangup_in_bridge(answered if hangup_by == "callee" else ch)

    # ------------------------------------------------------ redirect & hangup
    def redirect(
        self, targets: Mapping[Channel, tuple[str, str, int]], *, talk: float | None = None
    ) -> None:
        """Move each channel to (context, exten, priority), as one (dual) redirect; the
        moved channels then spend ``talk`` (default ``hold``) seconds there.

        Asterisk 20 (recording 18, transcript 07): the channel leaves its bridge at the
        new extension and the party it talked to is hung up (a Local peer with its
        twin). Asterisk 1.8: the bridge unlinks, the dialled peer hangs up, the Dial
        application returns (``Dial End``), then the channel runs the new extension; a
        channel that runs no dialplan (a dialled phone) is first masqueraded into an
        ``AsyncGoto/...`` channel, as 1.8's ``ast_async_goto`` does.
        """
        doomed = self._left_behind(targets)
        moved: list[tuple[Channel, str, str]] = []
        if self.dialect.dial_end_at_exit:
            for ch, (context, exten, priority) in targets.items():
                moving = self._old_redirect(ch, doomed, context, exten, priority)
                moved.append((moving, context, exten))
        else:
            self._bridge_redirect(targets, doomed)
            moved = [(ch, context, exten) for ch, (context, exten, _) in targets.items()]
        for ch, context, exten in moved:
            if not self.alive(ch):
                continue
            call = Call(channels=[c for c in (ch, ch.partner) if c is not None])
            for member in call.channels:
                member.call = call
            self.start(call, self._after_redirect(ch, context, exten, talk), ch.run)

    def _left_behind(self, targets: Mapping[Channel, tuple[str, str, int]]) -> list[Channel]:
        """Stop the calls of the channels a redirect moves; return the live channels of
        those calls and bridges that stay behind (the moved ones' Local twins go along)."""
        keep: set[Channel] = set()
        for ch in targets:
            keep.add(ch)
            if ch.partner is not None:
                keep.add(ch.partner)
        doomed: list[Channel] = []
        for ch in targets:
            old = ch.call
            if old is not None:
                self.stop_task(old)
                doomed += [c for c in old.channels if c not in keep and c not in doomed]
            if ch.bridge is not None:
                doomed += [m for m in ch.bridge.members if m not in keep and m not in doomed]
        return [c for c in doomed if self.alive(c)]

    def _bridge_redirect(
        self, targets: Mapping[Channel, tuple[str, str, int]], doomed: list[Channel]
    ) -> None:
        """Asterisk 20's redirect (recording 18, transcript 07): each moved channel is
        at its new place before it leaves the bridge; then those left behind go."""
        for ch, (context, exten, priority) in targets.items():
            ch.context, ch.exten, ch.priority = context, exten, priority
            self.send(
                self.dialect.newexten(
                    ch, ch.application or "AppDial", ch.app_data or "(Outgoing Line)"
                )
            )
        for ch in targets:
            self.leave(ch)
        for ch in doomed:
            self._redirect_victim(ch)

    def _redirect_victim(self, ch: Channel) -> None:
        """A party left behind by a redirect (recording 18; transcript 07 for a Local one)."""
        if not self.alive(ch):
            return
        partner = ch.partner if ch.partner is not None and self.alive(ch.partner) else None
        if partner is None:
            self.leave(ch)
            self.gone(ch, 16)
            return
        bridge = ch.bridge
        self.leave(ch, destroy=False)
        self.soft_hangup(ch, 16)
        self.request_hangup(partner, 16)
        self.gone(ch, 16)
        if bridge is not None and not bridge.members:
            self.send(self.dialect.bridge_destroy(bridge))
        self.soft_hangup(partner, 16)
        self.gone(partner, 16)

    def _old_redirect(
        self, ch: Channel, doomed: list[Channel], context: str, exten: str, priority: int
    ) -> Channel:
        """Asterisk 1.8's redirect of ``ch``; returns the channel that runs the new exten.

        The bridge unlinks; the Dial application that made it hangs up its dialled
        peer, reports ``Dial End`` and returns. A channel running the dialplan goes on
        at the new place; one that does not (a dialled phone) is stolen by an
        ``AsyncGoto/`` channel and its zombie is what the Dial hangs up.
        """
        moving = ch if ch.pbx else self._async_goto(ch)
        bridge = ch.bridge
        if bridge is not None:
            for member in list(bridge.members):
                self.leave(member)
        if moving is not ch:
            self.gone(ch, 16)  # the zombie, hung up by the Dial that had bridged it
        for victim in doomed:
            if self.alive(victim) and not victim.pbx:
                self.gone(victim, 16)
        for victim in doomed:
            if self.alive(victim):
                self.dial_exit(victim, "ANSWER")
                self.gone(victim, 16)
        if moving is ch:
            self.dial_exit(ch, "ANSWER")
        moving.context, moving.exten, moving.priority = context, exten, priority
        return moving

    def _async_goto(self, ch: Channel) -> Channel:
        """1.8 ``ast_async_goto`` of a channel without a dialplan: a new ``AsyncGoto/``
        channel steals it by masquerade; the old one becomes a zombie."""
        call = ch.call or Call()
        stolen = self.new_channel(
            call,
            "AsyncGoto",
            ch.name,
            run=ch.run,
            name=f"AsyncGoto/{ch.name}",
            state=ch.state,
            context=ch.context,
            exten=ch.exten,
            account=ch.account,
        )
        self.announce(stolen)
        self.masquerade(ch, stolen)
        return stolen

    def masquerade(self, clone: Channel, original: Channel) -> None:
        """1.8's masquerade: ``original`` takes ``clone``'s name and caller ID, the two
        swap states (silently); ``clone`` is renamed ``<original's name><ZOMBIE>`` and
        stays where it was (its bridge, if any) until its owner hangs it up. Uniqueids
        stay with their channels."""
        self.send(self.dialect.masquerade(clone, original))
        clone_name, original_name = clone.name, original.name
        self.rename(clone, f"{clone_name}<MASQ>")
        self.rename(original, clone_name)
        self.rename(clone, f"{original_name}<ZOMBIE>")
        original.tech, clone.tech = clone.tech, original.tech
        original.cid_num, clone.cid_num = clone.cid_num, original.cid_num
        original.cid_name, clone.cid_name = clone.cid_name, original.cid_name
        original.connected_num, clone.connected_num = clone.connected_num, original.connected_num
        original.connected_name, clone.connected_name = (
            clone.connected_name,
            original.connected_name,
        )
        original.state, clone.state = clone.state, original.state
        clone.pbx = False

    async def _after_redirect(
        self, ch: Channel, context: str, exten: str, talk: float | None
    ) -> None:
        await self.sleep(self.step_delay)
        if not self.context_exists(context):
            if ch.partner is not None:
                self.end_alone(ch)
            else:
                self.soft_hangup(ch, 16)
                self.gone(ch, 16)
            return
        await self.run_exten(ch, exten, talk=talk)

    def hangup(self, ch: Channel, cause: int) -> None:
        """Hang up ``ch`` (the AMI ``Hangup`` action) and, with it, the rest of its call."""
        call = ch.call
        others: list[Channel] = []
        if call is not None:
            self.stop_task(call)
            others = [c for c in call.channels if c is not ch]
        if ch.bridge is not None:
            others += [m for m in ch.bridge.members if m is not ch and m not in others]
        self.soft_hangup(ch, cause)
        self.dial_exit(ch, "ANSWER" if ch.bridge is not None else "CANCEL")
        self.gone(ch, cause)
        for other in others:
            if self.alive(other):
                self.dial_exit(other, "ANSWER")
                self.gone(other, 16)

    def clear(self) -> None:
        """Forget every channel (the simulator is stopping); their runs are over."""
        channels = list(self.channels.values())
        self.channels.clear()
        for ch in channels:
            if ch.run is not None:
                ch.run.channel_gone()
                ch.run = None
