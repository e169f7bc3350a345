"""How each simulated PBX spells its events.

``Asterisk20Events`` follows the recordings of a real Asterisk 20 (chan_sip; kept in
``tests/data/ami``, the eleven call scenarios in ``tests/data/ami/calls``): channel
snapshots with ``Linkedid``, ``DialBegin``/``DialState``/``DialEnd``,
``BridgeCreate``/``BridgeEnter``/``BridgeLeave``/``BridgeDestroy``/``BridgeMerge``,
``Hold``/``Unhold``, ``Pickup``, ``AttendedTransfer``, ``DTMFEnd``.

``YeastarEvents`` follows the Asterisk 1.8 manager events of a Yeastar MyPBX (the
original product's example events, copied in ``tests/data/seed/events.txt``, and
1.8's ``manager_event`` formats): short ``Newchannel`` without
``Linkedid``, ``Dial`` with ``SubEvent: Begin|End`` (the End only when the Dial
application returns, after the bridge), ``Bridge`` with ``Bridgestate: Link|Unlink``,
``Hold`` with ``Status: On|Off``, ``Masquerade`` and ``Rename``, chan_sip's
``Transfer``, no hangup-request, dial-state or connected-line events.

Every builder returns a list, empty when the dialect has no such event; the call
engine (``simulator.calls``) calls every builder at the moment the event belongs and
reads the few dialect traits below where the two PBXs order things differently.
"""

from __future__ import annotations

from vwell_pbx.protocol import Message
from vwell_pbx.simulator.model import CAUSE_TEXT, STATE_DOWN, STATE_RSRVD, Bridge, Channel

Pairs = list[tuple[str, str]]

CALLING_PRES = "0 (Presentation Allowed, Not Screened)"


def _unknown(value: str) -> str:
    return value if value else "<unknown>"


def _event(name: str, *groups: Pairs) -> Message:
    headers: Pairs = [("Event", name)]
    for group in groups:
        headers.extend(group)
    return Message(headers=tuple(headers))


def hhmmss(seconds: float) -> str:
    """Duration as Asterisk prints it in ``CoreShowChannel``."""
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


