"""Calls: PBX channel events correlated into calls a CRM can use (sans-IO).

``CallTracker`` reads AMI events (``vwell_pbx.protocol.Message``) with their arrival
time and returns ``CallEvent`` values (``call.ringing``, ``call.answered``, ...), each
carrying an immutable ``CallSnapshot`` of the call; ``reconcile`` rebuilds the live
calls from a channel list after a reconnect. Nothing here does I/O or reads a clock.
The call model and every rule are described in ``docs/calls.md``.
"""

from vwell_pbx.calls.model import (
    CALL_EVENT_NAMES,
    CallEvent,
    CallEventName,
    CallSnapshot,
    CallStatus,
    Direction,
    EndReason,
    Transfer,
    TransferType,
)
from vwell_pbx.calls.rules import DEFAULT_EXTENSIONS, DEFAULT_TRUNKS, CallRules
from vwell_pbx.calls.tracker import CONSUMED_EVENTS, CallTracker, TrackerLimits

__all__ = [
    "CALL_EVENT_NAMES",
    "CONSUMED_EVENTS",
    "DEFAULT_EXTENSIONS",
    "DEFAULT_TRUNKS",
    "CallEvent",
    "CallEventName",
    "CallRules",
    "CallSnapshot",
    "CallStatus",
    "CallTracker",
    "Direction",
    "EndReason",
    "TrackerLimits",
    "Transfer",
    "TransferType",
]
