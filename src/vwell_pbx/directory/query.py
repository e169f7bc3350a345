"""The directory's query: the administrator's SQL with ``:login`` and ``:login2``.

The query is configuration, written by the administrator; what a client sends (the
login and login2) only ever travels as the values of its two named parameters, never
inside the SQL text. :meth:`DirectoryQuery.parse` checks the text once, at start-up:

1. exactly one statement, a ``SELECT`` (or ``WITH ... SELECT``);
2. named parameters are ``:login`` and ``:login2`` only, and ``:login`` is used;
3. quoted text (``'...'``, ``"..."``, `` `...` ``) and comments (``-- ...``,
   ``/* ... */``) are skipped when looking for parameters and semicolons, and
   PostgreSQL's ``::type`` casts are not parameters.

It then renders the text for each driver: ``$1, $2`` for asyncpg (server-side
parameters), ``%s`` with every literal ``%`` doubled for aiomysql (whose values are
escaped by the driver for the connection's character set).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from vwell_pbx.errors import VwellError

__all__ = ["PARAMETERS", "DirectoryQuery", "QueryError"]

#: The named parameters a query may use.
PARAMETERS: Final = ("login", "login2")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIRST_WORD_RE = re.compile(r"\s*\(*\s*([A-Za-z]+)")


class QueryError(VwellError):
    """The configured query cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    parameter: str | None  # a parameter's name, or None for plain SQL text
    quoted: bool = False  # text inside quotes or a comment (rendered as it is)


@dataclass(frozen=True, slots=True)
class DirectoryQuery:
    """A checked query, ready to be rendered for a driver."""

    pieces: tuple[_Piece, ...]

    @classmethod
    def parse(cls, text: str) -> DirectoryQuery:
        """Check ``text`` (see the module docstring); ``QueryError`` says what is wrong."""
        pieces = _scan(text)
        code = "".join(p.text for p in pieces if p.parameter is None and not p.quoted)
        body = code.strip().rstrip(";").strip()
        if ";" in body:
            raise QueryError("must be one statement (no ';' between statements)")
        first = _FIRST_WORD_RE.match(code)
        if first is None or first.group(1).upper() not in ("SELECT", "WITH"):
            raise QueryError("must be a SELECT (or WITH ... SELECT) statement")
        names = {p.parameter for p in pieces if p.parameter is not None}
        unknown = sorted(names - set(PARAMETERS))
        if unknown:
            raise QueryError(
                f"unknown parameter :{unknown[0]}; only :login and :login2 can be used"
            )
        if "login" not in names:
            raise QueryError("must use :login (and usually :login2) in its WHERE clause")
        return cls(tuple(pieces))

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters in order of appearance (repeats included)."""
        return tuple(p.parameter for p in self.pieces if p.parameter is not None)

    def render(self, style: Literal["numbered", "pyformat"]) -> tuple[str, tuple[str, ...]]:
        """The SQL for a driver and the parameter names its positional values follow.

        ``numbered``: ``$1``, ``$2`` (a name used twice keeps its number);
        ``pyformat``: ``%s`` each time, literal ``%`` doubled.
        """
        out: list[str] = []
        order: list[str] = []
        for piece in self.pieces:
            if piece.parameter is None:
                out.append(piece.text.replace("%", "%%") if style == "pyformat" else piece.text)
            elif style == "numbered":
                if piece.parameter not in order:
                    order.append(piece.parameter)
                out.append(f"${order.index(piece.parameter) + 1}")
            else:
                order.append(piece.parameter)
                out.append("%s")
        return "".join(out).strip().rstrip(";").rstrip(), tuple(order)


def _scan(text: str) -> list[_Piece]:
    """Split ``text`` into plain SQL, quoted text and comments, and parameters."""
    pieces: list[_Piece] = []
    plain: list[str] = []
    i, n = 0, len(text)

    def flush() -> None:
        if plain:
            pieces.append(_Piece("".join(plain), None))
            plain.clear()

    while i < n:
        char = text[i]
        if char in "'\"`":
            end = _closing_quote(text, i)
            flush()
            pieces.append(_Piece(text[i:end], None, quoted=True))
            i = end
        elif text.startswith("--", i) or text.startswith("/*", i):
            end = text.find("\n", i) if text[i] == "-" else text.find("*/", i + 2)
            if end < 0 and text[i] == "/":
                raise QueryError("a /* comment is not closed")
            end = n if end < 0 else end + (1 if text[i] == "-" else 2)
            flush()
            pieces.append(_Piece(text[i:end], None, quoted=True))
            i = end
        elif char == ":" and text.startswith("::", i):
            plain.append("::")  # a PostgreSQL cast
            i += 2
        elif char == ":" and _starts_parameter(text, i) and (match := _NAME_RE.match(text, i + 1)):
            flush()
            pieces.append(_Piece(text[i : match.end()], match.group(0)))
            i = match.end()
        else:
            plain.append(char)
            i += 1
    flush()
    return pieces


def _starts_parameter(text: str, i: int) -> bool:
    """A ``:`` after a letter, digit or ``_`` (``a:b``) does not start a parameter."""
    return i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")


def _closing_quote(text: str, start: int) -> int:
    """The index after the quote that closes the one at ``start`` (a doubled quote, or a
    backslash before it, stays inside)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    raise QueryError(f"a {quote} quote is not closed")
