"""Originate: the AMI action's call flows, and the click-to-call scenario's.

An ``Originate`` rings its ``Channel`` first; once that leg answers it runs
``Context``/``Exten`` (or an ``Application``) in the simulated dialplan. The flows follow
the transcripts: a device (``SIP/267``, recordings 21 and 22) gets ``DialBegin`` without
a calling channel and its answer is reported after its ``DialEnd``; a Local channel
(``Local/100@DLPN_DialPlan269``, transcript 06) is a ``;1``/``;2`` pair whose ``;2`` half
runs the extension (an application answers at once, a phone rings) and the answer is
reported before the ``;1`` half's ``DialEnd``. The result is an ``OriginateResponse``
with the action's ActionID (1.4: ``OriginateSuccess``/``OriginateFailure``); Asterisk
1.8 hangs a failed leg up before it reports. Outcome rules: ``simulator.calls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from vwell_pbx.protocol import Message
from vwell_pbx.simulator.calls import (
    DIAL_STATUS,
    FAILURE_REASON,
    HANGUP_CAUSE,
    KNOWN_TECHS,
    MAX_LIVE_CHANNELS,
    CallEngine,
    DialScript,
)
from vwell_pbx.simulator.model import (
    STATE_BUSY,
    STATE_RING,
    STATE_RINGING,
    STATE_UP,
    Call,
    Channel,
    ExtensionBehaviour,
)
from vwell_pbx.simulator.runs import CallRun


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


class Originator:
    """Runs ``Originate`` actions and click-to-call scenarios on the call engine."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        self._outcome_hooks: dict[Call, Callable[[OriginateOutcome], None]] = {}

    def originate(
        self, request: OriginateRequest, on_outcome: Callable[[OriginateOutcome], None]
    ) -> None:
        """Start an originate; ``on_outcome`` is called once, when answered or failed."""
        call = Call()
        self._outcome_hooks[call] = on_outcome
        task = self.engine.start(call, self._originate_flow(call, request, None))

        def cancelled(task: asyncio.Task[None]) -> None:
            hook = self._outcome_hooks.pop(call, None)
            if hook is not None:  # cancelled (Hangup, stop) before it was decided
                hook(OriginateOutcome(False, 0))

        task.add_done_callback(cancelled)

    def originate_for(
        self,
        run: CallRun,
        request: OriginateRequest,
        script: DialScript,
        after: Callable[[Channel], Coroutine[Any, Any, None]],
    ) -> None:
        """A click-to-call scenario: the origin phone answers (or not) as ``script``
        says; once it has, ``after(leg)`` plays the rest of the call."""
        call = Call()
        self.engine.start(call, self._originate_flow(call, request, run, script, after), run)

    def _report(
        self, call: Call, request: OriginateRequest, outcome: OriginateOutcome, leg: Channel | None
    ) -> None:
        hook = self._outcome_hooks.pop(call, None)
        if hook is not None:
            hook(outcome)
        if request.is_async:
            self.engine.send([self._originate_response(request, outcome, leg)])

    def _originate_response(
        self, request: OriginateRequest, outcome: OriginateOutcome, leg: Channel | None
    ) -> Message:
        if self.engine.legacy_originate_events:
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

    async def _originate_flow(
        self,
        call: Call,
        req: OriginateRequest,
        run: CallRun | None,
        script: DialScript | None = None,
        after: Callable[[Channel], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        await asyncio.sleep(0)  # let the action's response go out first
        tech_raw, _, resource = req.channel.partition("/")
        tech = KNOWN_TECHS.get(tech_raw.lower())
        if tech is None or not resource or len(self.engine.channels) >= MAX_LIVE_CHANNELS:
            self._report(call, req, OriginateOutcome(False, 0), None)
            return
        self.engine.calls_processed += 1
        if tech == "Local":
            leg = await self._local_leg(call, req, resource, run, script)
        else:
            leg = await self._device_leg(call, req, tech, resource, run=run, script=script)
        if leg is None:
            return
        if req.application:
            self.engine.exten(leg, req.application, req.data)
            await self.engine.sleep(self.engine.hold)
            self.engine.end_alone(leg)
            return
        leg.context = req.context or "default"
        leg.exten = req.exten or "s"
        leg.priority = req.priority
        if after is not None:
            await after(leg)
            return
        # Recording 21: the dialled phone hangs up; transcript 06: the ;2 half's
        # application ends first.
        local_app = (
            leg.partner is not None and leg.partner.exten in self.engine.dialplan.applications
        )
        await self.engine.run_exten(leg, leg.exten, hangup_by="caller" if local_app else "callee")

    def _outgoing(self, leg: Channel) -> None:
        """The originated leg waits in ``AppDial2`` (Asterisk 12+ says so in a
        ``Newexten``; 1.8 runs no dialplan on it and says nothing)."""
        if self.engine.dialect.dial_end_at_exit:
            leg.application, leg.app_data = "AppDial2", "(Outgoing Line)"
        else:
            self.engine.exten(leg, "AppDial2", "(Outgoing Line)")

    def _originated_channel_setup(self, ch: Channel, req: OriginateRequest) -> None:
        for key, value in req.variables:
            self.engine.varset(ch, key, value)
        if req.cid_num or req.cid_name:
            exten = ch.exten
            if ch.tech != "Local":
                ch.exten = ""  # recording 21: the originated phone's exten is blank from here
            # A CallerID with a number only keeps the phone's own name (recording 21).
            self.engine.set_callerid(ch, req.cid_num or ch.cid_num, req.cid_name or ch.cid_name)
            self.engine.set_connected(ch, req.cid_num, req.cid_name)
            if ch.tech == "Local":
                ch.exten = exten

    def _origin_script(self, tech: str, ext: str, req: OriginateRequest) -> DialScript:
        behaviour = self.engine.behaviour(tech, ext)
        if behaviour is ExtensionBehaviour.ANSWER:
            return DialScript(outcome="answer", ring=self.engine.step_delay)
        if behaviour is ExtensionBehaviour.NO_ANSWER:
            return DialScript(
                outcome="no_answer", ring=min(req.timeout, self.engine.no_answer_after)
            )
        if behaviour is ExtensionBehaviour.BUSY:
            return DialScript(outcome="busy", ring=self.engine.step_delay)
        if behaviour is ExtensionBehaviour.CONGESTION:
            return DialScript(outcome="congestion", ring=self.engine.step_delay)
        return DialScript(outcome="unavailable", ring=0.0)

    async def _device_leg(
        self,
        call: Call,
        req: OriginateRequest,
        tech: str,
        resource: str,
        *,
        run: CallRun | None,
        script: DialScript | None,
    ) -> Channel | None:
        ext = resource.split("/", maxsplit=1)[0]
        script = script or self._origin_script(tech, ext, req)
        if script.outcome == "unavailable":
            self._report(call, req, OriginateOutcome(False, 0), None)
            return None
        leg = self.engine.new_channel(
            call,
            tech,
            ext,
            run=run,
            uniqueid=req.channel_id,
            context=req.context or "default",
            exten="s",
            cid_num=ext if ext.isdigit() else "",
            cid_name=self.engine.phone_name(ext) if ext.isdigit() else "",
            account=req.account,
        )
        self.engine.announce(leg)
        self._outgoing(leg)
        self._originated_channel_setup(leg, req)
        self.engine.send(self.engine.dialect.dial_begin(None, leg, resource))
        if script.outcome in ("answer", "no_answer", "cancel"):
            self.engine.set_state(leg, STATE_RINGING)
            self.engine.send(self.engine.dialect.dial_state(None, leg, "RINGING"))
        if script.outcome == "answer":
            await self.engine.sleep(script.ring)
            self.engine.set_state(leg, STATE_UP)
            self.engine.send(self.engine.dialect.dial_end(None, leg, "ANSWER"))
            self._report(call, req, OriginateOutcome(True, 4), leg)
            return leg
        await self.engine.sleep(script.ring)
        behaviour = {
            "busy": ExtensionBehaviour.BUSY,
            "congestion": ExtensionBehaviour.CONGESTION,
        }.get(script.outcome, ExtensionBehaviour.NO_ANSWER)
        self.engine.send(self.engine.dialect.dial_end(None, leg, DIAL_STATUS[behaviour]))
        outcome = OriginateOutcome(False, FAILURE_REASON[behaviour])
        if self.engine.dialect.dial_end_at_exit:
            # 1.8: the failed channel is hung up before the Originate reports back.
            self.engine.gone(leg, HANGUP_CAUSE[behaviour])
            self._report(call, req, outcome, None)
        else:
            self._report(call, req, outcome, None)  # recording 22
            self.engine.gone(leg, HANGUP_CAUSE[behaviour])
        return None

    async def _local_leg(
        self,
        call: Call,
        req: OriginateRequest,
        resource: str,
        run: CallRun | None,
        script: DialScript | None,
    ) -> Channel | None:
        ext, _, context = resource.partition("@")
        context = context.split("/")[0] or "default"
        suffix = self.engine.dialect.local_suffix(
            self.engine.ids.hex_suffix("Local"), self.engine.ids.short_suffix()
        )
        base = f"Local/{ext}@{context}-{suffix}"
        one = self.engine.new_channel(
            call,
            "Local",
            ext,
            run=run,
            name=f"{base};1",
            uniqueid=req.channel_id,
            context=context,
            exten=ext,
            account=req.account,
        )
        two = self.engine.new_channel(
            call,
            "Local",
            ext,
            run=run,
            name=f"{base};2",
            uniqueid=req.other_channel_id,
            linkedid=one.linkedid,
            context=context,
            exten=ext,
            state=STATE_RING,
            account=req.account,
        )
        one.partner, two.partner = two, one
        self.engine.announce(one)
        self.engine.announce(two)
        self._outgoing(one)
        self._originated_channel_setup(one, req)
        self._originated_channel_setup(two, req)
        self.engine.send(self.engine.dialect.local_bridge(one, two))
        self.engine.send(self.engine.dialect.dial_begin(None, one, f"{ext}@{context}"))
        if ext in self.engine.dialplan.applications or not ext:
            return await self._local_application(call, req, one, two, ext)
        return await self._local_phone(call, req, (one, two), ext, script)

    async def _local_application(
        self, call: Call, req: OriginateRequest, one: Channel, two: Channel, ext: str
    ) -> Channel | None:
        """The ``;2`` half runs an application extension (transcript 06: ``100``)."""
        behaviour = self.engine.behaviour("Local", ext)
        await self.engine.sleep(self.engine.step_delay)
        if behaviour is ExtensionBehaviour.ANSWER:
            self.engine.exten(two, "Answer", "")
            self.engine.set_state(two, STATE_UP)
            self.engine.set_state(one, STATE_UP)
            self._report(call, req, OriginateOutcome(True, 4), one)
            self.engine.send(self.engine.dialect.dial_end(None, one, "ANSWER"))
            app, data = self.engine.dialplan.applications.get(ext, ("Wait", "15"))
            self.engine.exten(two, app, f"{self.engine.hold:g}" if app == "Wait" else data)
            return one
        if behaviour is ExtensionBehaviour.NO_ANSWER:
            self.engine.set_state(two, STATE_RINGING)
            await self.engine.sleep(min(req.timeout, self.engine.no_answer_after))
        elif behaviour is ExtensionBehaviour.BUSY:
            self.engine.set_state(two, STATE_BUSY)
        self._local_failed(call, req, one, two, behaviour)
        return None

    def _local_failed(
        self,
        call: Call,
        req: OriginateRequest,
        one: Channel,
        two: Channel,
        behaviour: ExtensionBehaviour,
    ) -> None:
        self.engine.send(self.engine.dialect.dial_end(None, one, DIAL_STATUS[behaviour]))
        self.engine.request_hangup(two, 0)
        self._report(call, req, OriginateOutcome(False, FAILURE_REASON[behaviour]), None)
        self.engine.gone(one, 0)
        self.engine.soft_hangup(two, HANGUP_CAUSE[behaviour])
        self.engine.gone(two, HANGUP_CAUSE[behaviour])

    async def _local_phone(
        self,
        call: Call,
        req: OriginateRequest,
        pair: tuple[Channel, Channel],
        ext: str,
        script: DialScript | None,
    ) -> Channel | None:
        """The ``;2`` half dials a phone (``Local/267@DLPN_DialPlan267``: click-to-call
        through a Local channel); when it answers, the ``;1`` half is the answered leg."""
        one, two = pair
        script = script or self.engine.script_for(ext)
        two.cid_num, two.cid_name = two.cid_num or req.cid_num, two.cid_name or req.cid_name

        def ringing() -> None:
            self.engine.set_state(one, STATE_RINGING)
            self.engine.send(self.engine.dialect.dial_state(None, one, "RINGING"))

        def answered() -> None:
            self.engine.set_state(one, STATE_UP)
            self._report(call, req, OriginateOutcome(True, 4), one)
            self.engine.send(self.engine.dialect.dial_end(None, one, "ANSWER"))

        def failed(status: str) -> None:
            behaviour = {
                "BUSY": ExtensionBehaviour.BUSY,
                "CONGESTION": ExtensionBehaviour.CONGESTION,
                "CHANUNAVAIL": ExtensionBehaviour.UNREGISTERED,
            }.get(status, ExtensionBehaviour.NO_ANSWER)
            self._local_failed(call, req, one, two, behaviour)

        dial = await self.engine.dial(
            two, ext, script, before_bridge=answered, on_ringing=ringing, on_failure=failed
        )
        return one if dial is not None else None
