"""Sans-IO AMI protocol: codec, message values and the rules that interpret them.

Nothing here imports asyncio or touches a socket or a clock.
"""

from vwell_pbx.protocol.codec import (
    NEED_DATA,
    AmiParser,
    encode_action,
    encode_greeting,
    encode_message,
)
from vwell_pbx.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from vwell_pbx.protocol.message import Greeting, Message, MessageKind, MissingAction, action_name

__all__ = [
    "NEED_DATA",
    "AmiParser",
    "Greeting",
    "LocalProtocolError",
    "Message",
    "MessageKind",
    "MissingAction",
    "ProtocolError",
    "RemoteProtocolError",
    "action_name",
    "encode_action",
    "encode_greeting",
    "encode_message",
]
