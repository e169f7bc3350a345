"""API errors and the one table that maps every layer's exceptions to ``errCode``.

::

    VwellError
    └── ApiError
        ├── BadRequest        the envelope or an argument is wrong      -> bad_request
        ├── MissingCredentials  login/login2/sha1 absent or not strings -> auth_failed
        ├── UnknownMethod     no such method                            -> unknown_method
        ├── Forbidden         the role does not allow it                -> forbidden
        ├── NeedsWebSocket    an event method called over plain HTTP    -> not_supported
        ├── LimitExceeded     a per-connection or per-user bound        -> rate_limited
        └── PbxAnswerError    the PBX answered Response: Error          -> pbx_error

Exceptions from inner layers keep their own types; ``error_code`` finds their code by
walking the class hierarchy against ``ERROR_CODES``. Anything not in the table is a bug
and answers ``internal`` without details (the traceback goes to the log).
"""

from __future__ import annotations

from typing import Any, Final

from vwell_pbx.ami.errors import ActionTimeout, PbxUnavailable, TooManyPending
from vwell_pbx.api.auth import AuthFailed, RateLimited
from vwell_pbx.api.forms import FormError
from vwell_pbx.api.roles import UnknownRoleError
from vwell_pbx.errors import VwellError
from vwell_pbx.events.bus import EventError, SubscriptionLimit
from vwell_pbx.events.filters import FilterError
from vwell_pbx.pbx.errors import (
    InvalidArgument,
    NoReadySpan,
    NotSupported,
    PbxOperationError,
    PbxRejected,
    SmsQueueFull,
)
from vwell_pbx.protocol.errors import LocalProtocolError


class ApiError(VwellError):
    """Root of the API layer's own errors."""


class BadRequest(ApiError):
    """The envelope or one of its arguments is malformed; the message says what is right."""


class MissingCredentials(ApiError):
    """No usable credentials: none sent, or one of them is not a non-empty string."""


class UnknownMethod(ApiError):
    """The requested method does not exist."""


class Forbidden(ApiError):
    """The caller's role does not allow this method, action, event or extension."""


class NeedsWebSocket(ApiError):
    """An event-subscription method was called over a transport that cannot push."""


class LimitExceeded(ApiError):
    """A documented bound was reached (in-flight requests, request rate, SMS rate)."""


class PbxAnswerError(ApiError):
    """The PBX answered ``Response: Error``; ``fields`` still go to the caller (``event``)."""

    def __init__(self, message: str, fields: dict[str, Any]) -> None:
        super().__init__(message)
        self.fields = fields


ERROR_CODES: Final[dict[type[BaseException], str]] = {
    BadRequest: "bad_request",
    FormError: "bad_request",
    FilterError: "bad_request",
    EventError: "bad_request",
    InvalidArgument: "bad_request",
    LocalProtocolError: "bad_request",
    UnknownMethod: "unknown_method",
    AuthFailed: "auth_failed",
    MissingCredentials: "auth_failed",
    Forbidden: "forbidden",
    UnknownRoleError: "forbidden",
    RateLimited: "rate_limited",
    LimitExceeded: "rate_limited",
    SubscriptionLimit: "rate_limited",
    TooManyPending: "rate_limited",  # max_pending answers already awaited
    PbxUnavailable: "pbx_unavailable",
    PbxRejected: "pbx_error",
    NoReadySpan: "pbx_error",
    PbxOperationError: "pbx_error",
    SmsQueueFull: "rate_limited",
    PbxAnswerError: "pbx_error",
    ActionTimeout: "timeout",
    NotSupported: "not_supported",
    NeedsWebSocket: "not_supported",
}
"""The documented error codes; ``internal`` is the answer for anything else."""

ALL_CODES: Final = (
    "bad_request",
    "unknown_method",
    "auth_failed",
    "forbidden",
    "rate_limited",
    "pbx_unavailable",
    "pbx_error",
    "timeout",
    "not_supported",
    "internal",
)


def error_code(exc: BaseException) -> str:
    """The ``errCode`` for ``exc``: the nearest class in its MRO listed in ``ERROR_CODES``."""
    for cls in type(exc).__mro__:
        code = ERROR_CODES.get(cls)
        if code is not None:
            return code
    return "internal"