class Asterisk20Events:
    """Event builders for Asterisk 20 (the recordings)."""

    name = "asterisk20"
    dial_end_at_exit = False
    """Old dialects report ``Dial End`` once, when the Dial application returns."""
    gsm_initial_state = STATE_DOWN
    callee_initial_exten = "s"
    """The ``Exten`` a dialled channel is created with (recording 13)."""
    status_has_eventlist = True
    local_separator = ";"

    @staticmethod
    def phone_name(exten: str) -> str:
        """The caller ID name of a phone (``callerid="Ext 267" <267>`` on the lab PBX)."""
        return f"Ext {exten}"

    @staticmethod
    def local_suffix(ids_hex: str, ids_short: str) -> str:
        """The suffix of a new Local channel's name (a counter on Asterisk 12+)."""
        return ids_hex

    @staticmethod
    def block(ch: Channel, prefix: str = "") -> Pairs:
        """The channel snapshot every Asterisk 12+ channel event carries."""
        return [
            (f"{prefix}Channel", ch.name),
            (f"{prefix}ChannelState", str(ch.state)),
            (f"{prefix}ChannelStateDesc", ch.state_desc),
            (f"{prefix}CallerIDNum", _unknown(ch.cid_num)),
            (f"{prefix}CallerIDName", _unknown(ch.cid_name)),
            (f"{prefix}ConnectedLineNum", _unknown(ch.connected_num)),
            (f"{prefix}ConnectedLineName", _unknown(ch.connected_name)),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ch.account),
            (f"{prefix}Context", ch.context),
            (f"{prefix}Exten", ch.exten),
            (f"{prefix}Priority", str(ch.priority)),
            (f"{prefix}Uniqueid", ch.uniqueid),
            (f"{prefix}Linkedid", ch.linkedid),
        ]

    def _channel_event(
        self, name: str, ch: Channel, privilege: str = "call,all", extra: Pairs | None = None
    ) -> list[Message]:
        return [_event(name, [("Privilege", privilege)], self.block(ch), extra or [])]

    def newchannel(self, ch: Channel) -> list[Message]:
        """A channel was created."""
        return self._channel_event("Newchannel", ch)

    def newstate(self, ch: Channel) -> list[Message]:
        """A channel changed state (Ring, Ringing, Up, Busy...)."""
        return self._channel_event("Newstate", ch)

    def newexten(self, ch: Channel, app: str, data: str) -> list[Message]:
        """A channel runs a dialplan step."""
        return self._channel_event(
            "Newexten",
            ch,
            "dialplan,all",
            [("Extension", ch.exten), ("Application", app), ("AppData", data)],
        )

    def varset(self, ch: Channel, variable: str, value: str) -> list[Message]:
        """A channel variable was set."""
        return self._channel_event(
            "VarSet", ch, "dialplan,all", [("Variable", variable), ("Value", value)]
        )

    def newcallerid(self, ch: Channel) -> list[Message]:
        """A channel's caller id changed."""
        return self._channel_event("NewCallerid", ch, extra=[("CID-CallingPres", CALLING_PRES)])

    def newconnectedline(self, ch: Channel) -> list[Message]:
        """A channel's connected line changed."""
        return self._channel_event("NewConnectedLine", ch)

    def local_bridge(self, one: Channel, two: Channel) -> list[Message]:
        """The two halves of a Local channel were linked."""
        return [
            _event(
                "LocalBridge",
                [("Privilege", "call,all")],
                self.block(one, "LocalOne"),
                self.block(two, "LocalTwo"),
                [("Context", two.context), ("Exten", two.exten), ("LocalOptimization", "Yes")],
            )
        ]

    def _dial(self, name: str, src: Channel | None, dst: Channel, tail: Pairs) -> list[Message]:
        source = self.block(src) if src is not None else []
        return [_event(name, [("Privilege", "call,all")], source, self.block(dst, "Dest"), tail)]

    def dial_begin(self, src: Channel | None, dst: Channel, dialstring: str) -> list[Message]:
        """Dialling started (``src`` is None for an Originate's own leg)."""
        return self._dial("DialBegin", src, dst, [("DialString", dialstring)])

    def dial_state(self, src: Channel | None, dst: Channel, status: str) -> list[Message]:
        """The dialled party progressed (RINGING)."""
        return self._dial("DialState", src, dst, [("DialStatus", status)])

    def dial_end(self, src: Channel | None, dst: Channel, status: str) -> list[Message]:
        """Dialling one destination ended with ANSWER, BUSY, NOANSWER, CANCEL..."""
        return self._dial("DialEnd", src, dst, [("DialStatus", status)])

    def dial_exit(self, src: Channel, status: str) -> list[Message]:
        """The Dial application returned (old dialects' ``Dial End``); nothing on 12+."""
        return []

    @staticmethod
    def _bridge(bridge: Bridge, prefix: str = "", count: int | None = None) -> Pairs:
        members = len(bridge.members) if count is None else count
        return [
            (f"{prefix}BridgeUniqueid", bridge.uniqueid),
            (f"{prefix}BridgeType", "basic"),
            (f"{prefix}BridgeTechnology", "simple_bridge"),
            (f"{prefix}BridgeCreator", "<unknown>"),
            (f"{prefix}BridgeName", "<unknown>"),
            (f"{prefix}BridgeNumChannels", str(members)),
            (f"{prefix}BridgeVideoSourceMode", "none"),
        ]

    def bridge_create(self, bridge: Bridge) -> list[Message]:
        """A bridge was made (empty)."""
        return [_event("BridgeCreate", [("Privilege", "call,all")], self._bridge(bridge))]

    def bridge_enter(self, bridge: Bridge, ch: Channel) -> list[Message]:
        """``ch`` joined ``bridge`` (already in ``bridge.members``)."""
        return [
            _event("BridgeEnter", [("Privilege", "call,all")], self._bridge(bridge), self.block(ch))
        ]

    def bridge_leave(self, bridge: Bridge, ch: Channel) -> list[Message]:
        """``ch`` left ``bridge`` (already removed from ``bridge.members``)."""
        return [
            _event("BridgeLeave", [("Privilege", "call,all")], self._bridge(bridge), self.block(ch))
        ]

    def bridge_destroy(self, bridge: Bridge) -> list[Message]:
        """The bridge is gone."""
        return [_event("BridgeDestroy", [("Privilege", "call,all")], self._bridge(bridge))]

    def bridge_merge(self, into: Bridge, source: Bridge) -> list[Message]:
        """``source``'s channels are about to move into ``into`` (an attended transfer)."""
        return [
            _event(
                "BridgeMerge",
                [("Privilege", "call,all")],
                self._bridge(into, "To"),
                self._bridge(source, "From"),
            )
        ]

    def soft_hangup_request(self, ch: Channel, cause: int) -> list[Message]:
        """Something asked the channel to hang up."""
        return self._channel_event("SoftHangupRequest", ch, extra=[("Cause", str(cause))])

    def hangup_request(self, ch: Channel, cause: int | None) -> list[Message]:
        """The far end asked the channel to hang up (a SIP CANCEL carries no cause)."""
        extra = [("Cause", str(cause))] if cause is not None else []
        return self._channel_event("HangupRequest", ch, extra=extra)

    def hangup(self, ch: Channel, cause: int) -> list[Message]:
        """The channel is gone."""
        return self._channel_event(
            "Hangup",
            ch,
            extra=[("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))],
        )

    def hold(self, ch: Channel) -> list[Message]:
        """The phone on ``ch`` put its call on hold."""
        return self._channel_event("Hold", ch)

    def unhold(self, ch: Channel) -> list[Message]:
        """The phone on ``ch`` took its call back."""
        return self._channel_event("Unhold", ch)

    def dtmf_end(self, ch: Channel, digit: str) -> list[Message]:
        """A DTMF digit (the ``Atxfer`` action feeds the feature code and the number)."""
        return self._channel_event(
            "DTMFEnd",
            ch,
            "dtmf,all",
            [("Digit", digit), ("DurationMs", "0"), ("Direction", "Received")],
        )

    def pickup(self, picker: Channel, target: Channel) -> list[Message]:
        """``picker`` picked up the ringing ``target``."""
        return self._channel_event("Pickup", picker, extra=self.block(target, "Target"))

    def attended_transfer(
        self,
        *,
        transferer: Channel,
        first: Bridge,
        second: Bridge,
        transferee: Channel,
        target: Channel,
    ) -> list[Message]:
        """A bridge-to-bridge attended transfer succeeded (``DestType: Bridge``)."""
        return [
            _event(
                "AttendedTransfer",
                [("Privilege", "call,all"), ("Result", "Success")],
                self.block(transferer, "OrigTransferer"),
                self._bridge(first, "Orig"),
                self.block(transferer, "SecondTransferer"),
                self._bridge(second, "Second"),
                self.block(transferee, "Transferee"),
                self.block(target, "TransferTarget"),
                [
                    ("IsExternal", "No"),
                    ("DestType", "Bridge"),
                    ("DestBridgeUniqueid", first.uniqueid),
                ],
            )
        ]

    def masquerade(self, clone: Channel, original: Channel) -> list[Message]:
        """Old dialects: ``clone``'s call is moved into ``original`` (pickups, transfers)."""
        return []

    def rename(self, ch: Channel, new_name: str) -> list[Message]:
        """Old dialects: ``ch`` (still under its old name) is renamed."""
        return []

    def sip_transfer(self, transferer: Channel, target: Channel, callid: str) -> list[Message]:
        """Old dialects: chan_sip's ``Transfer`` of an attended transfer made by a phone."""
        return []

    def core_show_channel(self, ch: Channel, action_id: str | None, now: float) -> Message:
        """One item of a ``CoreShowChannels`` list."""
        head: Pairs = [("ActionID", action_id)] if action_id is not None else []
        return _event(
            "CoreShowChannel",
            head,
            self.block(ch),
            [
                ("Application", ch.application),
                ("ApplicationData", ch.app_data),
                ("Duration", hhmmss(now - ch.created)),
                ("BridgeId", ch.bridge.uniqueid if ch.bridge else ""),
            ],
        )

    def status(
        self, ch: Channel, action_id: str | None, variables: list[str], now: float
    ) -> Message:
        """One item of a ``Status`` list (ActionID last, as Asterisk puts it)."""
        peer = _bridged_peer(ch)
        tail = _status_tail(ch, variables, action_id)
        return _event(
            "Status",
            [("Privilege", "Call")],
            self.block(ch),
            [
                ("Type", ch.tech),
                ("DNID", ""),
                ("EffectiveConnectedLineNum", _unknown(peer.cid_num if peer else ch.connected_num)),
                (
                    "EffectiveConnectedLineName",
                    _unknown(peer.cid_name if peer else ch.connected_name),
                ),
                ("TimeToHangup", "0"),
                ("BridgeID", ch.bridge.uniqueid if ch.bridge else ""),
                ("Application", ch.application),
                ("Data", ch.app_data),
                ("Nativeformats", "(ulaw)" if ch.tech != "Local" else "(slin)"),
                ("Readformat", "slin"),
                ("Readtrans", ""),
                ("Writeformat", "slin"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(max(0, int(now - ch.created)))),
            ],
            tail,
        )

    def status_complete(self, action_id: str | None, count: int) -> Message:
        """End of a ``Status`` list."""
        head: Pairs = [("ActionID", action_id)] if action_id is not None else []
        return _event(
            "StatusComplete",
            head,
            [("EventList", "Complete"), ("ListItems", str(count)), ("Items", str(count))],
        )


def _bridged_peer(ch: Channel) -> Channel | None:
    if ch.bridge is None:
        return None
    for member in ch.bridge.members:
        if member is not ch:
            return member
    return None


class YeastarEvents(Asterisk20Events):
    """Event builders for Yeastar MyPBX / TG (Asterisk 1.8's manager events)."""

    name = "yeastar"
    dial_end_at_exit = True
    gsm_initial_state = STATE_RSRVD
    callee_initial_exten = ""
    status_has_eventlist = False

    @staticmethod
    def phone_name(exten: str) -> str:
        """A MyPBX names an extension by its number (the original product's example
        event says ``CallerIDName: 269``)."""
        return exten

    @staticmethod
    def local_suffix(ids_hex: str, ids_short: str) -> str:
        """Asterisk 1.8 names a Local channel with four random hex digits."""
        return ids_short

    def newchannel(self, ch: Channel) -> list[Message]:
        """The original's example layout: no ConnectedLine, no Linkedid, Exten before Context."""
        return [
            _event(
                "Newchannel",
                [
                    ("Privilege", "call,all"),
                    ("Channel", ch.name),
                    ("ChannelState", str(ch.state)),
                    ("ChannelStateDesc", ch.state_desc),
                    ("CallerIDNum", _unknown(ch.cid_num)),
                    ("CallerIDName", _unknown(ch.cid_name)),
                    ("AccountCode", ch.account),
                    ("Exten", ch.exten),
                    ("Context", ch.context),
                    ("Uniqueid", ch.uniqueid),
                ],
            )
        ]

    def newstate(self, ch: Channel) -> list[Message]:
        """Asterisk 1.8 Newstate (with the connected line)."""
        return [
            _event(
                "Newstate",
                [
                    ("Privilege", "call,all"),
                    ("Channel", ch.name),
                    ("ChannelState", str(ch.state)),
                    ("ChannelStateDesc", ch.state_desc),
                    ("CallerIDNum", _unknown(ch.cid_num)),
                    ("CallerIDName", _unknown(ch.cid_name)),
                    ("ConnectedLineNum", _unknown(ch.connected_num)),
                    ("ConnectedLineName", _unknown(ch.connected_name)),
                    ("Uniqueid", ch.uniqueid),
                ],
            )
        ]

    def newexten(self, ch: Channel, app: str, data: str) -> list[Message]:
        """Asterisk 1.8 Newexten."""
        return [
            _event(
                "Newexten",
                [
                    ("Privilege", "dialplan,all"),
                    ("Channel", ch.name),
                    ("Context", ch.context),
                    ("Extension", ch.exten),
                    ("Priority", str(ch.priority)),
                    ("Application", app),
                    ("AppData", data),
                    ("Uniqueid", ch.uniqueid),
                ],
            )
        ]

    def varset(self, ch: Channel, variable: str, value: str) -> list[Message]:
        """Asterisk 1.8 VarSet."""
        return [
            _event(
                "VarSet",
                [
                    ("Privilege", "dialplan,all"),
                    ("Channel", ch.name),
                    ("Variable", variable),
                    ("Value", value),
                    ("Uniqueid", ch.uniqueid),
                ],
            )
        ]

    def newcallerid(self, ch: Channel) -> list[Message]:
        """The original's example layout."""
        return [
            _event(
                "NewCallerid",
                [
                    ("Privilege", "call,all"),
                    ("Channel", ch.name),
                    ("CallerIDNum", _unknown(ch.cid_num)),
                    ("CallerIDName", _unknown(ch.cid_name)),
                    ("Uniqueid", ch.uniqueid),
                    ("CID-CallingPres", CALLING_PRES),
                ],
            )
        ]

    def newconnectedline(self, ch: Channel) -> list[Message]:
        """Asterisk 1.8 has no NewConnectedLine event."""
        return []

    def local_bridge(self, one: Channel, two: Channel) -> list[Message]:
        """Asterisk 1.8 LocalBridge."""
        return [
            _event(
                "LocalBridge",
                [
                    ("Privilege", "call,all"),
                    ("Channel1", one.name),
                    ("Channel2", two.name),
                    ("Uniqueid1", one.uniqueid),
                    ("Uniqueid2", two.uniqueid),
                    ("CallerID1", one.cid_num),
                    ("CallerID2", two.cid_num),
                    ("Context", two.context),
                    ("Exten", two.exten),
                    ("LocalOptimization", "Yes"),
                ],
            )
        ]

    def dial_begin(self, src: Channel | None, dst: Channel, dialstring: str) -> list[Message]:
        """The original's example layout, ``Event: Dial`` / ``SubEvent: Begin`` (none for an
        originated leg)."""
        if src is None:
            return []
        return [
            _event(
                "Dial",
                [
                    ("Privilege", "call,all"),
                    ("SubEvent", "Begin"),
                    ("Channel", src.name),
                    ("Destination", dst.name),
                    ("CallerIDNum", _unknown(src.cid_num)),
                    ("CallerIDName", _unknown(src.cid_name)),
                    ("UniqueID", src.uniqueid),
                    ("DestUniqueID", dst.uniqueid),
                    ("Dialstring", dialstring),
                ],
            )
        ]

    def dial_state(self, src: Channel | None, dst: Channel, status: str) -> list[Message]:
        """No DialState before Asterisk 12."""
        return []

    def dial_end(self, src: Channel | None, dst: Channel, status: str) -> list[Message]:
        """Nothing per destination: 1.8 reports the Dial's end once (``dial_exit``)."""
        return []

    def dial_exit(self, src: Channel, status: str) -> list[Message]:
        """``Event: Dial`` / ``SubEvent: End``, sent when the Dial application returns."""
        return [
            _event(
                "Dial",
                [
                    ("Privilege", "call,all"),
                    ("SubEvent", "End"),
                    ("Channel", src.name),
                    ("UniqueID", src.uniqueid),
                    ("DialStatus", status),
                ],
            )
        ]

    @staticmethod
    def _link(bridge: Bridge, state: str) -> list[Message]:
        # The engine lets the dialled party enter first (as Asterisk 20 does); 1.8
        # names the channel that runs the bridge (the dialling side) Channel1.
        two, one = bridge.parties[0], bridge.parties[1]
        return [
            _event(
                "Bridge",
                [
                    ("Privilege", "call,all"),
                    ("Bridgestate", state),
                    ("Bridgetype", "core"),
                    ("Channel1", one.name),
                    ("Channel2", two.name),
                    ("Uniqueid1", one.uniqueid),
                    ("Uniqueid2", two.uniqueid),
                    ("CallerID1", one.cid_num),
                    ("CallerID2", two.cid_num),
                ],
            )
        ]

    def bridge_create(self, bridge: Bridge) -> list[Message]:
        """Nothing: 1.8 reports a bridge only once both parties are in."""
        return []

    def bridge_enter(self, bridge: Bridge, ch: Channel) -> list[Message]:
        """``Bridge Link`` once the second party entered."""
        if len(bridge.parties) >= 2 and not bridge.linked:
            bridge.linked = True
            return self._link(bridge, "Link")
        return []

    def bridge_leave(self, bridge: Bridge, ch: Channel) -> list[Message]:
        """``Bridge Unlink`` when the first party leaves a linked bridge."""
        if bridge.linked and not bridge.unlinked:
            bridge.unlinked = True
            return self._link(bridge, "Unlink")
        return []

    def bridge_destroy(self, bridge: Bridge) -> list[Message]:
        """Nothing in 1.8."""
        return []

    def bridge_merge(self, into: Bridge, source: Bridge) -> list[Message]:
        """No bridge objects in 1.8."""
        return []

    def soft_hangup_request(self, ch: Channel, cause: int) -> list[Message]:
        """Not in 1.8."""
        return []

    def hangup_request(self, ch: Channel, cause: int | None) -> list[Message]:
        """Not in 1.8."""
        return []

    def hangup(self, ch: Channel, cause: int) -> list[Message]:
        """Asterisk 1.8 Hangup."""
        return [
            _event(
                "Hangup",
                [
                    ("Privilege", "call,all"),
                    ("Channel", ch.name),
                    ("Uniqueid", ch.uniqueid),
                    ("CallerIDNum", _unknown(ch.cid_num)),
                    ("CallerIDName", _unknown(ch.cid_name)),
                    ("ConnectedLineNum", _unknown(ch.connected_num)),
                    ("ConnectedLineName", _unknown(ch.connected_name)),
                    ("Cause", str(cause)),
                    ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown")),
                ],
            )
        ]

    def _hold(self, ch: Channel, status: str) -> list[Message]:
        # chan_sip 1.8, with callevents=yes: one event, the state in Status.
        return [
            _event(
                "Hold",
                [
                    ("Privilege", "call,all"),
                    ("Status", status),
                    ("Channel", ch.name),
                    ("Uniqueid", ch.uniqueid),
                ],
            )
        ]

    def hold(self, ch: Channel) -> list[Message]:
        """``Hold`` with ``Status: On``."""
        return self._hold(ch, "On")

    def unhold(self, ch: Channel) -> list[Message]:
        """``Hold`` with ``Status: Off``."""
        return self._hold(ch, "Off")

    def dtmf_end(self, ch: Channel, digit: str) -> list[Message]:
        """Not simulated on 1.8."""
        return []

    def pickup(self, picker: Channel, target: Channel) -> list[Message]:
        """1.8's ``Pickup``: two names, no ids."""
        return [
            _event(
                "Pickup",
                [
                    ("Privilege", "call,all"),
                    ("Channel", picker.name),
                    ("TargetChannel", target.name),
                ],
            )
        ]

    def attended_transfer(
        self,
        *,
        transferer: Channel,
        first: Bridge,
        second: Bridge,
        transferee: Channel,
        target: Channel,
    ) -> list[Message]:
        """No such event in 1.8 (see ``sip_transfer``)."""
        return []

    def masquerade(self, clone: Channel, original: Channel) -> list[Message]:
        """1.8 ``Masquerade``: ``clone``'s call moves into ``original``."""
        return [
            _event(
                "Masquerade",
                [
                    ("Privilege", "call,all"),
                    ("Clone", clone.name),
                    ("CloneState", clone.state_desc),
                    ("Original", original.name),
                    ("OriginalState", original.state_desc),
                ],
            )
        ]

    def rename(self, ch: Channel, new_name: str) -> list[Message]:
        """1.8 ``Rename`` (``Channel`` is the old name)."""
        return [
            _event(
                "Rename",
                [
                    ("Privilege", "call,all"),
                    ("Channel", ch.name),
                    ("Newname", new_name),
                    ("Uniqueid", ch.uniqueid),
                ],
            )
        ]

    def sip_transfer(self, transferer: Channel, target: Channel, callid: str) -> list[Message]:
        """chan_sip 1.8: a phone completed an attended transfer (REFER with Replaces)."""
        return [
            _event(
                "Transfer",
                [
                    ("Privilege", "call,all"),
                    ("TransferMethod", "SIP"),
                    ("TransferType", "Attended"),
                    ("Channel", transferer.name),
                    ("Uniqueid", transferer.uniqueid),
                    ("SIP-Callid", callid),
                    ("TargetChannel", target.name),
                    ("TargetUniqueid", target.uniqueid),
                ],
            )
        ]

    def core_show_channel(self, ch: Channel, action_id: str | None, now: float) -> Message:
        """Asterisk 1.8 CoreShowChannel."""
        peer = _bridged_peer(ch)
        head: Pairs = [("ActionID", action_id)] if action_id is not None else []
        return _event(
            "CoreShowChannel",
            head,
            [
                ("Channel", ch.name),
                ("UniqueID", ch.uniqueid),
                ("Context", ch.context),
                ("Extension", ch.exten),
                ("Priority", str(ch.priority)),
                ("ChannelState", str(ch.state)),
                ("ChannelStateDesc", ch.state_desc),
                ("Application", ch.application),
                ("ApplicationData", ch.app_data),
                ("CallerIDnum", ch.cid_num),
                ("Duration", hhmmss(now - ch.created)),
                ("AccountCode", ch.account),
                ("BridgedChannel", peer.name if peer else ""),
                ("BridgedUniqueID", peer.uniqueid if peer else ""),
            ],
        )

    def status(
        self, ch: Channel, action_id: str | None, variables: list[str], now: float
    ) -> Message:
        """Asterisk 1.8 Status item: the long form for a channel running the dialplan, the
        short one (``Account``, ``State``, no location) for a dialled channel; the
        bridged peer only when there is one."""
        peer = _bridged_peer(ch)
        bridged: Pairs = (
            [("BridgedChannel", peer.name), ("BridgedUniqueid", peer.uniqueid)] if peer else []
        )
        tail = _status_tail(ch, variables, action_id)
        head: Pairs = [
            ("Privilege", "Call"),
            ("Channel", ch.name),
            ("CallerIDNum", _unknown(ch.cid_num)),
            ("CallerIDName", _unknown(ch.cid_name)),
            ("ConnectedLineNum", _unknown(ch.connected_num)),
            ("ConnectedLineName", _unknown(ch.connected_name)),
        ]
        if not ch.pbx:
            body: Pairs = [("Account", ch.account), ("State", ch.state_desc)]
        else:
            body = [
                ("Accountcode", ch.account),
                ("ChannelState", str(ch.state)),
                ("ChannelStateDesc", ch.state_desc),
                ("Context", ch.context),
                ("Extension", ch.exten),
                ("Priority", str(ch.priority)),
                ("Seconds", str(max(0, int(now - ch.created)))),
            ]
        return _event("Status", head, body, bridged, [("Uniqueid", ch.uniqueid)], tail)

    def status_complete(self, action_id: str | None, count: int) -> Message:
        """Asterisk 1.8 StatusComplete (no EventList header)."""
        head: Pairs = [("ActionID", action_id)] if action_id is not None else []
        return _event("StatusComplete", head, [("Items", str(count))])


EventDialect = Asterisk20Events


def _status_tail(ch: Channel, variables: list[str], action_id: str | None) -> Pairs:
    """The end of a ``Status`` item: requested ``Variable`` values, then ``ActionID``."""
    tail: Pairs = [("Variable", f"{name}={ch.variables.get(name, '')}") for name in variables]
    if action_id is not None:
        tail.append(("ActionID", action_id))
    return tail
