"""Which live channels belong to which call, for ownership rules (``redirect``).

A role with ``own_extensions_only`` may only move channels of calls that involve one
of the user's own extensions. The AMI carries no "owner" of a channel, so
``ChannelRegistry`` learns it from the PBX's events (an AMI listener, synchronous and
cheap, as every listener must be):

- ``Newchannel`` (and ``Newstate``/``NewCallerid``, which carry the same snapshot, so
  calls that began before we connected are learnt too) registers a channel with its
  call: the ``Linkedid`` (Asterisk 12+), else its own ``Uniqueid``.
- ``DialBegin`` (Asterisk 12+) and ``Dial`` with ``SubEvent: Begin`` (Asterisk 1.8, the
  Yeastar layout, which has no ``Linkedid``) join the dialled channel's call to the
  caller's call.
- ``Hangup`` forgets the channel; a call with no channel left is forgotten.

A call *involves* extension E when one of its channels is E's own device (the peer
part of ``SIP/E-…``, ``PJSIP/E-…``, ``IAX2/E-…``, ``Local/E@…``) or has ``Exten: E``.
The caller ID is deliberately not used: any outside caller can set it.

Invariants: at most ``max_channels`` channels are remembered (the least recently seen
is forgotten first, so memory stays bounded when Hangup events are missed); every
remembered channel is a member of exactly its own call's set, and no call's set is empty;
when the AMI connection is lost the registry is cleared (``clear``), since hangups that
happen while we are away are never reported; an unknown channel involves nobody (deny).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar, Final

from vwell_pbx.protocol import Message

__all__ = ["DEFAULT_MAX_CHANNELS", "ChannelRegistry", "device_extension"]

DEFAULT_MAX_CHANNELS: Final = 10_000

# Technologies whose channel names start with the extension's own device name.
_DEVICE_RE = re.compile(r"^(?:SIP|PJSIP|IAX2|Local)/([^-@;/]+)", re.IGNORECASE)
_SNAPSHOT_EVENTS = frozenset({"newchannel", "newstate", "newcallerid"})
# Every name observe() reads, casefolded, and as Asterisk spells them: most events (VarSet
# floods) are none of them, and an exact look-up answers that without casefolding.
_READ_EVENTS = frozenset({*_SNAPSHOT_EVENTS, "dialbegin", "dial", "hangup"})
_READ_SPELLED = frozenset({"Newchannel", "Newstate", "NewCallerid", "DialBegin", "Dial", "Hangup"})


def device_extension(channel: str) -> str | None:
    """The extension whose device a channel name belongs to (``SIP/269-0001`` -> 269)."""
    match = _DEVICE_RE.match(channel)
    return match.group(1) if match else None


@dataclass(slots=True)
class _Channel:
    call: str
    extensions: set[str] = field(default_factory=set)


class ChannelRegistry:
    """Live channels grouped into calls, learnt from PBX events; see the module docstring."""

    EVENTS: ClassVar[frozenset[str]] = _READ_EVENTS
    """The event names ``observe`` reads (casefolded): the only ones it needs to see."""

    def __init__(self, *, max_channels: int = DEFAULT_MAX_CHANNELS) -> None:
        if max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        self._max = max_channels
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._calls: dict[str, set[str]] = {}

    def __len__(self) -> int:
        """How many channels are remembered."""
        return len(self._channels)

    @property
    def calls(self) -> int:
        """How many calls are remembered."""
        return len(self._calls)

    def clear(self) -> None:
        """Forget everything (the AMI connection was lost)."""
        self._channels.clear()
        self._calls.clear()

    def observe(self, message: Message) -> None:
        """The AMI listener: update the registry from one PBX event."""
        spelled = message.name
        if spelled not in _READ_SPELLED and spelled.casefold() not in _READ_EVENTS:
            return
        name = spelled.casefold()
        if name in _SNAPSHOT_EVENTS:
            channel, linkedid, uniqueid, exten = message.get_many(
                "Channel", "Linkedid", "Uniqueid", "Exten"
            )
            if channel:
                self._register(channel, linkedid or uniqueid or channel, exten)
        elif name == "dialbegin":
            self._join(message.get("Channel"), message.get("DestChannel"), message.get("DestExten"))
        elif name == "dial":
            if (message.get("SubEvent") or "").casefold() == "begin":
                self._join(
                    message.get("Channel") or message.get("Source"),
                    message.get("Destination"),
                    None,
                )
        elif name == "hangup":
            channel = message.get("Channel")
            if channel:
                self._forget(channel)

    def involves(self, channel: str, extensions: Collection[str]) -> bool:
        """Is ``channel`` part of a live call that involves one of ``extensions``?"""
        entry = self._channels.get(channel)
        if entry is None or not extensions:
            return False
        wanted = set(extensions)
        return any(
            not wanted.isdisjoint(self._channels[member].extensions)
            for member in self._calls[entry.call]
        )

    # -- bookkeeping ------------------------------------------------------------------

    def _register(self, channel: str, call: str, exten: str | None) -> _Channel:
        entry = self._channels.get(channel)
        if entry is None:
            entry = _Channel(call=call)
            self._channels[channel] = entry
            self._calls.setdefault(call, set()).add(channel)
            device = device_extension(channel)
            if device:
                entry.extensions.add(device)
            while len(self._channels) > self._max:
                oldest, _ = next(iter(self._channels.items()))
                self._forget(oldest)
        else:
            self._channels.move_to_end(channel)
        if exten and exten != "s":
            entry.extensions.add(exten)
        return entry

    def _join(self, source: str | None, dest: str | None, dest_exten: str | None) -> None:
        """Put ``dest`` (and its whole call) into the call of ``source``."""
        if not source or not dest:
            return
        src = self._channels.get(source)
        if src is None:
            src = self._register(source, source, None)
        dst = self._channels.get(dest)
        if dst is None:
            dst = self._register(dest, src.call, dest_exten)
        elif dest_exten and dest_exten != "s":
            dst.extensions.add(dest_exten)
        if dst.call == src.call:
            return
        moved = self._calls.pop(dst.call)
        for member in moved:
            self._channels[member].call = src.call
        self._calls[src.call].update(moved)

    def _forget(self, channel: str) -> None:
        entry = self._channels.pop(channel, None)
        if entry is None:
            return
        members = self._calls[entry.call]
        members.discard(channel)
        if not members:
            del self._calls[entry.call]
