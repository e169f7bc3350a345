"""Scripted calls: the call scenarios of the recordings, in both dialects.

Each scenario is a story of one call, played by the call engine's steps
(``simulator.calls``) and features (``simulator.features``) with the timings given
(seconds; tests use tenths of a second, the demo a few seconds). Starting one returns
a :class:`~vwell_pbx.simulator.runs.CallRun` at once; the events go to every AMI client
as they happen. With the default numbers each scenario is the recorded one:

=================  ==============================================================
scenario           story (recording)
=================  ==============================================================
inbound            a GSM call ``YSGSM/<span>-<n>`` from ``caller`` to ``to``: answered,
                   missed (the caller gives up), busy, no answer (the Dial timeout)
internal           phone ``caller`` calls ``to`` (13; 14, 15, 16 for the other outcomes)
ring_group         ``caller`` calls a group; its phones ring, one answers, the others
                   end "answered elsewhere" (17)
blind_transfer     an internal call, then an AMI ``Redirect`` of the caller (18)
attended_transfer  an internal call, then an attended transfer by the called phone to
                   ``target`` (19: the AMI ``Atxfer``)
hold               an internal call held and resumed by the called phone (20)
pickup             an internal call picked up by ``picker`` with ``*8`` (23)
click_to_call      an ``Originate`` like the server's ``dial``: ``Channel: SIP/{from}``,
                   ``Context: DLPN_DialPlan{from}``, ``Exten: {to}``, ``CallerID: {to}``
                   (21, 22; the Local channel form as transcript 06)
=================  ==============================================================

Every run has deterministic ids when the simulator's ``uniqueid_epoch`` and ``rng``
are fixed. ``traffic_call`` picks a realistic mix of them for the background traffic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from vwell_pbx.simulator.calls import CallEngine, DialRun, DialScript, Outcome
from vwell_pbx.simulator.features import CallFeatures
from vwell_pbx.simulator.gsm import SpanState
from vwell_pbx.simulator.model import STATE_RING, Call, Channel
from vwell_pbx.simulator.originator import OriginateRequest, Originator
from vwell_pbx.simulator.runs import CallRun

CallOutcome = Literal["answered", "missed", "busy", "no_answer"]
"""How a dialled call ends up: answered; missed (the caller gives up while it rings);
busy (rejected at once); no answer (it rings until the Dial timeout)."""

Party = Literal["caller", "callee"]

SCENARIOS: Final = (
    "inbound",
    "internal",
    "ring_group",
    "blind_transfer",
    "attended_transfer",
    "hold",
    "pickup",
    "click_to_call",
)
"""The names ``PbxSimulator.scenario`` accepts."""

_OUTCOME_SCRIPT: Final[dict[str, Outcome]] = {
    "answered": "answer",
    "missed": "cancel",
    "busy": "busy",
    "no_answer": "no_answer",
}

TRAFFIC_MIX: Final[tuple[tuple[str, CallOutcome, int], ...]] = (
    ("inbound", "answered", 30),
    ("inbound", "missed", 8),
    ("inbound", "busy", 4),
    ("inbound", "no_answer", 4),
    ("internal", "answered", 10),
    ("internal", "missed", 3),
    ("ring_group", "answered", 8),
    ("blind_transfer", "answered", 6),
    ("attended_transfer", "answered", 5),
    ("hold", "answered", 6),
    ("pickup", "answered", 5),
    ("click_to_call", "answered", 8),
    ("click_to_call", "busy", 2),
)
"""(scenario, outcome, weight) of the background traffic: mostly inbound GSM calls,
with every other kind of call among them so that a console shows them all."""


@dataclass(frozen=True, slots=True)
class _TrafficDraw:
    """What one background call drew: its outcome, the three phones (caller, callee and
    a third one), its ring and talk seconds, and the generator for the rest."""

    rng: random.Random
    hold: float
    outcome: CallOutcome
    caller: str
    to: str
    third: str
    ring: float
    talk: float


class CallScenarios:
    """Starts scripted calls on the simulated PBX (``PbxSimulator`` exposes them)."""

    def __init__(
        self,
        engine: CallEngine,
        originator: Originator,
        *,
        ring: float,
        spans: Callable[[], list[SpanState]],
    ) -> None:
        self.engine = engine
        self.originator = originator
        self.features = CallFeatures(engine)
        self.ring = ring
        self._spans = spans

    # ---------------------------------------------------------------- helpers
    def _start(
        self, name: str, flow: Callable[[Call, CallRun], Coroutine[Any, Any, None]]
    ) -> CallRun:
        run = CallRun(name)
        call = Call()
        self.engine.start(call, flow(call, run), run)
        return run

    def _script(
        self, outcome: CallOutcome, ring: float | None, answer_by: str | None = None
    ) -> DialScript:
        if outcome not in _OUTCOME_SCRIPT:
            raise ValueError(f"outcome must be one of {sorted(_OUTCOME_SCRIPT)}, got {outcome!r}")
        engine = self.engine
        if outcome == "busy":
            ring = engine.step_delay  # a busy phone rejects the call at once
        elif ring is None:
            ring = engine.no_answer_after if outcome == "no_answer" else self.ring
        return DialScript(outcome=_OUTCOME_SCRIPT[outcome], ring=ring, answer_by=answer_by)

    def _phone_caller(
        self, call: Call, run: CallRun, number: str, exten: str, caller_name: str | None
    ) -> Channel:
        """A phone goes off hook and dials ``exten`` (recording 13's first events)."""
        engine = self.engine
        ch = engine.new_channel(
            call,
            "SIP",
            number,
            run=run,
            context=f"DLPN_DialPlan{number}",
            exten=exten,
            cid_num=number,
            cid_name=engine.phone_name(number),
        )
        engine.announce(ch)
        engine.set_state(ch, STATE_RING)
        if caller_name:
            ch.priority += 1
            engine.exten(ch, "Set", f"CALLERID(name)={caller_name}")
            engine.set_callerid(ch, number, caller_name)
        return ch

    def _trunk_caller(
        self, call: Call, run: CallRun, number: str, span: int, did: str | None
    ) -> Channel:
        """A GSM call arrives on ``span`` (as the original product's example
        ``YSGSM/11-1`` in ``DID_trunk_11``)."""
        engine = self.engine
        ch = engine.new_channel(
            call,
            "YSGSM",
            str(span),
            run=run,
            name=f"YSGSM/{span}-{engine.ids.gsm_index(span)}",
            context=f"DID_trunk_{span}",
            exten=did or "s",
            state=engine.dialect.gsm_initial_state,
            cid_num=number,
            cid_name=number,
        )
        engine.announce(ch)
        if not engine.dialect.dial_end_at_exit:
            engine.send(engine.dialect.newcallerid(ch))
        engine.set_state(ch, STATE_RING)
        return ch

    def _goto(self, ch: Channel, to: str) -> None:
        """The trunk's context sends the call to the extension's own context (MyPBX)."""
        engine = self.engine
        engine.exten(ch, "Goto", f"DLPN_DialPlan{to},{to},1")
        engine.varset(ch, "__DID_NUMBER", "" if ch.exten == "s" else ch.exten)
        ch.context, ch.exten, ch.priority = f"DLPN_DialPlan{to}", to, 0

    async def _talk(
        self, run: CallRun, dial: DialRun | None, talk: float | None, hangup_by: Party
    ) -> None:
        """An answered call lasts ``talk`` seconds; then ``hangup_by`` hangs up."""
        if dial is None or dial.answered is None:
            return
        run.mark("answered")
        engine = self.engine
        await engine.sleep(engine.hold if talk is None else talk)
        self._hang_up(dial, hangup_by)

    def _hang_up(self, dial: DialRun, hangup_by: Party, *, cause_header: bool = True) -> None:
        engine = self.engine
        party = dial.caller if hangup_by == "caller" else dial.answered
        if party is not None and engine.alive(party):
            engine.hangup_in_bridge(party, cause_header=cause_header)

    def _answered_call(
        self,
        call: Call,
        run: CallRun,
        parties: tuple[str, str],
        ring: float | None,
        caller_name: str | None,
    ) -> Coroutine[Any, Any, DialRun | None]:
        caller, to = parties
        ch = self._phone_caller(call, run, caller, to, caller_name)
        return self.engine.dial(
            ch, to, self._script("answered", ring), on_ringing=lambda: run.mark("ringing")
        )

    # --------------------------------------------------------------- scenarios
    def inbound(
        self,
        caller: str = "+79787342741",
        *,
        to: str = "269",
        span: int = 11,
        did: str | None = None,
        outcome: CallOutcome = "answered",
        ring: float | None = None,
        talk: float | None = None,
        hangup_by: Party = "caller",
        script: DialScript | None = None,
    ) -> CallRun:
        """An inbound GSM call from ``caller`` on ``span`` (DID ``did``) to extension ``to``.

        ``script`` replaces ``outcome``/``ring`` (the behaviours of ``incoming_call``).
        """
        dial_script = script or self._script(outcome, ring)

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            ch = self._trunk_caller(call, run, caller, span, did)
            await engine.sleep(engine.step_delay)
            self._goto(ch, to)
            dial = await engine.dial(ch, to, dial_script, on_ringing=lambda: run.mark("ringing"))
            await self._talk(run, dial, talk, hangup_by)

        return self._start("inbound", flow)

    def internal(
        self,
        caller: str = "269",
        to: str = "267",
        *,
        outcome: CallOutcome = "answered",
        ring: float | None = None,
        talk: float | None = None,
        hangup_by: Party = "caller",
        caller_name: str | None = None,
    ) -> CallRun:
        """Phone ``caller`` calls ``to``; ``caller_name``: the dialplan sets the caller's
        name first (``Set(CALLERID(name)=...)``, as the lab's extensions do)."""
        script = self._script(outcome, ring)

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            ch = self._phone_caller(call, run, caller, to, caller_name)
            dial = await engine.dial(ch, to, script, on_ringing=lambda: run.mark("ringing"))
            await self._talk(run, dial, talk, hangup_by)

        return self._start("internal", flow)

    def ring_group(
        self,
        caller: str = "269",
        *,
        group: str = "2000",
        targets: Sequence[str] | None = None,
        answer_by: str | None = None,
        outcome: CallOutcome = "answered",
        ring: float | None = None,
        talk: float | None = None,
        hangup_by: Party = "caller",
        caller_name: str | None = None,
    ) -> CallRun:
        """``caller`` calls ring group ``group``: its phones (``targets``, default the
        dialplan's members) ring together; ``answer_by`` (default the first) answers
        and the others are answered elsewhere."""
        members = tuple(targets) if targets else self.engine.dialplan.ring_groups.get(group)
        if not members:
            raise ValueError(f"ring group {group!r} has no members; give targets=")
        if answer_by is not None and answer_by not in members:
            raise ValueError(f"answer_by {answer_by!r} is not one of {list(members)}")
        script = self._script(outcome, ring, answer_by or members[0])
        routes = [("SIP", member, member) for member in members]

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            ch = self._phone_caller(call, run, caller, group, caller_name)
            dial = await engine.dial(
                ch, group, script, targets=routes, on_ringing=lambda: run.mark("ringing")
            )
            await self._talk(run, dial, talk, hangup_by)

        return self._start("ring_group", flow)

    def blind_transfer(
        self,
        caller: str = "269",
        to: str = "267",
        *,
        destination: str = "700",
        moved: Party = "caller",
        ring: float | None = None,
        talk: float | None = None,
        after: float | None = None,
        caller_name: str | None = None,
    ) -> CallRun:
        """An answered internal call; after ``talk`` seconds an AMI ``Redirect`` sends
        ``moved`` to ``destination`` (the other party is hung up); it stays there
        ``after`` seconds (an application) or calls it (a phone)."""

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            dial = await self._answered_call(call, run, (caller, to), ring, caller_name)
            if dial is None or dial.answered is None:
                return
            run.mark("answered")
            await engine.sleep(engine.hold if talk is None else talk)
            party = dial.caller if moved == "caller" else dial.answered
            if not engine.alive(party):
                return
            run.mark("transferred")
            engine.redirect({party: (dial.caller.context, destination, 1)}, talk=after)

        return self._start("blind_transfer", flow)

    def attended_transfer(
        self,
        caller: str = "269",
        to: str = "267",
        *,
        target: str = "268",
        ring: float | None = None,
        talk: float | None = None,
        consult_ring: float | None = None,
        consult: float | None = None,
        after: float | None = None,
        caller_name: str | None = None,
    ) -> CallRun:
        """An answered internal call; then ``to`` transfers it to ``target`` with
        consultation: the caller is held, ``target`` rings ``consult_ring`` seconds and
        answers, ``to`` talks to it ``consult`` seconds and hangs up; the caller and
        ``target`` talk ``after`` seconds and the caller hangs up (recording 19)."""

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            dial = await self._answered_call(call, run, (caller, to), ring, caller_name)
            if dial is None or dial.answered is None:
                return
            run.mark("answered")
            await engine.sleep(engine.hold if talk is None else talk)
            if not engine.alive(dial.answered):
                return
            run.mark("transferred")
            self.features.start_attended_transfer(
                dial.answered,
                target,
                dial.caller.context,
                ring=self.ring if consult_ring is None else consult_ring,
                consult=consult,
                after=after,
            )

        return self._start("attended_transfer", flow)

    def hold(
        self,
        caller: str = "269",
        to: str = "267",
        *,
        held_by: Party = "callee",
        ring: float | None = None,
        talk: float | None = None,
        held: float | None = None,
        after: float | None = None,
        hangup_by: Party = "callee",
        caller_name: str | None = None,
    ) -> CallRun:
        """An answered internal call; after ``talk`` seconds ``held_by`` holds it for
        ``held`` seconds, resumes, and ``hangup_by`` hangs up ``after`` seconds later
        (recording 20)."""

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            dial = await self._answered_call(call, run, (caller, to), ring, caller_name)
            if dial is None or dial.answered is None:
                return
            run.mark("answered")
            await engine.sleep(engine.hold if talk is None else talk)
            holder = dial.caller if held_by == "caller" else dial.answered
            if not engine.alive(holder):
                return
            engine.put_on_hold(holder)
            run.mark("held")
            await engine.sleep(engine.hold if held is None else held)
            engine.take_off_hold(holder)
            await engine.sleep(engine.hold if after is None else after)
            self._hang_up(dial, hangup_by)

        return self._start("hold", flow)

    def pickup(
        self,
        caller: str = "269",
        to: str = "267",
        *,
        picker: str = "268",
        ring: float | None = None,
        talk: float | None = None,
        caller_name: str | None = None,
    ) -> CallRun:
        """``caller`` calls ``to``; after ``ring`` seconds ``picker`` dials ``*8`` and
        takes the call; they talk ``talk`` seconds and the caller hangs up (23)."""

        async def flow(call: Call, run: CallRun) -> None:
            engine = self.engine
            engine.calls_processed += 1
            ch = self._phone_caller(call, run, caller, to, caller_name)
            dial = engine.ringing(ch, to)
            run.mark("ringing")
            await engine.sleep(self.ring if ring is None else ring)
            picked = await self.features.pickup(dial, picker, delay=engine.step_delay)
            if picked is None:
                return
            run.mark("answered")
            await engine.sleep(engine.hold if talk is None else talk)
            # Recording 23: this hangup request carried no cause.
            self._hang_up(dial, "caller", cause_header=False)

        return self._start("pickup", flow)

    def click_to_call(
        self,
        origin: str = "267",
        to: str = "269",
        *,
        outcome: CallOutcome = "answered",
        callee_outcome: CallOutcome = "answered",
        origin_ring: float | None = None,
        ring: float | None = None,
        talk: float | None = None,
        hangup_by: Party = "callee",
        action_id: str | None = None,
        local: bool = False,
        channel: str | None = None,
        context: str | None = None,
        callerid: str | None = None,
    ) -> CallRun:
        """A click-to-call as the server's ``dial`` makes it: an async ``Originate`` of
        ``channel`` (default ``SIP/{origin}``, or ``Local/{origin}@DLPN_DialPlan{origin}``
        with ``local``) into ``context`` (``DLPN_DialPlan{origin}``), exten ``to``,
        ``CallerID: {to}``. The origin phone rings ``origin_ring`` seconds and
        ``outcome`` happens (``answered``, ``busy``, ``no_answer``); once answered, ``to``
        rings ``ring`` seconds and ``callee_outcome`` happens. The ``OriginateResponse``
        carries ``action_id``."""
        if outcome == "missed":
            raise ValueError("a click-to-call's own phone is answered, busy or not answered")
        if channel is None:
            channel = f"Local/{origin}@DLPN_DialPlan{origin}" if local else f"SIP/{origin}"
        request = OriginateRequest(
            channel=channel,
            context=context or f"DLPN_DialPlan{origin}",
            exten=to,
            priority=1,
            cid_num=to if callerid is None else callerid,
            timeout=max(self.engine.no_answer_after, 1.0),
            action_id=action_id,
            is_async=True,
        )
        origin_script = self._script(outcome, origin_ring)
        callee_script = self._script(callee_outcome, ring)

        async def after(leg: Channel, run: CallRun) -> None:
            run.mark("answered")
            dial = await self.engine.dial(
                leg, to, callee_script, on_ringing=lambda: run.mark("ringing")
            )
            await self._talk(run, dial, talk, hangup_by)

        run = CallRun("click_to_call")
        self.engine.calls_processed += 1
        self.originator.originate_for(run, request, origin_script, lambda leg: after(leg, run))
        return run

    # -------------------------------------------------------------- dispatch
    def start(self, name: str, **options: Any) -> CallRun:
        """Start the scenario called ``name`` (one of :data:`SCENARIOS`)."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        starter: Callable[..., CallRun] = getattr(self, name)
        return starter(**options)

    def traffic_call(self, rng: random.Random, hold: float) -> CallRun:
        """One call of the background traffic, drawn from :data:`TRAFFIC_MIX`."""
        weights = [weight for _, _, weight in TRAFFIC_MIX]
        name, outcome, _ = rng.choices(TRAFFIC_MIX, weights=weights)[0]
        caller, to, third = rng.sample(("267", "268", "269"), 3)
        draw = _TrafficDraw(
            rng=rng,
            hold=hold,
            outcome=outcome,
            caller=caller,
            to=to,
            third=third,
            ring=hold * rng.uniform(0.2, 0.6),
            talk=hold * rng.uniform(0.5, 1.5),
        )
        starters: dict[str, Callable[[_TrafficDraw], CallRun]] = {
            "inbound": self._traffic_inbound,
            "internal": lambda d: self.internal(
                d.caller, d.to, outcome=d.outcome, ring=d.ring, talk=d.talk
            ),
            "ring_group": self._traffic_ring_group,
            "blind_transfer": lambda d: self.blind_transfer(
                d.caller, d.to, ring=d.ring, talk=d.talk / 2, after=d.talk / 2
            ),
            "attended_transfer": lambda d: self.attended_transfer(
                d.caller,
                d.to,
                target=d.third,
                ring=d.ring,
                talk=d.talk / 3,
                consult=d.talk / 3,
                after=d.talk,
            ),
            "hold": lambda d: self.hold(
                d.caller, d.to, ring=d.ring, talk=d.talk / 3, held=d.talk / 3, after=d.talk / 3
            ),
            "pickup": lambda d: self.pickup(
                d.caller, d.to, picker=d.third, ring=d.ring, talk=d.talk
            ),
            "click_to_call": lambda d: self.click_to_call(
                d.caller, d.to, outcome=d.outcome, origin_ring=d.ring, ring=d.ring, talk=d.talk
            ),
        }
        return starters[name](draw)

    def _traffic_inbound(self, d: _TrafficDraw) -> CallRun:
        """A GSM call from a random mobile number on a ready span (11 if none is)."""
        spans = [s.number for s in self._spans() if s.can_send] or [11]
        number = "+7978" + "".join(d.rng.choice("0123456789") for _ in range(7))
        return self.inbound(
            number,
            to=d.to,
            span=d.rng.choice(spans),
            outcome=d.outcome,
            ring=d.hold if d.outcome == "no_answer" else d.ring,
            talk=d.talk,
            hangup_by=d.rng.choice(("caller", "callee")),
        )

    def _traffic_ring_group(self, d: _TrafficDraw) -> CallRun:
        """The first ring group, called by a phone that is not in it."""
        group, members = next(iter(self.engine.dialplan.ring_groups.items()))
        return self.ring_group(
            d.caller if d.caller not in members else d.third,
            group=group,
            answer_by=d.rng.choice(members),
            ring=d.ring,
            talk=d.talk,
        )
