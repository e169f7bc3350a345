"""The error codes of the API, and the one table that maps every layer's exceptions to them.

``ErrorCode`` is the contract: the ``errCode`` values clients read. Everything else
derives from it: ``ERROR_CODES`` below (exception class -> code), the HTTP status of
endpoints that answer with one (``ErrorCode.http_status``: the event stream's refusals;
``/api`` itself always answers 200), the ``errCode`` enum of ``/openapi.json``, and the
table in docs/api.md (``error_table_markdown``; a test keeps the two equal).

Every exception the package raises on purpose, with its code::

    VwellError
    ├── ApiError (this module)
    │   ├── BadRequest            the envelope or an argument is wrong   -> bad_request
    │   ├── MissingCredentials    login/login2/sha1 absent or not text   -> auth_failed
    │   ├── UnknownMethod         no such method                         -> unknown_method
    │   ├── Forbidden             the role does not allow it             -> forbidden
    │   ├── NotFound              no such thing (that the caller may see) -> not_found
    │   ├── NeedsWebSocket        an event method over plain HTTP        -> not_supported
    │   └── LimitExceeded         a per-connection or per-user bound     -> rate_limited
    ├── AuthFailed (api.auth)     wrong credentials                      -> auth_failed
    ├── RateLimited (api.auth)    too many failed logins                 -> rate_limited
    ├── UnknownRoleError (api.roles)  the user's role is not defined     -> forbidden
    ├── FormError (api.forms)     a form or fb64json cannot be decoded   -> bad_request
    ├── FilterError, EventError, SubscriptionLimit (events)  -> bad_request, rate_limited
    ├── PbxOperationError (pbx.errors)                                   -> pbx_error
    │   ├── InvalidArgument                                              -> bad_request
    │   ├── NotSupported                                                 -> not_supported
    │   ├── PbxRejected           the PBX answered Response: Error       -> pbx_error
    │   ├── SmsQueueFull          the SMS outbox is at a bound           -> sms_queue_full
    │   ├── SmsRateLimited        the user's SMS a minute                -> rate_limited
    │   └── NoReadySpan                                                  -> pbx_error
    ├── AmiError (ami.errors)
    │   ├── PbxUnavailable        no connection; retrying may help       -> pbx_unavailable
    │   ├── LoginFailed           the PBX refused our AMI login          -> pbx_unavailable
    │   ├── ActionTimeout                                                -> timeout
    │   ├── TooManyPending                                               -> rate_limited
    │   └── AnswerTooLarge        an event list past our bound           -> answer_too_large
    ├── ProtocolError (protocol.errors)
    │   └── LocalProtocolError    CR/LF in a key or value                -> bad_request
    └── StorageError (storage.errors)                                    -> internal
        ├── StorageUnavailable    database down or too slow (StorageTimeout) -> unavailable
        │   └── DirectoryUnavailable (directory)  the SQL user directory  -> unavailable
        └── StorageBusy           a bounded database queue is full       -> unavailable

``error_code`` finds an exception's code by walking its class hierarchy against
``ERROR_CODES``. Anything not in the table is a bug and answers ``internal`` without
details (the traceback goes to the log).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from vwell_pbx.ami.errors import (
    ActionTimeout,
    AnswerTooLarge,
    LoginFailed,
    PbxUnavailable,
    TooManyPending,
)
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
    SmsRateLimited,
)
from vwell_pbx.protocol.errors import LocalProtocolError
from vwell_pbx.storage.errors import StorageBusy, StorageUnavailable

__all__ = [
    "ALL_CODES",
    "ERROR_CODES",
    "ApiError",
    "BadRequest",
    "ErrorCode",
    "Forbidden",
    "LimitExceeded",
    "MissingCredentials",
    "NeedsWebSocket",
    "NotFound",
    "UnknownMethod",
    "error_code",
    "error_table_markdown",
]


class ErrorCode(StrEnum):
    """The documented ``errCode`` values (a ``str``: it compares equal to its value).

    ``http_status`` is the status of an endpoint that answers errors with one;
    ``meaning`` is the line docs/api.md shows for the code.
    """

    BAD_REQUEST = "bad_request"
    UNKNOWN_METHOD = "unknown_method"
    AUTH_FAILED = "auth_failed"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SMS_QUEUE_FULL = "sms_queue_full"
    PBX_UNAVAILABLE = "pbx_unavailable"
    PBX_ERROR = "pbx_error"
    TIMEOUT = "timeout"
    NOT_SUPPORTED = "not_supported"
    ANSWER_TOO_LARGE = "answer_too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    @property
    def http_status(self) -> int:
        """The HTTP status that goes with this code where an endpoint uses one."""
        return _CODE_INFO[self][0]

    @property
    def meaning(self) -> str:
        """What the code means for a client (Markdown, one line)."""
        return _CODE_INFO[self][1]


_CODE_INFO: Final[dict[ErrorCode, tuple[int, str]]] = {
    ErrorCode.BAD_REQUEST: (
        400,
        "the envelope or an argument is wrong; `err` says which and what is expected "
        "(`argument.tel is required`)",
    ),
    ErrorCode.UNKNOWN_METHOD: (400, "no such method; `err` lists the known ones"),
    ErrorCode.AUTH_FAILED: (
        401,
        "credentials missing or wrong (the message never says which part was wrong)",
    ),
    ErrorCode.FORBIDDEN: (
        403,
        "the user's role does not allow this method, AMI action, extension or channel",
    ),
    ErrorCode.NOT_FOUND: (
        404,
        "no such thing, or none you may see (`smsStatus` with an unknown `smsId`)",
    ),
    ErrorCode.RATE_LIMITED: (
        429,
        "too many failed logins (`retryAfter` seconds), requests, SMS, subscriptions or "
        "in-flight requests",
    ),
    ErrorCode.SMS_QUEUE_FULL: (
        429,
        "the SMS outbox holds its maximum of unsent SMS, yours (`sms.outbox_max_per_user`) "
        "or in all (`sms.outbox_max`); nothing was stored, retry later",
    ),
    ErrorCode.PBX_UNAVAILABLE: (
        503,
        "the PBX is not connected (answered at once; also while it refuses our AMI "
        "login), or the connection dropped while waiting",
    ),
    ErrorCode.PBX_ERROR: (
        502,
        "the PBX answered `Response: Error`; `err` is its message and `event` its answer",
    ),
    ErrorCode.TIMEOUT: (504, "the PBX did not answer in time"),
    ErrorCode.NOT_SUPPORTED: (
        400,
        "the PBX lacks the feature (no GSM module), or an event method over plain HTTP",
    ),
    ErrorCode.ANSWER_TOO_LARGE: (
        502,
        "the PBX's answer passed a bound of the server (an event list of more than "
        "100 000 items); ask for less",
    ),
    ErrorCode.UNAVAILABLE: (
        503,
        "the server's own database (or external user directory) cannot be reached or did "
        "not answer in time; nothing was changed; retry later",
    ),
    ErrorCode.INTERNAL: (500, "a bug; details are in the server log, never in the answer"),
}


class ApiError(VwellError):
    """Root of the API layer's own errors."""


