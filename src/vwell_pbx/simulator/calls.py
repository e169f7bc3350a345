"""The simulated dialplan: originated calls, incoming GSM calls, redirects and hangups.

Every call is one asyncio task that emits events (through the dialect) and sleeps
between steps. Invariants:

1. Events are emitted synchronously between two awaits, so the registry of live
   channels always matches what clients have been told.
2. A call task never emits from a ``finally`` block: when a Redirect or Hangup action
   cancels it, the action handler has already emitted the teardown itself.
3. A channel is in ``CallEngine.channels`` from its ``Newchannel`` until its ``Hangup``.

Outcome rules (documented for users of the simulator):

* An endpoint's behaviour comes from ``extensions`` (key ``TECH/ext`` first, then the
  bare ``ext``), default :data:`~vwell_pbx.simulator.model.DEFAULT_EXTENSIONS`; anything
  not listed answers.
* ``Originate`` with a technology other than SIP, PJSIP, IAX2 or Local fails with
  Reason 0 (like ``Bogus/123`` in transcript 09); an UNREGISTERED non-Local endpoint
  fails with Reason 0 and no channel events (like ``SIP/100``). BUSY gives Reason 5,
  NO_ANSWER Reason 3 (after ``min(Timeout, no_answer_after)`` seconds of ringing),
  CONGESTION Reason 8, ANSWER Reason 4.
* After the originated leg answers, it runs ``Exten``: it dials ``SIP/<exten>`` (short
  numeric extensions) or, for longer numbers, ``YSGSM/<span>`` through the first ready
  GSM span (``SIP/trunk`` when there is none); the dialled leg behaves as the table
  says, both legs are bridged and the call hangs up after ``hold`` seconds.
* A redirected channel leaves its bridge (the other party and its Local half hang up)
  and dials the new ``Exten`` the same way; a context outside ``contexts`` (when a set
  of contexts is configured) makes it hang up after one step.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vwell_pbx.protocol import Message
from vwell_pbx.simulator.dialects import Asterisk20Events
from vwell_pbx.simulator.gsm import SpanState
from vwell_pbx.simulator.model import (
    STATE_BUSY,
    STATE_DOWN,
    STATE_RING,
    STATE_RINGING,
    STATE_RSRVD,
    STATE_UP,
    Bridge,
    Call,
    Channel,
    ExtensionBehaviour,
    IdAllocator,
)

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

Progress = Literal["ringing", "bridged", "failed"]


@dataclass(frozen=True, slots=True)
class OriginateOutcome:
    """What an originate came to: ``reason`` is the AMI Reason code (4 = answered)."""

    success: bool
    reason: int


@dataclass(slots=True, kw_only=True)
class OriginateRequest:
    """A validated ``Originate`` action."""

    channel: str
    context: str | None = None
    exten: str | None = None
    priority: int = 1
    application: str | None = None
    data: str = ""
    cid_num: str = ""
    cid_name: str = ""
    timeout: float = 30.0
    variables: list[tuple[str, str]] = field(default_factory=list)
    account: str = ""
    action_id: str | None = None
    channel_id: str | None = None
    other_channel_id: str | None = None
    is_async: bool = False


class CallEngine:
    """Live channels plus the scenarios that create, move and end them."""

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
        self.channels: dict[str, Channel] = {}
        self.calls_processed = 0
        self._outcome_hooks: dict[Call, Callable[[OriginateOutcome], None]] = {}

    # ----------------------------------------------------------------- helpers
    def _send(self, messages: list[Message]) -> None:
        for message in messages:
            self._emit(message)

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

    def _new_channel(
        self,
        call: Call,
        name: str,
        tech: str,
        *,
        uniqueid: str | None = None,
        linkedid: str | None = None,
        **fields: Any,
    ) -> Channel:
        uid = uniqueid or self.ids.uniqueid()
        channel = Channel(
            name=name,
            uniqueid=uid,
            linkedid=linkedid or uid,
            tech=tech,
            created=self._clock(),
            **fields,
        )
        channel.call = call
        call.channels.append(channel)
        self.channels[name] = channel
        return channel

    def _set_state(self, ch: Channel, state: int) -> None:
        ch.state = state
        self._send(self.dialect.newstate(ch))

    def _exten(self, ch: Channel, app: str, data: str) -> None:
        ch.application, ch.app_data = app, data
        self._send(self.dialect.newexten(ch, app, data))

    def _hangup(self, ch: Channel, cause: int, *, soft: bool = True) -> None:
        if self.channels.get(ch.name) is not ch:
            return
        self._leave_bridge(ch)
        if soft:
            self._send(self.dialect.soft_hangup_request(ch, cause))
        self._send(self.dialect.hangup(ch, cause))
        del self.channels[ch.name]
        ch.call = None

    def _leave_bridge(self, ch: Channel) -> None:
        bridge = ch.bridge
        if bridge is None:
            return
        ch.bridge = None
        if ch in bridge.members:
            bridge.members.remove(ch)
        self._send(self.dialect.bridge_leave(bridge, ch))
        if not bridge.members:
            self._send(self.dialect.bridge_destroy(bridge))

    def _bridge(self, first: Channel, second: Channel) -> None:
        bridge = Bridge(uniqueid=self.ids.bridge_id())
        self._send(self.dialect.bridge_create(bridge))
        for ch in (first, second):
            bridge.members.append(ch)
            bridge.parties.append(ch)
            ch.bridge = bridge
            self._send(self.dialect.bridge_enter(bridge, ch))

    def _route(self, exten: str) -> tuple[str, str, str]:
        """(tech, channel name, dial string) for dialling ``exten``."""
        if exten.isdigit() and len(exten) <= 5:
            return "SIP", f"SIP/{exten}-{self.ids.hex_suffix('SIP')}", exten
        for span in self._spans():
            if span.can_send:
                index = self.ids.gsm_index(span.number)
                return "YSGSM", f"YSGSM/{span.number}-{index}", f"{span.number}/{exten}"
        return "SIP", f"SIP/trunk-{self.ids.hex_suffix('SIP')}", f"trunk/{exten}"

    # ---------------------------------------------------------------- originate
    def originate(
        self, request: OriginateRequest, on_outcome: Callable[[OriginateOutcome], None]
    ) -> None:
        """Start an originate; ``on_outcome`` is called once, when answered or failed."""
        call = Call()
        self._outcome_hooks[call] = on_outcome
        call.task = self._spawn(self._originate_flow(call, request))

        def cancelled(task: asyncio.Task[None]) -> None:
            hook = self._outcome_hooks.pop(call, None)
            if hook is not None:  # cancelled (Hangup, stop) before it was decided
                hook(OriginateOutcome(False, 0))

        call.task.add_done_callback(cancelled)

    def _report(
        self, call: Call, request: OriginateRequest, outcome: OriginateOutcome, leg: Channel | None
    ) -> None:
        hook = self._outcome_hooks.pop(call, None)
        if hook is not None:
            hook(outcome)
        if request.is_async:
            self._emit(self._originate_response(request, outcome, leg))

    def _originate_response(
        self, request: OriginateRequest, outcome: OriginateOutcome, leg: Channel | None
    ) -> Message:
        if self.legacy_originate_events:
            return self._originate_result_14(request, outcome, leg)
        headers: list[tuple[str, str]] = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
        if request.action_id is not None:
            headers.append(("ActionID", request.action_id))
        headers += [
            ("Response", "Success" if outcome.success else "Failure"),
            ("Channel", leg.name if outcome.success and leg else request.channel),
        ]
        if request.application:
            headers += [("Application", request.application), ("Data", request.data)]
        else:
            headers += [("Context", request.context or "default"), ("Exten", request.exten or "s")]
        headers += [
            ("Reason", str(outcome.reason)),
            ("Uniqueid", leg.uniqueid if outcome.success and leg else "<unknown>"),
            ("CallerIDNum", request.cid_num or "<unknown>"),
            ("CallerIDName", request.cid_name or "<unknown>"),
        ]
        return Message(headers=tuple(headers))

    def _originate_result_14(
        self, request: OriginateRequest, outcome: OriginateOutcome, leg: Channel | None
    ) -> Message:
        """Asterisk 1.4's form (manager.c ``fast_originate``): the verdict in the event's
        name, no ``Response`` header, ``Uniqueid: <null>`` when no channel was made, and
        the deprecated ``CallerID`` (the number) before ``CallerIDNum``."""
        name = "OriginateSuccess" if outcome.success else "OriginateFailure"
        headers: list[tuple[str, str]] = [("Event", name), ("Privilege", "call,all")]
        if request.action_id is not None:
            headers.append(("ActionID", request.action_id))
        headers += [
            ("Channel", request.channel),
            ("Context", request.context or ""),
            ("Exten", request.exten or ""),
            ("Reason", str(outcome.reason)),
            ("Uniqueid", leg.uniqueid if leg is not None else "<null>"),
            ("CallerID", request.cid_num or "<unknown>"),
            ("CallerIDNum", request.cid_num or "<unknown>"),
            ("CallerIDName", request.cid_name or "<unknown>"),
        ]
        return Message(headers=tuple(headers))

    async def _originate_flow(self, call: Call, req: OriginateRequest) -> None:
        await asyncio.sleep(0)  # let the action's response go out first
        tech_raw, _, resource = req.channel.partition("/")
        tech = KNOWN_TECHS.get(tech_raw.lower())
        if tech is None or not resource or len(self.channels) >= MAX_LIVE_CHANNELS:
            self._report(call, req, OriginateOutcome(False, 0), None)
            return
        self.calls_processed += 1
        if tech == "Local":
            leg = await self._local_leg(call, req, resource)
        else:
            leg = await self._device_leg(call, req, tech, resource)
        if leg is None:
            return
        partner = leg.partner
        if req.application:
            self._exten(leg, req.application, req.data)
            await asyncio.sleep(self.hold)
            self._end_call(leg, None)
            return
        leg.context = req.context or "default"
        leg.exten = req.exten or "s"
        leg.priority = req.priority
        await self._dial(call, leg, leg.exten, local_half=partner)

    def _originated_channel_setup(self, ch: Channel, req: OriginateRequest) -> None:
        for key, value in req.variables:
            ch.variables[key] = value
            self._send(self.dialect.varset(ch, key, value))
        if req.cid_num or req.cid_name:
            ch.cid_num, ch.cid_name = req.cid_num, req.cid_name
            self._send(self.dialect.newcallerid(ch))
            ch.connected_num, ch.connected_name = req.cid_num, req.cid_name
            self._send(self.dialect.newconnectedline(ch))

    async def _device_leg(
        self, call: Call, req: OriginateRequest, tech: str, resource: str
    ) -> Channel | None:
        ext = resource.split("/", maxsplit=1)[0]
        behaviour = self.behaviour(tech, ext)
        if behaviour is ExtensionBehaviour.UNREGISTERED:
            self._report(call, req, OriginateOutcome(False, 0), None)
            return None
        leg = self._new_channel(
            call,
            f"{tech}/{ext}-{self.ids.hex_suffix(tech)}",
            tech,
            uniqueid=req.channel_id,
            context=req.context or "default",
            exten=req.exten or "s",
            account=req.account,
        )
        self._send(self.dialect.newchannel(leg))
        self._exten(leg, "AppDial2", "(Outgoing Line)")
        self._originated_channel_setup(leg, req)
        self._send(self.dialect.dial_begin(None, leg, resource))
        if behaviour in (ExtensionBehaviour.ANSWER, ExtensionBehaviour.NO_ANSWER):
            self._set_state(leg, STATE_RINGING)
            self._send(self.dialect.dial_state(None, leg, "RINGING"))
        if behaviour is ExtensionBehaviour.ANSWER:
            await asyncio.sleep(self.step_delay)
            self._set_state(leg, STATE_UP)
            self._send(self.dialect.dial_end(None, leg, "ANSWER"))
            self._report(call, req, OriginateOutcome(True, 4), leg)
            return leg
        wait = (
            min(req.timeout, self.no_answer_after)
            if behaviour is ExtensionBehaviour.NO_ANSWER
            else self.step_delay
        )
        await asyncio.sleep(wait)
        self._send(self.dialect.dial_end(None, leg, DIAL_STATUS[behaviour]))
        self._report(call, req, OriginateOutcome(False, FAILURE_REASON[behaviour]), None)
        self._hangup(leg, HANGUP_CAUSE[behaviour], soft=False)
        return None

    async def _local_leg(self, call: Call, req: OriginateRequest, resource: str) -> Channel | None:
        ext, _, context = resource.partition("@")
        context = context.split("/")[0] or "default"
        behaviour = self.behaviour("Local", ext)
        base = f"Local/{ext}@{context}-{self.ids.hex_suffix('Local')}"
        one = self._new_channel(
            call,
            f"{base};1",
            "Local",
            uniqueid=req.channel_id,
            context=context,
            exten=ext,
            account=req.account,
        )
        two = self._new_channel(
            call,
            f"{base};2",
            "Local",
            uniqueid=req.other_channel_id,
            linkedid=one.linkedid,
            context=context,
            exten=ext,
            state=STATE_RING,
            account=req.account,
        )
        one.partner, two.partner = two, one
        self._send(self.dialect.newchannel(one))
        self._send(self.dialect.newchannel(two))
        self._exten(one, "AppDial2", "(Outgoing Line)")
        self._originated_channel_setup(one, req)
        self._originated_channel_setup(two, req)
        self._send(self.dialect.local_bridge(one, two))
        self._send(self.dialect.dial_begin(None, one, f"{ext}@{context}"))
        await asyncio.sleep(self.step_delay)
        if behaviour is ExtensionBehaviour.ANSWER:
            self._exten(two, "Answer", "")
            self._set_state(two, STATE_UP)
            self._set_state(one, STATE_UP)
            self._report(call, req, OriginateOutcome(True, 4), one)
            self._send(self.dialect.dial_end(None, one, "ANSWER"))
            return one
        if behaviour is ExtensionBehaviour.NO_ANSWER:
            self._set_state(two, STATE_RINGING)
            await asyncio.sleep(min(req.timeout, self.no_answer_after))
        elif behaviour is ExtensionBehaviour.BUSY:
            self._set_state(two, STATE_BUSY)
        self._send(self.dialect.dial_end(None, one, DIAL_STATUS[behaviour]))
        self._send(self.dialect.hangup_request(two, 0))
        self._report(call, req, OriginateOutcome(False, FAILURE_REASON[behaviour]), None)
        self._hangup(one, 0, soft=False)
        self._hangup(two, HANGUP_CAUSE[behaviour])
        return None

    # ------------------------------------------------------------ dial & bridge
    async def _dial(
        self,
        call: Call,
        caller: Channel,
        exten: str,
        *,
        local_half: Channel | None = None,
        hold: float | None = None,
        give_up_after: float | None = None,
        give_up_status: str = "NOANSWER",
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        """``caller`` runs ``Dial(<route of exten>)``, then bridge, hold, hang up."""
        hold = self.hold if hold is None else hold
        tech, name, dialstring = self._route(exten)
        behaviour = self.behaviour(tech, exten)
        if give_up_after is not None:
            behaviour = ExtensionBehaviour.NO_ANSWER
        if len(self.channels) >= MAX_LIVE_CHANNELS:
            behaviour = ExtensionBehaviour.CONGESTION
        caller.priority += 1
        self._exten(caller, "Dial", f"{tech}/{dialstring},20")
        if behaviour is ExtensionBehaviour.UNREGISTERED:
            await asyncio.sleep(self.step_delay)
            self._caller_gone(caller, HANGUP_CAUSE[behaviour], progress)
            return
        callee = self._new_channel(
            call,
            name,
            tech,
            linkedid=caller.linkedid,
            context=caller.context,
            exten="s",
            cid_num=exten,
            cid_name=f"Ext {exten}" if tech == "SIP" else exten,
        )
        self._send(self.dialect.newchannel(callee))
        callee.exten = exten
        callee.connected_num, callee.connected_name = caller.cid_num, caller.cid_name
        callee.account = caller.account
        self._exten(callee, "AppDial", "(Outgoing Line)")
        self._send(self.dialect.newconnectedline(callee))
        self._send(self.dialect.dial_begin(caller, callee, dialstring))
        caller.connected_num, caller.connected_name = callee.cid_num, callee.cid_name
        self._send(self.dialect.newconnectedline(caller))
        if behaviour in (ExtensionBehaviour.BUSY, ExtensionBehaviour.CONGESTION):
            await asyncio.sleep(self.step_delay)
            self._send(self.dialect.dial_end(caller, callee, DIAL_STATUS[behaviour]))
            self._hangup(callee, HANGUP_CAUSE[behaviour], soft=False)
            self._caller_gone(caller, HANGUP_CAUSE[behaviour], progress)
            return
        self._set_state(callee, STATE_RINGING)
        self._send(self.dialect.dial_state(caller, callee, "RINGING"))
        if local_half is not None:
            self._exten(local_half, "Wait", f"{hold:g}")
        if progress is not None:
            progress("ringing")
        if behaviour is ExtensionBehaviour.NO_ANSWER:
            await asyncio.sleep(self.no_answer_after if give_up_after is None else give_up_after)
            self._send(self.dialect.dial_end(caller, callee, give_up_status))
            self._hangup(callee, 16 if give_up_status == "CANCEL" else 19, soft=False)
            self._caller_gone(caller, 16, progress)
            return
        await asyncio.sleep(self.step_delay)
        self._set_state(callee, STATE_UP)
        self._send(self.dialect.dial_end(caller, callee, "ANSWER"))
        if caller.state != STATE_UP:
            self._set_state(caller, STATE_UP)
        self._bridge(callee, caller)
        if progress is not None:
            progress("bridged")
        await asyncio.sleep(hold)
        self._end_call(caller, callee)

    def _caller_gone(
        self, caller: Channel, cause: int, progress: Callable[[Progress], None] | None
    ) -> None:
        partner = caller.partner
        self._hangup(caller, cause)
        if partner is not None:
            self._hangup(partner, cause)
        if progress is not None:
            progress("failed")

    def _end_call(self, caller: Channel, callee: Channel | None) -> None:
        """The normal end: the calling side hangs up first (transcripts 06 and 11)."""
        partner = caller.partner
        if partner is not None and partner.name in self.channels:
            self._exten(partner, "Hangup", "")
            self._send(self.dialect.soft_hangup_request(partner, 16))
            self._send(self.dialect.hangup_request(caller, 16))
            self._hangup(partner, 16, soft=False)
            self._leave_bridge(caller)
            self._hangup(caller, 16)
        else:
            self._send(self.dialect.hangup_request(caller, 16))
            self._leave_bridge(caller)
            if callee is not None:
                self._leave_bridge(callee)
                self._hangup(callee, 16, soft=False)
            self._hangup(caller, 16)
        if callee is not None:
            self._hangup(callee, 16, soft=False)

    # ----------------------------------------------------------- incoming call
    async def incoming_call(
        self, *, caller: str, span: int, to: str, answer: bool, hold: float, yeastar: bool
    ) -> str:
        """Start an incoming GSM call; return its channel name once it rings/bridges."""
        call = Call()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str] = loop.create_future()
        name = f"YSGSM/{span}-{self.ids.gsm_index(span)}"

        def progress(stage: Progress) -> None:
            if not ready.done() and (stage != "ringing" or not answer):
                ready.set_result(name)

        call.task = self._spawn(
            self._incoming_flow(
                call,
                name,
                caller=caller,
                span=span,
                to=to,
                answer=answer,
                hold=hold,
                yeastar=yeastar,
                progress=progress,
            )
        )

        def settle(task: asyncio.Task[None]) -> None:
            if not ready.done():
                ready.set_result(name)

        call.task.add_done_callback(settle)
        return await ready

    async def _incoming_flow(
        self,
        call: Call,
        name: str,
        *,
        caller: str,
        span: int,
        to: str,
        answer: bool,
        hold: float,
        yeastar: bool,
        progress: Callable[[Progress], None],
    ) -> None:
        self.calls_processed += 1
        gsm = self._new_channel(
            call,
            name,
            "YSGSM",
            context=f"DID_trunk_{span}",
            exten="s",
            state=STATE_RSRVD if yeastar else STATE_DOWN,
            cid_num=caller,
            cid_name=caller,
        )
        self._send(self.dialect.newchannel(gsm))
        self._send(self.dialect.newcallerid(gsm))
        self._set_state(gsm, STATE_RING)
        await asyncio.sleep(self.step_delay)
        await self._dial(
            call,
            gsm,
            to,
            hold=hold,
            give_up_after=None if answer else hold,
            give_up_status="CANCEL",
            progress=progress,
        )

    # ------------------------------------------------------ redirect & hangup
    def redirect(self, targets: Mapping[Channel, tuple[str, str, int]]) -> None:
        """Move each channel to (context, exten, priority), as one (dual) redirect."""
        keep: set[Channel] = set()
        for ch in targets:
            keep.add(ch)
            if ch.partner is not None:
                keep.add(ch.partner)
        doomed: list[Channel] = []
        for ch in targets:
            old = ch.call
            if old is not None:
                if old.task is not None and old.task is not asyncio.current_task():
                    old.task.cancel()
                doomed += [c for c in old.channels if c not in keep and c not in doomed]
        for ch, (context, exten, priority) in targets.items():
            ch.context, ch.exten, ch.priority = context, exten, priority
            self._send(
                self.dialect.newexten(
                    ch, ch.application or "AppDial", ch.app_data or "(Outgoing Line)"
                )
            )
        for ch in targets:
            self._leave_bridge(ch)
        for ch in doomed:
            self._leave_bridge(ch)
        for ch in doomed:
            self._hangup(ch, 16)
        for ch, (context, exten, _) in targets.items():
            call = Call(channels=[c for c in (ch, ch.partner) if c is not None])
            for member in call.channels:
                member.call = call
            call.task = self._spawn(self._after_redirect(call, ch, context, exten))

    async def _after_redirect(self, call: Call, ch: Channel, context: str, exten: str) -> None:
        await asyncio.sleep(self.step_delay)
        if not self.context_exists(context):
            self._caller_gone(ch, 16, None)
            return
        self._exten(ch, "Answer", "")
        await self._dial(call, ch, exten, local_half=None)

    def hangup(self, ch: Channel, cause: int) -> None:
        """Hang up ``ch`` and, with it, the rest of its call."""
        call = ch.call
        others: list[Channel] = []
        if call is not None:
            if call.task is not None and call.task is not asyncio.current_task():
                call.task.cancel()
            others = [c for c in call.channels if c is not ch]
        self._hangup(ch, cause)
        for other in others:
            self._hangup(other, 16)

    def clear(self) -> None:
        """Forget every channel (the simulator is stopping)."""
        self.channels.clear()
