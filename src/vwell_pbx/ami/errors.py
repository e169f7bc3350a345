"""Errors of the asyncio AMI client, grouped by what the caller can do about them.

::

    VwellError
    └── AmiError                 anything the AMI client layer raises on purpose
        ├── PbxUnavailable       no usable connection: not connected yet, the
        │                        connection was lost while we waited, or the client
        │                        was closed. Retrying later may help.
        ├── LoginFailed          the PBX refused our AMI credentials; fixing the
        │                        configuration helps, retrying alone does not
        ├── ActionTimeout        the PBX did not give a complete answer in time (the
        │                        connection may still be fine; the answer is dropped)
        ├── TooManyPending       ``AmiSettings.max_pending`` answers are already
        │                        awaited; the PBX is slower than our callers
        └── AnswerTooLarge       an answer passed a bound of ours (an event list of
                                 more than ``MAX_LIST_ITEMS`` items); asking for less
                                 helps, asking again does not

``LocalProtocolError`` (from ``vwell_pbx.protocol``) is raised unchanged when an
action cannot be encoded; nothing is written in that case.

No message of these errors ever contains the AMI secret.
"""

from __future__ import annotations

from vwell_pbx.errors import VwellError


class AmiError(VwellError):
    """Root of the errors raised by the AMI client layer."""


class PbxUnavailable(AmiError):
    """There is no usable connection to the PBX (not connected, lost, or client closed)."""


class LoginFailed(AmiError):
    """The PBX refused our AMI login (wrong user, secret or auth type).

    Not a ``PbxUnavailable``: that branch means "retrying may help", and a refused
    login keeps being refused until the configuration (or the PBX's manager.conf) is
    fixed. The client still retries in the background, with backoff, in case it was.
    """


class ActionTimeout(AmiError):
    """No complete answer (or awaited event) arrived within the timeout."""


class TooManyPending(AmiError):
    """The bound on actions awaiting an answer (``max_pending``) was reached."""


class AnswerTooLarge(AmiError):
    """An answer passed one of the client's bounds (an event list that is too long)."""