class BadRequest(ApiError):
    """The envelope or one of its arguments is malformed; the message says what is right."""


class MissingCredentials(ApiError):
    """No usable credentials: none sent, or one of them is not a non-empty string."""


class UnknownMethod(ApiError):
    """The requested method does not exist."""


class Forbidden(ApiError):
    """The caller's role does not allow this method, action, event, extension or channel."""


class NotFound(ApiError):
    """The thing asked for does not exist, or the caller may not see it (the same answer,
    so that ids of others' things cannot be probed)."""


class NeedsWebSocket(ApiError):
    """An event-subscription method was called over a transport that cannot push."""


class LimitExceeded(ApiError):
    """A documented bound was reached (in-flight requests, request rate, SMS rate)."""


ERROR_CODES: Final[dict[type[BaseException], ErrorCode]] = {
    BadRequest: ErrorCode.BAD_REQUEST,
    FormError: ErrorCode.BAD_REQUEST,
    FilterError: ErrorCode.BAD_REQUEST,
    EventError: ErrorCode.BAD_REQUEST,
    InvalidArgument: ErrorCode.BAD_REQUEST,
    LocalProtocolError: ErrorCode.BAD_REQUEST,
    UnknownMethod: ErrorCode.UNKNOWN_METHOD,
    AuthFailed: ErrorCode.AUTH_FAILED,
    MissingCredentials: ErrorCode.AUTH_FAILED,
    Forbidden: ErrorCode.FORBIDDEN,
    UnknownRoleError: ErrorCode.FORBIDDEN,
    RateLimited: ErrorCode.RATE_LIMITED,
    LimitExceeded: ErrorCode.RATE_LIMITED,
    SubscriptionLimit: ErrorCode.RATE_LIMITED,
    TooManyPending: ErrorCode.RATE_LIMITED,  # max_pending answers already awaited
    SmsQueueFull: ErrorCode.SMS_QUEUE_FULL,
    SmsRateLimited: ErrorCode.RATE_LIMITED,
    NotFound: ErrorCode.NOT_FOUND,
    PbxUnavailable: ErrorCode.PBX_UNAVAILABLE,
    # The client's view: the PBX cannot be used now. The log and /health say why.
    LoginFailed: ErrorCode.PBX_UNAVAILABLE,
    PbxRejected: ErrorCode.PBX_ERROR,
    NoReadySpan: ErrorCode.PBX_ERROR,
    PbxOperationError: ErrorCode.PBX_ERROR,
    ActionTimeout: ErrorCode.TIMEOUT,
    NotSupported: ErrorCode.NOT_SUPPORTED,
    NeedsWebSocket: ErrorCode.NOT_SUPPORTED,
    AnswerTooLarge: ErrorCode.ANSWER_TOO_LARGE,
    StorageUnavailable: ErrorCode.UNAVAILABLE,
    StorageBusy: ErrorCode.UNAVAILABLE,
}
"""Exception class -> ``errCode``; ``internal`` is the answer for anything else."""

ALL_CODES: Final = tuple(code.value for code in ErrorCode)
"""Every ``errCode`` value, in documentation order."""


def error_code(exc: BaseException) -> ErrorCode:
    """The ``errCode`` for ``exc``: the nearest class in its MRO listed in ``ERROR_CODES``."""
    for cls in type(exc).__mro__:
        code = ERROR_CODES.get(cls)
        if code is not None:
            return code
    return ErrorCode.INTERNAL


def error_table_markdown() -> str:
    """The error-code table of docs/api.md, generated from ``ErrorCode``."""
    lines = ["| errCode | HTTP status | meaning |", "|---|---|---|"]
    lines += [f"| `{code.value}` | {code.http_status} | {code.meaning} |" for code in ErrorCode]
    return "\n".join(lines)
