"""Transfer a live call: AMI ``Redirect`` (the ``redirect`` method).

::

    Action: Redirect
    Channel: YSGSM/11-1
    Exten: 269
    Context: <configured>
    Priority: 1
    [ExtraChannel: <peer>, ExtraExten/ExtraContext/ExtraPriority: the same target]

Channel names come from clients (copied from a ``Newchannel`` event), so they are
checked: non-empty, at most ``MAX_CHANNEL_LENGTH`` characters, no whitespace and no
control or format characters. Anything else is kept as data (``Local/100@ctx-0001;1``,
``&`` and ``@`` included): it is a header value, which the codec also refuses to carry
with CR/LF. Asterisk answers ``Channel does not exist: X`` for a missing channel
(``PbxRejected``); a missing *context* still gets ``Redirect successful``.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Final

from vwell_pbx.pbx.errors import InvalidArgument, raise_for_response
from vwell_pbx.pbx.numbers import check_normalised
from vwell_pbx.protocol import Message

if TYPE_CHECKING:  # the client is only a parameter type here
    from vwell_pbx.ami.client import AmiClient

MAX_CHANNEL_LENGTH: Final = 256
"""Longest channel name accepted (Asterisk's own limit is 80; some drivers go beyond)."""


def check_channel(channel: object, *, argument: str = "channel") -> str:
    """Return ``channel`` if it can be a channel name, else raise ``InvalidArgument``."""
    if not isinstance(channel, str) or not channel:
        raise InvalidArgument(argument, "is required (a channel name such as 'YSGSM/11-1')")
    if len(channel) > MAX_CHANNEL_LENGTH:
        raise InvalidArgument(argument, f"is too long (more than {MAX_CHANNEL_LENGTH} characters)")
    for char in channel:
        # Z* = separators (spaces), C* = control, format, surrogate, unassigned.
        if char.isspace() or unicodedata.category(char)[0] in "ZC":
            raise InvalidArgument(
                argument,
                f"must be a channel name without spaces or control characters, got {channel!r}",
            )
    return channel


def build_redirect(
    channel: str,
    to_tel: str,
    *,
    context: str,
    priority: str = "1",
    extra_channel: str | None = None,
) -> list[tuple[str, str]]:
    """The ``Redirect`` action's fields (without ActionID, which the client adds).

    ``to_tel`` must be a normalised number; with ``extra_channel`` the bridged peer is
    sent to the same target. ``InvalidArgument`` names ``channel``, ``toTel`` or
    ``extraChannel`` when one is malformed.
    """
    check_channel(channel)
    if extra_channel is not None:
        check_channel(extra_channel, argument="extraChannel")
    check_normalised(to_tel, argument="toTel")
    if not context or not priority:
        raise ValueError("redirect.context and the priority must not be empty")
    fields = [
        ("Action", "Redirect"),
        ("Channel", channel),
        ("Exten", to_tel),
        ("Context", context),
        ("Priority", priority),
    ]
    if extra_channel is not None:
        fields += [
            ("ExtraChannel", extra_channel),
            ("ExtraExten", to_tel),
            ("ExtraContext", context),
            ("ExtraPriority", priority),
        ]
    return fields


async def redirect(
    client: AmiClient,
    channel: str,
    to_tel: str,
    *,
    context: str,
    extra_channel: str | None = None,
    timeout: float,  # noqa: ASYNC109
) -> Message:
    """Redirect ``channel`` (and ``extra_channel``) to ``to_tel`` in ``context``.

    Returns the PBX's success response (``Redirect successful`` or ``Dual Redirect
    successful``). Raises ``InvalidArgument``, ``PbxRejected`` (``Channel does not
    exist: X``) and the AMI client's errors unchanged.
    """
    fields = build_redirect(channel, to_tel, context=context, extra_channel=extra_channel)
    result = await client.send_action(fields, timeout=timeout)
    raise_for_response(result.response, unsupported="this PBX has no Redirect action")
    return result.response
