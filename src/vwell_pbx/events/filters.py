"""Event filters: which pushed events a subscription wants.

A filter is an event name plus field filters, as a client gives them to ``onEvent``
(docs/api.md, *onEvent / onceEvent*). The rules, all decided here so that the bus and
the API agree:

1. Names, field keys and field values are compared case-insensitively (AMI spells
   ``Uniqueid`` and ``UniqueID`` both ways, clients write ``NewChannel``).
2. The name ``None``, ``""`` or ``"*"`` (or any run of ``*`` only) means every event.
   A name or a value may contain ``*`` wildcards; ``*`` matches any run of characters,
   including none. There is no escape: a literal ``*`` in an AMI value (``*97``) is
   matched by the pattern too, just less strictly.
3. A field value may be a list: the field matches when any of them matches. A value
   ``"*"`` only requires the field to be present.
4. Values are compared as strings. Numbers and booleans are stringified the way
   JavaScript's ``String()`` does it, since that is what a browser client means:
   ``true`` -> ``"true"``, ``1`` and ``1.0`` -> ``"1"``, ``1.5`` -> ``"1.5"``.
5. An event field that is a list (a header repeated in one AMI message) matches when
   any of its items matches. An absent field never matches (not even ``""``).
6. Every field filter must match (AND); fields the filter does not name are ignored.

Bounds (every input a client sends is bounded): at most ``MAX_FIELDS`` field filters,
``MAX_VALUES`` values per field and ``MAX_TEXT`` characters per name or value; past them
``FilterError``.

Wildcards are matched by splitting the pattern on ``*`` and searching the segments
left to right, which is linear in the text: no regular expression, so no pattern a
client sends can make matching slow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vwell_pbx.errors import VwellError

if TYPE_CHECKING:
    from vwell_pbx.events.bus import BusEvent

__all__ = [
    "MAX_FIELDS",
    "MAX_TEXT",
    "MAX_VALUES",
    "EventFilter",
    "FieldTest",
    "FilterError",
    "Glob",
    "glob_match",
    "scalar_text",
]

MAX_FIELDS = 64
MAX_VALUES = 256
MAX_TEXT = 1024

#: A wildcard pattern split on ``*``: ``"+7978*"`` -> ``("+7978", "")``. Always >= 2 items.
Glob = tuple[str, ...]

#: One field filter: (lowercased key, lowercased exact values, wildcard patterns).
FieldTest = tuple[str, frozenset[str], tuple[Glob, ...]]


class FilterError(VwellError):
    """A filter specification is malformed; the message names the offending field."""


def scalar_text(value: object) -> str | None:
    """The string a JSON scalar compares as (rule 4), or ``None`` if it is not a scalar.

    ``None`` (JSON null), lists, objects and non-finite floats have no text.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    return None


