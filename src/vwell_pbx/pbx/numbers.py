"""Phone number rules: how a number from a client is made fit for the PBX.

A number from a client is normalised before it reaches the PBX:

1. An ``int`` is taken as its decimal digits (``bool`` and negative numbers are refused).
2. Separators people type are dropped: whitespace (including no-break space), ``-``,
   ``.``, ``(``, ``)``, ``[``, ``]``.
3. What remains must be an optional leading ``+`` followed by one or more digits, ``*``
   or ``#`` (ASCII only), at most ``MAX_NUMBER_LENGTH`` characters; otherwise
   ``InvalidArgument`` naming the argument.
4. The first configured prefix rewrite whose prefix starts the number replaces it;
   the default rewrites ``+7`` to ``8`` (the original's Russian numbers).

Invariant: a normalised number matches ``\\+?[0-9*#]+`` and so can never carry a line
break, a space or a quote into an AMI header or a CLI command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from vwell_pbx.pbx.errors import InvalidArgument

MAX_NUMBER_LENGTH: Final = 32
"""Longest normalised number accepted (E.164 has 15 digits; room for prefixes, * and #)."""

MAX_RAW_LENGTH: Final = 128
"""Longest raw input looked at, separators included; longer input is refused unread."""

_SEPARATORS: Final = re.compile(r"[\s\-.()\[\]]+")
_NUMBER: Final = re.compile(r"\+?[0-9*#]+", re.ASCII)
_REPLACEMENT: Final = re.compile(r"\+?[0-9*#]*", re.ASCII)

_EXPECTED: Final = (
    "must be a phone number: digits, '*', '#' and an optional leading '+' "
    "(spaces, dashes, dots and brackets are ignored)"
)


def is_normalised(number: str) -> bool:
    """True when ``number`` already has the normalised form ``\\+?[0-9*#]+``."""
    return len(number) <= MAX_NUMBER_LENGTH and _NUMBER.fullmatch(number) is not None


def is_plain(number: str) -> bool:
    """True when ``number`` is ASCII digits with an optional leading ``+`` (nothing for
    ``PhoneRules.normalise`` to drop or refuse: see ``PhoneRules.normalise_plain``)."""
    digits = number[1:] if number.startswith("+") else number
    return digits.isascii() and digits.isdigit()


def check_normalised(value: object, *, argument: str) -> str:
    """Return ``value`` if it is a normalised number, else raise ``InvalidArgument(argument)``.

    For operations whose callers were meant to ``normalise`` first: a last check before
    a number goes into an AMI header or a CLI line.
    """
    if not isinstance(value, str) or not is_normalised(value):
        raise InvalidArgument(argument, "must be a normalised phone number (digits, '*', '#')")
    return value


def _shown(raw: str) -> str:
    """A short, quoted rendering of a bad value for an error message."""
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


@dataclass(frozen=True, slots=True)
class PhoneRules:
    """How numbers are normalised: the separators rule plus ordered prefix rewrites.

    ``rewrite`` pairs are ``(prefix, replacement)``; the first pair whose prefix starts
    the cleaned number applies, and no other. A prefix must itself be a valid number
    and a replacement a (possibly empty) one, so rewriting keeps the invariant;
    ``ValueError`` names the bad pair otherwise.
    """

    rewrite: tuple[tuple[str, str], ...] = (("+7", "8"),)

    def __post_init__(self) -> None:
        # Configuration hands over lists of lists; keep an immutable copy.
        object.__setattr__(self, "rewrite", tuple(tuple(pair) for pair in self.rewrite))
        for position, pair in enumerate(self.rewrite):
            if len(pair) != 2:
                raise ValueError(f"phone.rewrite[{position}] must be a [prefix, replacement] pair")
            prefix, replacement = pair
            if not isinstance(prefix, str) or _NUMBER.fullmatch(prefix) is None:
                raise ValueError(
                    f"phone.rewrite[{position}] prefix {prefix!r} must be '+', digits, '*' or '#'"
                )
            if not isinstance(replacement, str) or _REPLACEMENT.fullmatch(replacement) is None:
                raise ValueError(
                    f"phone.rewrite[{position}] replacement {replacement!r} must be empty or "
                    "digits, '*', '#' with an optional leading '+'"
                )

    def normalise_plain(self, number: str) -> str | None:
        """``normalise(number)`` for a number written plainly, ASCII digits with an
        optional leading ``+`` (the caller checks: ``is_plain``); ``None`` where
        ``normalise`` would raise.

        The same result without ``normalise``'s regular expressions, which would find
        nothing to drop and nothing to refuse (the call tracker reads thousands of
        such numbers a second). A rewrite keeps the form ``\\+?[0-9*#]*`` (a prefix
        that starts the number takes its ``+`` if it has one, so digits remain; a
        replacement has that form): the result is a number unless too long, or empty
        or a lone ``+``.
        """
        if len(number) > MAX_RAW_LENGTH:
            return None
        for prefix, replacement in self.rewrite:
            if number.startswith(prefix):
                number = replacement + number[len(prefix) :]
                break
        if len(number) > MAX_NUMBER_LENGTH or number in ("", "+"):
            return None
        return number

    def normalise(self, raw: str | int, *, argument: str = "tel") -> str:
        """Return the normalised form of ``raw`` or raise ``InvalidArgument(argument)``.

        ``"+7 100 200 30 40"`` -> ``"81002003040"``; ``"269"`` -> ``"269"``.
        """
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise InvalidArgument(argument, f"{_EXPECTED}; got a {type(raw).__name__}")
        if isinstance(raw, int):
            if raw < 0:
                raise InvalidArgument(argument, f"{_EXPECTED}; got {raw}")
            raw = str(raw)
        if len(raw) > MAX_RAW_LENGTH:
            raise InvalidArgument(argument, f"is too long (more than {MAX_RAW_LENGTH} characters)")
        cleaned = _SEPARATORS.sub("", raw)
        if not cleaned:
            raise InvalidArgument(argument, "is required (a phone number, e.g. '+7 100 200 30 40')")
        if _NUMBER.fullmatch(cleaned) is None:
            raise InvalidArgument(argument, f"{_EXPECTED}; got {_shown(raw)}")
        for prefix, replacement in self.rewrite:
            if cleaned.startswith(prefix):
                cleaned = replacement + cleaned[len(prefix) :]
                break
        # A rewrite may shorten "+7" to "" or leave a lone "+": both are not numbers.
        if not is_normalised(cleaned):
            if len(cleaned) > MAX_NUMBER_LENGTH:
                raise InvalidArgument(
                    argument, f"is too long (more than {MAX_NUMBER_LENGTH} digits)"
                )
            raise InvalidArgument(argument, f"{_EXPECTED}; got {_shown(raw)}")
        return cleaned
