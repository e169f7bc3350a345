"""Call features that move parties between calls: attended transfer and call pickup.

Both are written twice, because the two PBX kinds do them differently on the wire:

* Asterisk 20 (recordings 19 and 23): the ``Atxfer`` action feeds the ``*2`` feature
  code and the number as DTMF, the transferer holds the call, a ``Local/<exten>@<ctx>``
  pair rings the target in a second bridge, and when the transferer hangs up the
  bridges merge (``BridgeMerge``, ``AttendedTransfer``); a ``*8`` pickup is the
  picker's own channel answering, ``Pickup``, and the ringing phone hanging up with
  cause 26 (answered elsewhere).
* Asterisk 1.8 / Yeastar: the transferer's phone holds the call (``Hold Status: On``),
  calls the target itself and completes with a SIP REFER (chan_sip's ``Transfer``
  ``TransferType: Attended``), and a masquerade moves the caller into the consultation
  (``Masquerade``, ``Rename``, a ``<ZOMBIE>`` hanging up); a pickup is 1.8's
  ``ast_do_pickup``: the picker answers, ``Pickup``, a masquerade into the ringing
  channel. The simulator renders the ``Atxfer`` action this way too (what a MyPBX user's
  phone does); 1.8's features-code form with ``Transfered/`` channels is not simulated.
"""

from __future__ import annotations

from vwell_pbx.simulator.calls import ATXFER_CODE, CallEngine, DialRun, DialScript
from vwell_pbx.simulator.model import STATE_RING, STATE_RINGING, STATE_UP, Bridge, Call, Channel


