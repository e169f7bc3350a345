"""Errors of the PBX operations layer.

::

    VwellError
    └── PbxOperationError        a PBX operation could not be done as asked
        ├── InvalidArgument      an argument is malformed (-> errCode bad_request);
        │                        the message starts with the argument's path
        ├── NotSupported         the PBX lacks the action, CLI command or module
        ├── PbxRejected          the PBX answered ``Response: Error``: the one exception
        │                        for that answer, whoever sent the action (``dial``,
        │                        ``redirect``, an SMS backend, or the API's raw ``send``)
        ├── SmsQueueFull         the per-span SMS queue is at its bound
        └── NoReadySpan          ``span = "auto"`` found no GSM span in state READY

Errors of the AMI client (``PbxUnavailable``, ``LoginFailed``, ``ActionTimeout``, ...)
pass through this layer unchanged: the API layer maps every kind to an ``errCode`` in
one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vwell_pbx.errors import VwellError
from vwell_pbx.protocol import Message

if TYPE_CHECKING:
    from vwell_pbx.ami.client import ActionResult

# How Asterisk says that an AMI action does not exist:
# "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show ...".
_UNKNOWN_ACTION = "invalid/unknown command"
# How the CLI says that a command does not exist (in Output lines or the Follows text):
# "No such command 'gsm send sms 1 123 "hi"' (type 'core show help gsm send' ...)".
_UNKNOWN_CLI = "no such command"


class PbxOperationError(VwellError):
    """A PBX operation could not be done as asked."""


class InvalidArgument(PbxOperationError):
    """An argument is malformed; ``argument`` names it as the API spells it (``tel``)."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"argument.{argument} {problem}")


class NotSupported(PbxOperationError):
    """The PBX lacks the AMI action, CLI command or module that the operation needs."""


class PbxRejected(PbxOperationError):
    """The PBX answered ``Response: Error``.

    ``message`` is the PBX's own ``Message`` text (or the better complaint the operation
    found, such as the CLI's "No such command" line) and ``response`` the answer. For
    an action sent as the caller wrote it, ``result`` is the whole answer (event-list
    items or ``Command`` output that came with the error) and ``action_id`` the
    ActionID the caller chose (never the one on the wire), so that the caller can be
    shown the answer exactly as on success.
    """

    def __init__(
        self,
        message: str,
        response: Message,
        *,
        result: ActionResult | None = None,
        action_id: str | None = None,
    ) -> None:
        self.message = message
        self.response = response
        self.result = result
        self.action_id = action_id
        super().__init__(message)


class SmsQueueFull(PbxOperationError):
    """The SMS queue of one span (or device) holds its maximum; try again later."""


class SmsRateLimited(PbxOperationError):
    """The user stored as many SMS as the per-user rate allows; ``retry_after`` seconds
    until one more fits."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoReadySpan(PbxOperationError):
    """Automatic span selection found no GSM span whose module is READY to send."""


def is_unknown_action(response: Message) -> bool:
    """True when ``response`` is Asterisk's answer to an action it does not know."""
    if response.name.lower() != "error":
        return False
    return (response.get("Message") or "").lower().startswith(_UNKNOWN_ACTION)


def is_unknown_cli_command(output: str | None) -> bool:
    """True when CLI ``output`` is the CLI's "No such command" complaint."""
    if not output:
        return False
    return output.lstrip().lower().startswith(_UNKNOWN_CLI)


def raise_for_response(response: Message, *, unsupported: str) -> None:
    """Raise for an AMI ``Response: Error``; do nothing for any other answer.

    An unknown action becomes ``NotSupported(unsupported)``; any other error becomes
    ``PbxRejected`` carrying the PBX's ``Message``.
    """
    if response.name.lower() != "error":
        return
    if is_unknown_action(response):
        raise NotSupported(unsupported)
    message = response.get("Message") or "the PBX refused the action (no message given)"
    raise PbxRejected(message, response)
