"""Errors of the PBX operations layer.

::

    VwellError
    └── PbxOperationError        a PBX operation could not be done as asked
        ├── InvalidArgument      an argument is malformed (-> errCode bad_request);
        │                        the message starts with the argument's path
        ├── NotSupported         the PBX lacks the action, CLI command or module
        ├── PbxRejected          the PBX answered ``Response: Error``
        ├── SmsQueueFull         the per-span SMS queue is at its bound
        └── NoReadySpan          ``span = "auto"`` found no GSM span in state READY

Errors of the AMI client (``PbxUnavailable``, ``ActionTimeout``, ...) pass through this
layer unchanged: the API layer maps every kind to an ``errCode`` in one table.
"""

from __future__ import annotations

from vwell_pbx.errors import VwellError
from vwell_pbx.protocol import Message

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
    """The PBX answered ``Response: Error``; ``message`` is its own ``Message`` text."""

    def __init__(self, message: str, response: Message) -> None:
        self.message = message
        self.response = response
        super().__init__(message)


class SmsQueueFull(PbxOperationError):
    """The SMS queue of one span (or device) holds its maximum; try again later."""


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
