"""PBX operations: what the API's methods do to a PBX, in domain terms.

Above the AMI client (``vwell_pbx.ami``) and below the API: phone number rules
(``numbers``), click-to-call (``dial``), call transfer (``redirect``) and SMS backends
with per-span pacing (``sms``). Errors are in ``errors``; the AMI client's own errors
pass through unchanged.
"""

from vwell_pbx.pbx.errors import (
    InvalidArgument,
    NoReadySpan,
    NotSupported,
    PbxOperationError,
    PbxRejected,
    SmsQueueFull,
)
from vwell_pbx.pbx.numbers import PhoneRules

__all__ = [
    "InvalidArgument",
    "NoReadySpan",
    "NotSupported",
    "PbxOperationError",
    "PbxRejected",
    "PhoneRules",
    "SmsQueueFull",
]
