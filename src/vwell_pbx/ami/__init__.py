"""Asyncio AMI client: one self-healing, correlating connection per PBX.

Built on the sans-IO codec in ``vwell_pbx.protocol``; used by the ``pbx`` layer.
"""

from vwell_pbx.ami.answers import ORIGINATE_RESULT_EVENTS
from vwell_pbx.ami.backoff import backoff_delay
from vwell_pbx.ami.client import (
    ActionResult,
    AmiClient,
    AmiSettings,
    ConnectionState,
    ConnectionStatus,
)
from vwell_pbx.ami.errors import (
    ActionTimeout,
    AmiError,
    AnswerTooLarge,
    LoginFailed,
    PbxUnavailable,
    TooManyPending,
)
from vwell_pbx.ami.stream import EventStream

__all__ = [
    "ORIGINATE_RESULT_EVENTS",
    "ActionResult",
    "ActionTimeout",
    "AmiClient",
    "AmiError",
    "AmiSettings",
    "AnswerTooLarge",
    "ConnectionState",
    "ConnectionStatus",
    "EventStream",
    "LoginFailed",
    "PbxUnavailable",
    "TooManyPending",
    "backoff_delay",
]