class CallFeatures:
    """Attended transfer and pickup on top of the call engine's steps."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine

    # ----------------------------------------------------------- attended transfer
    def start_attended_transfer(
        self,
        transferer: Channel,
        exten: str,
        context: str,
        *,
        ring: float | None = None,
        consult: float | None = None,
        after: float | None = None,
    ) -> bool:
        """Start an attended transfer of ``transferer``'s call to ``exten`` (the ``Atxfer``
        action, or a scenario); ``False`` when ``transferer`` talks to nobody.

        The target rings ``ring`` seconds and answers; the transferer talks to it
        ``consult`` seconds and hangs up, which completes the transfer; the caller and
        the target then talk ``after`` seconds and the caller hangs up (recording 19).
        """
        engine = self.engine
        bridge = transferer.bridge
        peer = next((m for m in bridge.members if m is not transferer), None) if bridge else None
        if bridge is None or peer is None or len(bridge.members) != 2:
            for digit in ATXFER_CODE + exten:
                engine.send(engine.dialect.dtmf_end(transferer, digit))
            return False
        old = transferer.call
        engine.stop_task(old)
        call = Call(channels=[c for c in (old.channels if old else []) if engine.alive(c)])
        for member in (transferer, peer):
            if member not in call.channels:
                call.channels.append(member)
        for member in call.channels:
            member.call = call
        timings = (
            engine.step_delay if ring is None else ring,
            engine.hold if consult is None else consult,
            engine.hold if after is None else after,
        )
        if engine.dialect.dial_end_at_exit:
            flow = self._phone_transfer(call, transferer, peer, exten, timings)
        else:
            flow = self._bridge_transfer(call, transferer, peer, (exten, context), timings)
        engine.start(call, flow, transferer.run)
        return True

    async def _bridge_transfer(
        self,
        call: Call,
        transferer: Channel,
        caller: Channel,
        where: tuple[str, str],
        timings: tuple[float, float, float],
    ) -> None:
        """Asterisk 20's ``Atxfer`` (recording 19), event for event: the feature code
        and the hold, the consultation through a Local pair, the merge of the two
        bridges when the transferer hangs up, and the caller's hang-up at the end."""
        engine, dialect = self.engine, self.engine.dialect
        exten, context = where
        ring, consult, after = timings
        first = transferer.bridge
        assert first is not None
        for digit in ATXFER_CODE:
            engine.send(dialect.dtmf_end(transferer, digit))
        engine.put_on_hold(transferer)
        for digit in exten:
            engine.send(dialect.dtmf_end(transferer, digit))
        await engine.sleep(engine.step_delay)  # the feature's digit timeout
        consultation = self._consultation(call, transferer, exten, context)
        one, two, _, dial = consultation
        target = dial.callees[0]
        outcome = engine.script_for(exten).outcome  # the target behaves as configured
        if outcome not in ("answer", "no_answer"):
            await engine.sleep(engine.step_delay)
            status, cause = ("BUSY", 17) if outcome == "busy" else ("CONGESTION", 34)
            self._consultation_failed(transferer, first, dial, (one, two), (status, cause))
            return
        engine.set_state(target, STATE_RINGING)
        engine.set_state(one, STATE_RINGING)
        engine.send(dialect.dial_state(two, target, "RINGING"))
        engine.send(dialect.dial_state(None, one, "RINGING"))
        await engine.sleep(ring if outcome == "answer" else engine.no_answer_after)
        if outcome != "answer":
            self._consultation_failed(transferer, first, dial, (one, two), ("NOANSWER", 16))
            return
        engine.set_state(target, STATE_UP)
        engine.send(dialect.dial_end(two, target, "ANSWER"))
        engine.set_state(one, STATE_UP)
        engine.send(dialect.dial_end(None, one, "ANSWER"))
        engine.set_state(two, STATE_UP)
        target.exten = ""
        third = engine.bridge(target, two)
        await engine.sleep(consult)
        self._complete_transfer(transferer, caller, first, consultation)
        await engine.sleep(after)
        self._transferred_call_ends(caller, consultation, third)

    def _consultation(
        self, call: Call, transferer: Channel, exten: str, context: str
    ) -> tuple[Channel, Channel, Bridge, DialRun]:
        """The transferer's consultation (recording 19): a ``Local/<exten>@<context>``
        pair, the ``;1`` half in a second bridge with the transferer, the ``;2`` half
        dialling the target. Returns the halves, the second bridge and the dial."""
        engine, dialect = self.engine, self.engine.dialect
        suffix = dialect.local_suffix(engine.ids.hex_suffix("Local"), engine.ids.short_suffix())
        base = f"Local/{exten}@{context}-{suffix}"
        common = {"context": context, "exten": exten, "account": transferer.account}
        one = engine.new_channel(
            call, "Local", exten, run=transferer.run, name=f"{base};1",
            linkedid=transferer.linkedid, **common,
        )  # fmt: skip
        two = engine.new_channel(
            call, "Local", exten, run=transferer.run, name=f"{base};2",
            linkedid=transferer.linkedid, state=STATE_RING, **common,
        )  # fmt: skip
        one.partner, two.partner = two, one
        engine.announce(one)
        engine.announce(two)
        second = Bridge(uniqueid=engine.ids.bridge_id())
        engine.send(dialect.bridge_create(second))
        engine.set_callerid(two, transferer.cid_num, transferer.cid_name)
        engine.send(dialect.local_bridge(one, two))
        two.priority += 1
        engine.exten(two, "Dial", f"SIP/{exten},{engine.dial_timeout()}")
        dial = engine.begin_dial(call, two, engine.route(exten))
        target = dial.callees[0]
        one.connected_num, one.connected_name = transferer.cid_num, transferer.cid_name
        engine.set_callerid(one, target.cid_num, target.cid_name)
        engine.set_connected(one, transferer.cid_num, transferer.cid_name)
        engine.enter(second, one)
        engine.leave(transferer, destroy=False)
        engine.enter(second, transferer)
        engine.set_connected(transferer, target.cid_num, target.cid_name)
        return one, two, second, dial

    def _complete_transfer(
        self,
        transferer: Channel,
        caller: Channel,
        first: Bridge,
        consultation: tuple[Channel, Channel, Bridge, DialRun],
    ) -> None:
        """The transferer hangs up: the consultation bridge merges into the caller's
        (``BridgeMerge``, ``AttendedTransfer``) and the transferer is gone."""
        engine, dialect = self.engine, self.engine.dialect
        one, _, second, dial = consultation
        target = dial.callees[0]
        engine.request_hangup(transferer, 16)
        engine.send(dialect.bridge_merge(first, second))
        engine.leave(one, destroy=False)
        engine.enter(first, one)
        engine.set_connected(one, caller.cid_num, caller.cid_name)
        engine.set_connected(caller, target.cid_num, target.cid_name)
        engine.set_connected(target, caller.cid_num, caller.cid_name)
        engine.leave(transferer, destroy=False)
        engine.send(
            dialect.attended_transfer(
                transferer=transferer, first=first, second=second, transferee=caller, target=one
            )
        )
        engine.send(dialect.bridge_destroy(second))
        engine.gone(transferer, 16)

    def _transferred_call_ends(
        self,
        caller: Channel,
        consultation: tuple[Channel, Channel, Bridge, DialRun],
        third: Bridge,
    ) -> None:
        """The caller hangs up (the end of recording 19): it, the Local pair and the
        target go."""
        engine = self.engine
        one, two, _, dial = consultation
        target = dial.callees[0]
        engine.request_hangup(caller, 16)
        engine.leave(caller, destroy=False)
        engine.leave(one)
        engine.soft_hangup(caller, 16)
        engine.request_hangup(two, 16)
        engine.gone(one, 16)
        engine.gone(caller, 16)
        engine.set_callerid(two, caller.cid_num, caller.cid_name)
        engine.leave(two, destroy=False)
        engine.soft_hangup(two, 16)
        engine.gone(two, 16)
        if third.members:
            engine.leave(target)
        engine.gone(target, 16)

    def _consultation_failed(
        self,
        transferer: Channel,
        first: Bridge,
        dial: DialRun,
        pair: tuple[Channel, Channel],
        ending: tuple[str, int],
    ) -> None:
        """The target did not answer (``ending``: the dial status and the target's
        hangup cause): the Local pair goes, the transferer returns to its caller."""
        engine, dialect = self.engine, self.engine.dialect
        one, two = pair
        status, cause = ending
        for callee in dial.callees:
            engine.send(dialect.dial_end(two, callee, status))
            engine.gone(callee, cause)
        engine.send(dialect.dial_end(None, one, status))
        engine.leave(one, destroy=False)
        engine.gone(one, 16)
        engine.soft_hangup(two, 16)
        engine.gone(two, 16)
        engine.leave(transferer)
        engine.enter(first, transferer)
        engine.take_off_hold(transferer)

    async def _phone_transfer(
        self,
        call: Call,
        transferer: Channel,
        caller: Channel,
        exten: str,
        timings: tuple[float, float, float],
    ) -> None:
        """Asterisk 1.8: the transferer's phone holds, calls ``exten``, then REFERs."""
        engine, dialect = self.engine, self.engine.dialect
        ring, consult, after = timings
        engine.put_on_hold(transferer)
        await engine.sleep(engine.step_delay)
        consult_leg = engine.new_channel(
            call,
            transferer.tech,
            transferer.peer,
            run=transferer.run,
            context=f"DLPN_DialPlan{transferer.peer}",
            exten=exten,
            cid_num=transferer.cid_num,
            cid_name=transferer.cid_name,
        )
        engine.announce(consult_leg)
        engine.set_state(consult_leg, STATE_RING)
        script = engine.script_for(exten)  # the target behaves as configured
        if script.outcome == "answer":
            script = DialScript(outcome="answer", ring=ring)
        dial = await engine.dial(
            consult_leg,
            exten,
            script,
            on_failure=lambda status: self._consultation_abandoned(consult_leg, transferer),
        )
        if dial is None or dial.answered is None:
            return
        await engine.sleep(consult)
        engine.send(dialect.sip_transfer(transferer, consult_leg, engine.ids.sip_callid()))
        engine.masquerade(caller, consult_leg)
        zombie = caller
        for member in list(zombie.bridge.members if zombie.bridge else []):
            engine.leave(member)
        engine.gone(transferer, 16)
        engine.dial_exit(zombie, "ANSWER")
        engine.gone(zombie, 16)
        await engine.sleep(after)
        engine.hangup_in_bridge(consult_leg)

    def _consultation_abandoned(self, consult_leg: Channel, transferer: Channel) -> None:
        engine = self.engine
        engine.gone(consult_leg, 16)
        engine.take_off_hold(transferer)

    # ------------------------------------------------------------------ pickup
    async def pickup(self, dial: DialRun, picker_exten: str, *, delay: float) -> Channel | None:
        """The phone ``picker_exten`` dials the pickup code and takes the ringing call;
        returns the channel that then talks to the caller (``None``: nothing rang)."""
        engine = self.engine
        caller = dial.caller
        target = next((c for c in dial.callees if engine.alive(c)), None)
        if target is None or caller.call is None:
            return None
        picker = engine.new_channel(
            caller.call,
            "SIP",
            picker_exten,
            run=caller.run,
            context=f"DLPN_DialPlan{picker_exten}",
            exten=engine.dialplan.pickup_exten,
            cid_num=picker_exten,
            cid_name=engine.phone_name(picker_exten),
        )
        engine.announce(picker)
        engine.set_state(picker, STATE_RING)
        if engine.dialect.dial_end_at_exit:
            return await self._masquerade_pickup(dial, picker, target, delay)
        engine.set_connected(picker, caller.cid_num, caller.cid_name)
        engine.set_state(picker, STATE_UP)
        await engine.sleep(delay)
        if not engine.alive(target):
            return None
        engine.exten(picker, "AppDial", "(Outgoing Line)")
        engine.send(engine.dialect.pickup(picker, target))
        target.exten = engine.dialplan.pickup_exten  # recording 23 shows it so
        engine.gone(target, 26)
        engine.set_connected(caller, picker.cid_num, picker.cid_name)
        engine.send(engine.dialect.dial_end(caller, picker, "ANSWER"))
        caller.dial_status = "ANSWER"
        engine.set_state(caller, STATE_UP)
        picker.exten = ""
        picker.pbx = False  # from now on it is the dialled side of the caller's Dial
        engine.bridge(picker, caller)
        picker.linkedid = caller.linkedid  # a bridge shares the caller's Linkedid
        dial.callees, dial.answered = [picker], picker
        return picker

    async def _masquerade_pickup(
        self, dial: DialRun, picker: Channel, target: Channel, delay: float
    ) -> Channel | None:
        """1.8's ``ast_do_pickup``: answer, ``Pickup``, masquerade into the ringing one."""
        engine = self.engine
        await engine.sleep(delay)
        if not engine.alive(target):
            return None
        engine.set_state(picker, STATE_UP)
        engine.send(engine.dialect.pickup(picker, target))
        engine.masquerade(picker, target)
        engine.gone(picker, 16)
        caller = dial.caller
        caller.dial_status = "ANSWER"
        engine.set_state(caller, STATE_UP)
        engine.bridge(target, caller)
        dial.callees, dial.answered = [target], target
        return target
