"""Decoding what browsers send: JSON envelopes, jQuery form encoding and ``fb64json``.

**JSON** bodies and WebSocket messages: :func:`decode_json`, with a nesting bound.

**Bracket notation** is what jQuery's ``$.param`` (``traditional: false``, the
default of ``$.post``/``$.ajax``) makes of a nested object; :func:`parse_bracket_params`
inverts it. jQuery's rules, and what we make of them:

- an object key: ``argument[fields][action]=ping`` -> nested dicts;
- an array of scalars: ``a[]=1&a[]=2`` -> ``["1", "2"]``;
- an array element that is an object or array gets its index: ``a[0][x]=1&a[1][x]=2``
  -> ``[{"x": "1"}, {"x": "2"}]``. A container whose keys are all ``[]`` or numeric
  indexes followed by more brackets becomes a list in the order first seen (jQuery
  drops empty objects and arrays, so indexes may skip). An object whose keys are
  numbers and whose values are objects (``{"0": {...}}``) comes out as a list: jQuery
  gives both the same encoding. A numeric key with a plain value (``a[0]=x``) is an
  object key, since jQuery never writes array scalars that way;
- ``null`` is sent as an empty string, ``true`` as ``"true"``, numbers as text: every
  leaf is a string (the API layer coerces where it expects a number or flag);
- a key given more than once without brackets (``a=1&a=2``, what ``traditional:
  true`` and HTML multi-selects produce) gives a list, as ``a[]`` would.

A key used both as a value and as an object (``a=1&a[b]=2``) is a :class:`FormError`
that names it, as are malformed brackets, more than ``max_depth`` bracket levels and
more than ``max_items`` pairs.

**fb64json** is the original's ``Base64.encode(JSON.stringify(envelope))`` in one
query or form parameter: :func:`decode_fb64json`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

import orjson

from vwell_pbx.errors import VwellError

__all__ = [
    "FormError",
    "decode_fb64json",
    "decode_json",
    "decode_params",
    "json_depth_ok",
    "parse_bracket_params",
]


class FormError(VwellError):
    """A form or ``fb64json`` parameter cannot be decoded; the message says why."""


class _Slot:
    """The key of one ``[]`` element: unique, so every ``[]`` appends."""

    __slots__ = ()


_Key = str | _Slot


class _Node:
    """A container under construction: keys in first-seen order."""

    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children: dict[_Key, _Node | str] = {}


def _split_key(key: str, max_depth: int) -> tuple[str, list[str]]:
    """``"a[b][]"`` -> ``("a", ["b", ""])``; raises :class:`FormError` if malformed."""
    open_at = key.find("[")
    if open_at < 0:
        if "]" in key:
            raise FormError(f"form field name {key!r} has a ']' without '['")
        return key, []
    base = key[:open_at]
    if not base:
        raise FormError(f"form field name {key!r} has nothing before its first '['")
    if "]" in base:
        raise FormError(f"form field name {key!r} has a ']' without '['")
    segments: list[str] = []
    position = open_at
    while position < len(key):
        if key[position] != "[":
            raise FormError(f"form field name {key!r} has text after a ']'")
        close = key.find("]", position + 1)
        if close < 0:
            raise FormError(f"form field name {key!r} has an unclosed '['")
        segment = key[position + 1 : close]
        if "[" in segment:
            raise FormError(f"form field name {key!r} has a '[' inside brackets")
        segments.append(segment)
        if len(segments) > max_depth:
            raise FormError(
                f"form field name {key[:60]!r} is nested deeper than {max_depth} levels"
            )
        position = close + 1
    return base, segments


def _assign_leaf(node: _Node, key: _Key, value: str, path: str) -> None:
    existing = node.children.get(key)
    if existing is None:
        node.children[key] = value
    elif isinstance(existing, str):
        # a=1&a=2: a repeated plain key is a list, as a[]=1&a[]=2.
        repeated = _Node()
        repeated.children[_Slot()] = existing
        repeated.children[_Slot()] = value
        node.children[key] = repeated
    elif all(isinstance(k, _Slot) for k in existing.children):
        existing.children[_Slot()] = value
    else:
        raise FormError(f"form field {path} is given both as an object and as a value")


def _child_node(node: _Node, key: _Key, path: str) -> _Node:
    existing = node.children.get(key)
    if existing is None:
        child = node.children[key] = _Node()
        return child
    if isinstance(existing, str):
        raise FormError(f"form field {path} is given both as a value and as an object or list")
    return existing


def parse_bracket_params(
    pairs: Iterable[tuple[str, str]], *, max_depth: int = 32, max_items: int = 1000
) -> dict[str, object]:
    """Rebuild the object jQuery's ``$.param`` encoded, from decoded (key, value) pairs.

    ``pairs`` are as ``urllib.parse.parse_qsl(body, keep_blank_values=True)`` or
    aiohttp's ``request.post()`` give them. ``max_depth`` bounds the bracket levels of
    one key, ``max_items`` the number of pairs. See the module docstring for the rules;
    raises :class:`FormError`.
    """
    root = _Node()
    for count, (key, value) in enumerate(pairs, start=1):
        if count > max_items:
            raise FormError(f"too many form fields (more than {max_items})")
        if not key:
            raise FormError("a form field has an empty name")
        base, segments = _split_key(key, max_depth)
        node = root
        path = base
        current: _Key = base
        for segment in segments:
            node = _child_node(node, current, path)
            current = segment if segment else _Slot()
            path = f"{path}[{segment}]"
        _assign_leaf(node, current, value, path)
    result = _build(root, "", top=True)
    assert isinstance(result, dict)
    return result


def _is_index(key: _Key, child: _Node | str) -> bool:
    if isinstance(key, _Slot):
        return True
    canonical = key.isascii() and key.isdigit() and (key == "0" or not key.startswith("0"))
    return canonical and isinstance(child, _Node)


def _build(node: _Node, path: str, *, top: bool = False) -> dict[str, object] | list[object]:
    # Recursion is bounded: the parser refuses keys deeper than max_depth.
    converted: dict[_Key, object] = {}
    for key, child in node.children.items():
        if isinstance(child, str):
            converted[key] = child
        else:
            name = key if top else f"{path}[{'' if isinstance(key, _Slot) else key}]"
            assert isinstance(name, str)
            converted[key] = _build(child, name)
    if not top and all(_is_index(key, child) for key, child in node.children.items()):
        return list(converted.values())
    result: dict[str, object] = {}
    for key, value in converted.items():
        if isinstance(key, _Slot):
            raise FormError(f"form field {path} mixes list items ({path}[]) and object keys")
        result[key] = value
    return result


def decode_fb64json(value: str, *, max_depth: int = 32, max_length: int = 1 << 20) -> object:
    """Decode an ``fb64json`` parameter: base64 (standard or URL-safe alphabet, padding
    optional, line breaks ignored) of UTF-8 JSON.

    A ``+`` sent unescaped in a query string arrives as a space, so spaces are read as
    ``+``. Raises :class:`FormError` for bad base64, bad UTF-8 or JSON, nesting deeper
    than ``max_depth`` or text longer than ``max_length`` characters.
    """
    if len(value) > max_length:
        raise FormError(f"fb64json is longer than {max_length} characters")
    text = value.strip().replace(" ", "+").replace("\r", "").replace("\n", "")
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    if len(text) % 4 == 1:
        raise FormError("fb64json is not valid base64 (its length is impossible)")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormError("fb64json is not valid base64") from exc
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FormError(f"fb64json is not valid JSON: {exc}") from exc
    if not _few_openers(raw, max_depth) and not json_depth_ok(decoded, max_depth):
        raise FormError(f"fb64json is nested deeper than {max_depth} levels")
    return decoded


def decode_params(pairs: list[tuple[str, str]], *, max_depth: int = 32) -> object:
    """A query string's or form's pairs as an envelope: ``fb64json``, when present,
    replaces every other parameter (as the original did); else bracket notation."""
    for key, value in pairs:
        if key == "fb64json":
            return decode_fb64json(value, max_depth=max_depth)
    return parse_bracket_params(pairs, max_depth=max_depth)


def decode_json(data: bytes, *, max_depth: int = 32) -> object:
    """A JSON envelope (a POST body, a WebSocket message). Raises :class:`FormError`
    for text that is not JSON or nests deeper than ``max_depth``."""
    try:
        decoded: object = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FormError(f"the body is not valid JSON: {exc}") from None
    if not _few_openers(data, max_depth) and not json_depth_ok(decoded, max_depth):
        raise FormError(f"JSON nested deeper than {max_depth} levels")
    return decoded


def _few_openers(text: bytes, max_depth: int) -> bool:
    """Whether ``text`` has at most ``max_depth`` ``{`` and ``[`` in all, so that no JSON
    made of it can nest deeper (those inside strings only make the count larger).

    Two C scans instead of a Python walk over the decoded value: a typical request
    (an envelope with ``argument`` and ``fields``) has three.
    """
    return text.count(b"{") + text.count(b"[") <= max_depth


def json_depth_ok(obj: object, max_depth: int) -> bool:
    """Whether ``obj`` nests at most ``max_depth`` containers deep (a scalar is depth 0,
    ``{"a": [1]}`` depth 2). Iterative, so any depth is checked without recursion."""
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > max_depth:
            return False
        stack.extend((child, depth) for child in children)
    return True