def _float_text(value: float) -> str | None:
    """A float as JavaScript's ``String()`` prints it; ``None`` if it is not finite."""
    if not math.isfinite(value):
        return None
    # JavaScript prints integral numbers without ".0"; a client filtering on
    # ChannelState: 1 sent the number 1 whatever its JSON spelling.
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def glob_match(glob: Glob, text: str) -> bool:
    """Whether ``text`` matches the split wildcard pattern ``glob`` (both lowercased).

    Greedy leftmost search of each middle segment is exact for patterns whose only
    metacharacter is ``*``.
    """
    first = glob[0]
    last = glob[-1]
    if len(text) < len(first) + len(last):
        return False
    if not text.startswith(first) or not text.endswith(last):
        return False
    if len(glob) == 2:
        return True
    position = len(first)
    end = len(text) - len(last)
    for segment in glob[1:-1]:
        found = text.find(segment, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


def _compile_pattern(text: str) -> str | Glob | None:
    """Lowercase ``text``; a pattern of only ``*`` is ``None`` (anything), one with ``*``
    becomes a :data:`Glob`, anything else stays an exact string."""
    lowered = text.lower()
    if "*" not in lowered:
        return lowered
    if not lowered.strip("*"):
        return None
    segments: list[str] = []
    for segment in lowered.split("*"):
        # "a**b" is "a*b": drop the empty middle segments, keep both ends.
        if segment or not segments:
            segments.append(segment)
    if lowered.endswith("*"):
        segments.append("")
    return tuple(segments)


def _field_test(key: object, value: object) -> FieldTest:
    if not isinstance(key, str) or not key:
        raise FilterError("event field names must be non-empty strings")
    if len(key) > MAX_TEXT:
        raise FilterError(f"event field name {key[:40]!r}... is longer than {MAX_TEXT} characters")
    where = f"event.{key}"
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise FilterError(f"{where} must not be an empty list")
    if len(items) > MAX_VALUES:
        raise FilterError(f"{where} has more than {MAX_VALUES} values")
    exact: set[str] = set()
    globs: list[Glob] = []
    for item in items:
        text = scalar_text(item)
        if text is None:
            raise FilterError(f"{where} must be a string, number, boolean or a list of them")
        if len(text) > MAX_TEXT:
            raise FilterError(f"{where} is longer than {MAX_TEXT} characters")
        pattern = _compile_pattern(text)
        if pattern is None:
            globs.append(("", ""))  # "*": any value, but the field must be present
        elif isinstance(pattern, str):
            exact.add(pattern)
        else:
            globs.append(pattern)
    return key.lower(), frozenset(exact), tuple(globs)


def _value_matches(value: str | list[str], exact: frozenset[str], globs: tuple[Glob, ...]) -> bool:
    if isinstance(value, str):
        if value in exact:
            return True
        for glob in globs:  # noqa: SIM110  (no generator on the hot path)
            if glob_match(glob, value):
                return True
        return False
    for item in value:
        if item in exact:
            return True
        for glob in globs:
            if glob_match(glob, item):
                return True
    return False


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What one subscription wants: an event name (or pattern) and field filters.

    Build it with :meth:`from_spec`; the fields are its compiled form.
    """

    #: Lowercased exact event name, for the bus's name index; ``None`` for any
    #: event or a wildcard name.
    name_key: str | None
    #: The lowercased name as given, ``"*"`` for any event: what ``rmEvent`` by
    #: name compares against.
    name_pattern: str
    #: The split wildcard name, when the name has ``*`` in it (and is not only ``*``).
    name_glob: Glob | None
    #: Field filters in the order given.
    field_tests: tuple[FieldTest, ...]

    @classmethod
    def from_spec(cls, name: str | None, fields: Mapping[str, object] | None = None) -> EventFilter:
        """Compile a client's filter; raises :class:`FilterError` naming the bad field.

        ``name``: the event name (case-insensitive, ``*`` wildcards; ``None``, ``""``
        or ``"*"`` for every event). ``fields``: key -> value or list of values, see the
        module docstring. A key ``name`` among ``fields`` is an ordinary field filter
        on the pushed ``name`` field.
        """
        if name is not None and not isinstance(name, str):
            raise FilterError("event.name must be a string")
        if name is not None and len(name) > MAX_TEXT:
            raise FilterError(f"event.name is longer than {MAX_TEXT} characters")
        pattern = _compile_pattern(name or "*")
        name_key = pattern if isinstance(pattern, str) else None
        name_glob = pattern if isinstance(pattern, tuple) else None
        name_pattern = "*" if pattern is None else (name or "").lower()
        tests: list[FieldTest] = []
        if fields is not None:
            if not isinstance(fields, Mapping):
                raise FilterError("event must be an object of field filters")
            if len(fields) > MAX_FIELDS:
                raise FilterError(f"event has more than {MAX_FIELDS} field filters")
            for key, value in fields.items():
                tests.append(_field_test(key, value))
        return cls(
            name_key=name_key,
            name_pattern=name_pattern,
            name_glob=name_glob,
            field_tests=tuple(tests),
        )

    def matches(self, event: BusEvent) -> bool:
        """Whether ``event`` passes the name and every field filter."""
        if self.name_key is not None:
            if event.name_key != self.name_key:
                return False
        elif self.name_glob is not None and not glob_match(self.name_glob, event.name_key):
            return False
        return self.matches_fields(event)

    def matches_fields(self, event: BusEvent) -> bool:
        """Whether ``event`` passes every field filter, the name not checked.

        The bus calls this for subscriptions it found through the name index.
        """
        if not self.field_tests:
            return True
        lowered_value = event.lowered_value
        for key, exact, globs in self.field_tests:
            value = lowered_value(key)
            if value is None or not _value_matches(value, exact, globs):
                return False
        return True
