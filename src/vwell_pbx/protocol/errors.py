"""Errors of the sans-IO AMI codec.

::

    VwellError
    └── ProtocolError            the AMI byte stream cannot be handled
        ├── LocalProtocolError   we were asked to send something illegal
        │                        (CR/LF or ':' in a key, CR/LF in a value, no Action)
        └── RemoteProtocolError  the peer sent something illegal or too large
                                 (line or message over its limit, missing banner)

A ``RemoteProtocolError`` leaves the parser unusable: the stream is out of sync and the
connection must be closed. A ``LocalProtocolError`` changes nothing: nothing was written.
"""

from vwell_pbx.errors import VwellError


class ProtocolError(VwellError):
    """The AMI byte stream cannot be handled."""


class LocalProtocolError(ProtocolError):
    """We were asked to encode something that AMI cannot carry safely."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol or its limits."""
