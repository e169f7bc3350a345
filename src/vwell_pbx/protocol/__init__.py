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
from vwell_pbx.protocol.message import Greeting, Message, MessageKind

__all__ = [
    "NEED_DATA",
    "AmiParser",
    "Greeting",
    "LocalProtocolError",
    "Message",
    "MessageKind",
    "ProtocolError",
    "RemoteProtocolError",
    "encode_action",
    "encode_greeting",
    "encode_message",
]
