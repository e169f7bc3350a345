"""What a channel name says about the party behind it, and how numbers are shown.

AMI names channels ``TECH/peer-suffix`` (``SIP/269-0000153c``, ``YSGSM/11-1``,
``PJSIP/trunk-00000001``); ``Local/exten@context-suffix;1`` and ``;2`` (``,1``/``,2`` on
Asterisk 1.4) are the two halves of a Local channel, which the tracker follows but
never reports. ``CallRules`` sorts the other channels with glob patterns matched
against the whole name, case-insensitively, trunks first:

- **trunk**: a line to the outside world (``YSGSM/*`` is a Yeastar GSM port);
- **extension**: a local phone; its extension number is the peer part (``SIP/269-…`` is
  extension ``269``);
- anything else is a party of unknown kind (it counts as a leg, but makes the
  direction ``unknown``).

Numbers (caller IDs, dialled numbers, DIDs) are normalised with the same
``PhoneRules`` as the numbers clients send, so that ``fromNumber`` can be fed back to
``dial``; a value that is not a phone number (``<unknown>``, ``anonymous``) is shown as
``null``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.numbers import PhoneRules

DEFAULT_TRUNKS: Final[tuple[str, ...]] = (
    "YSGSM/*",
    "Dongle/*",
    "SIP/trunk*",
    "PJSIP/trunk*",
    "IAX2/trunk*",
)
"""Trunk patterns fitting a Yeastar MyPBX with GSM ports, chan_dongle modems and SIP/IAX
trunks whose peer name starts with ``trunk``. Analog ``DAHDI/*`` ports are not listed:
on a MyPBX they may be phones (FXS) as well as lines (FXO); add them when they are lines."""

DEFAULT_EXTENSIONS: Final[tuple[str, ...]] = ("SIP/[0-9]*", "PJSIP/[0-9]*", "IAX2/[0-9]*")
"""Local phones: SIP, PJSIP and IAX2 peers whose name starts with a digit (``SIP/269-…``)."""

MAX_NAME_LENGTH: Final = 80
"""Caller names longer than this are cut (a name comes from the outside world)."""

_UNKNOWN_NAMES: Final = frozenset({"", "<unknown>", "unknown", "<none>"})
_SUFFIX: Final = re.compile(r"-[0-9A-Za-z]+$")
_LOCAL: Final = re.compile(r"^Local/(?P<base>.+)[;,](?P<half>[12])$", re.IGNORECASE)
_MASQUERADED: Final = ("<ZOMBIE>", "<MASQ>")
_MAX_INFOS: Final = 4096  # trunks and extensions remembered (CallRules._infos)


class ChannelKind(Enum):
    """What kind of party a channel is."""

    EXTENSION = "extension"
    TRUNK = "trunk"
    LOCAL = "local"
    OTHER = "other"
    ZOMBIE = "zombie"  # a masqueraded leftover (``…<ZOMBIE>``): neither a party nor a leg


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What a channel's name tells: kind, extension or trunk, Local pair and half."""

    kind: ChannelKind
    extension: str | None = None  # the extension number of a local phone
    trunk: str | None = None  # the trunk's endpoint, ``YSGSM/11`` for ``YSGSM/11-1``
    local_pair: str | None = None  # ``Local/268@ctx-00000005`` for both halves
    local_half: int = 0  # 1 or 2 for a Local channel


# A frozen dataclass's __init__ sets each field through object.__setattr__: making one
# cost about half of classify(). The answers that are not a Local half depend only on
# the kind and the extension or trunk, so they are made once and shared (they are
# immutable and compared by value).
_ZOMBIE_INFO: Final = ChannelInfo(ChannelKind.ZOMBIE)
_OTHER_INFO: Final = ChannelInfo(ChannelKind.OTHER)
# Read as globals at every new channel: ``ChannelKind.TRUNK`` costs about 900 CPU
# instructions in Python 3.11 (the enum class's attribute hook), a global about 20.
_TRUNK: Final = ChannelKind.TRUNK
_EXTENSION: Final = ChannelKind.EXTENSION
_LOCAL_KIND: Final = ChannelKind.LOCAL


def _compile(patterns: Sequence[str], what: str) -> re.Pattern[str] | None:
    parts: list[str] = []
    for position, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"calls.{what}[{position}] must be a non-empty glob pattern")
        parts.append(fnmatch.translate(pattern))
    if not parts:
        return None
    return re.compile("|".join(f"(?:{part})" for part in parts), re.IGNORECASE)


def endpoint(channel: str) -> str:
    """The channel name without its per-call suffix: ``SIP/269-0000153c`` -> ``SIP/269``."""
    return _SUFFIX.sub("", channel) if "/" in channel else channel


@dataclass(frozen=True, slots=True)
class CallRules:
    """How the tracker reads channel names and numbers (the ``[calls]`` settings).

    ``trunks`` and ``extensions`` are glob patterns (``*``, ``?``, ``[0-9]``) matched
    against whole channel names, case-insensitively; a name matching a trunk pattern is
    a trunk even if it also matches an extension pattern. ``phone`` normalises numbers.
    Construction raises ``ValueError`` naming the bad setting.
    """

    trunks: tuple[str, ...] = DEFAULT_TRUNKS
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    phone: PhoneRules = field(default_factory=PhoneRules)
    _trunk_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _extension_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    # (kind, extension or trunk) -> the shared ChannelInfo; bounded by _MAX_INFOS.
    _infos: dict[tuple[ChannelKind, str | None], ChannelInfo] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunks", tuple(self.trunks))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        object.__setattr__(self, "_trunk_re", _compile(self.trunks, "trunks"))
        object.__setattr__(self, "_extension_re", _compile(self.extensions, "extensions"))
        object.__setattr__(self, "_infos", {})

    def classify(self, channel: str) -> ChannelInfo:
        """Sort a channel name into trunk, extension, Local half, zombie or other."""
        if channel.endswith(_MASQUERADED):
            return _ZOMBIE_INFO
        local = _LOCAL.match(channel)
        if local is not None:
            return ChannelInfo(
                _LOCAL_KIND,
                local_pair="Local/" + local.group("base"),
                local_half=int(local.group("half")),
            )
        if self._trunk_re is not None and self._trunk_re.match(channel):
            return self._shared(_TRUNK, endpoint(channel))
        if self._extension_re is not None and self._extension_re.match(channel):
            _, _, peer = endpoint(channel).partition("/")
            return self._shared(_EXTENSION, peer or None)
        return _OTHER_INFO

    def _shared(self, kind: ChannelKind, value: str | None) -> ChannelInfo:
        """The one ``ChannelInfo`` of a trunk or an extension (``value`` is its trunk
        endpoint or extension number), made on first use; emptied when full."""
        key = (kind, value)
        info = self._infos.get(key)
        if info is None:
            if kind is _TRUNK:
                info = ChannelInfo(kind, trunk=value)
            else:
                info = ChannelInfo(kind, extension=value)
            if len(self._infos) >= _MAX_INFOS:
                self._infos.clear()
            self._infos[key] = info
        return info

    def number(self, raw: str | None) -> str | None:
        """A caller ID or dialled number, normalised; ``None`` if it is not a number."""
        if raw is None:
            return None
        raw = raw.strip()
        if raw.lower() in _UNKNOWN_NAMES or raw == "s":
            return None
        try:
            return self.phone.normalise(raw, argument="number")
        except InvalidArgument:
            return None

    @staticmethod
    def name(raw: str | None) -> str | None:
        """A caller name as shown: ``None`` for unknown, cut to ``MAX_NAME_LENGTH``."""
        if raw is None:
            return None
        raw = raw.strip()
        if raw.lower() in _UNKNOWN_NAMES:
            return None
        return raw[:MAX_NAME_LENGTH]
