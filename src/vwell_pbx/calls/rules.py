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
from typing import Final, TypeVar

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
_LOCAL_SOURCE: Final = r"^Local/(?P<base>.+)[;,](?P<half>[12])$"
_MASQUERADED: Final = ("<ZOMBIE>", "<MASQ>")
_MAX_INFOS: Final = 4096  # trunks, and extensions, remembered (CallRules._trunk_infos, ...)
_K = TypeVar("_K", str, str | None)


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
_LOCAL_KIND: Final = ChannelKind.LOCAL


def _globs(patterns: Sequence[str], what: str) -> str | None:
    """The glob patterns of a setting as one regular expression's source (None: none)."""
    parts: list[str] = []
    for position, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"calls.{what}[{position}] must be a non-empty glob pattern")
        parts.append(fnmatch.translate(pattern))
    if not parts:
        return None
    return "|".join(f"(?:{part})" for part in parts)


def _kinds(trunks: str | None, extensions: str | None) -> re.Pattern[str]:
    """One regular expression for classify: a Local half, else a trunk, else an
    extension; ``match.lastgroup`` says which matched.

    The same tests, in the same order, as three separate matches (an alternation takes
    its first branch that matches), at the cost of one: a ``match`` call costs 1,500
    CPU instructions even when it fails at the first character, 2,500 for a trunk's.
    """
    branches = [f"(?P<local>{_LOCAL_SOURCE})"]
    if trunks is not None:
        branches.append(f"(?P<trunk>{trunks})")
    if extensions is not None:
        branches.append(f"(?P<extension>{extensions})")
    return re.compile("|".join(branches), re.IGNORECASE)


def _keep(infos: dict[_K, ChannelInfo], key: _K, info: ChannelInfo) -> ChannelInfo:
    """Remember ``info`` under ``key`` in one of the bounded caches of shared
    ``ChannelInfo``s (emptied when it holds ``_MAX_INFOS``); returns it."""
    if len(infos) >= _MAX_INFOS:
        infos.clear()
    infos[key] = info
    return info


def endpoint(channel: str) -> str:
    """The channel name without its per-call suffix: ``SIP/269-0000153c`` -> ``SIP/269``."""
    if "/" not in channel:
        return channel
    # What _SUFFIX.sub does, without a regular expression for the usual name (a third of
    # classify's cost): only the last "-" can start a match, and when the rest after it
    # is ASCII letters and digits it is the whole match. Anything else (no suffix, or an
    # odd one such as a trailing newline, which "$" also matches before) takes the regex.
    head, dash, suffix = channel.rpartition("-")
    if dash and suffix.isascii() and suffix.isalnum():
        return head
    return _SUFFIX.sub("", channel)


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
    _kinds_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    # Trunk endpoint -> its shared ChannelInfo, and extension number -> its; each
    # bounded by _MAX_INFOS. Keyed by the string alone: a key holding the ChannelKind
    # would be hashed by Enum.__hash__, a Python function.
    _trunk_infos: dict[str, ChannelInfo] = field(init=False, repr=False, compare=False)
    _extension_infos: dict[str | None, ChannelInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunks", tuple(self.trunks))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        kinds = _kinds(_globs(self.trunks, "trunks"), _globs(self.extensions, "extensions"))
        object.__setattr__(self, "_kinds_re", kinds)
        object.__setattr__(self, "_trunk_infos", {})
        object.__setattr__(self, "_extension_infos", {})

    def classify(self, channel: str) -> ChannelInfo:
        """Sort a channel name into trunk, extension, Local half, zombie or other."""
        if channel.endswith(_MASQUERADED):
            return _ZOMBIE_INFO
        match = self._kinds_re.match(channel)
        if match is None:
            return _OTHER_INFO
        kind = match.lastgroup
        if kind == "trunk":
            return self._trunk_info(endpoint(channel))
        if kind == "extension":
            _, _, peer = endpoint(channel).partition("/")
            return self._extension_info(peer or None)
        return ChannelInfo(
            _LOCAL_KIND,
            local_pair="Local/" + match.group("base"),
            local_half=int(match.group("half")),
        )

    def _trunk_info(self, trunk: str) -> ChannelInfo:
        """The one ``ChannelInfo`` of a trunk endpoint, made on first use."""
        info = self._trunk_infos.get(trunk)
        if info is None:
            info = _keep(self._trunk_infos, trunk, ChannelInfo(ChannelKind.TRUNK, trunk=trunk))
        return info

    def _extension_info(self, extension: str | None) -> ChannelInfo:
        """The one ``ChannelInfo`` of an extension number, made on first use."""
        info = self._extension_infos.get(extension)
        if info is None:
            made = ChannelInfo(ChannelKind.EXTENSION, extension=extension)
            info = _keep(self._extension_infos, extension, made)
        return info

    def number(self, raw: str | None) -> str | None:
        """A caller ID or dialled number, normalised; ``None`` if it is not a number."""
        if raw is None:
            return None
        raw = raw.strip()
        # Most numbers are plain digits: normalised without regular expressions (the
        # same result; no unknown name is plain). is_plain written out: one call less.
        digits = raw[1:] if raw.startswith("+") else raw
        if digits.isascii() and digits.isdigit():
            return self.phone.normalise_plain(raw)
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
