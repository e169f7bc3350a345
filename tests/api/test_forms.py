"""jQuery form decoding and fb64json, checked against what browsers really send.

The expected request bodies below were produced by jQuery 3.7.1's own ``$.param``
code (src/serialize.js, run under Node) plus the ``%20`` -> ``+`` step ``$.ajax``
applies to form bodies; the fb64json strings by UTF-8 + standard base64, which is
what the original's ``Base64.encode`` does.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import orjson
import pytest

from vwell_pbx.api.forms import (
    FormError,
    decode_fb64json,
    decode_json,
    json_depth_ok,
    parse_bracket_params,
)
from vwell_pbx.errors import VwellError

SHA1 = "89e495e7941cf9e40e6980d14a16bf023ccd4c91"

# $.post(url, {method: 'send', argument: {login: 'Agent', login2: 'Иванов И.И.',
#                                          sha1: 'a9de7c...', reqId: '0.123'}})
SEED_POST = (
    "method=send&argument%5Blogin%5D=Agent"
    "&argument%5Blogin2%5D=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2+%D0%98.%D0%98."
    "&argument%5Bsha1%5D=a9de7c...&argument%5BreqId%5D=0.123"
)

# The original's send example (tests/data/seed/send.js):
# callbackAwait: 1, fields: {action: 'ping', actionId: 0.25}
SEND_POST = (
    "method=send&argument%5Blogin%5D=Agent"
    "&argument%5Blogin2%5D=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2+%D0%98.%D0%98."
    f"&argument%5Bsha1%5D={SHA1}&argument%5BreqId%5D=0.5&argument%5BcallbackAwait%5D=1"
    "&argument%5Bfields%5D%5Baction%5D=ping&argument%5Bfields%5D%5BactionId%5D=0.25"
)

# {a: [1, 2], b: [{x: 1, y: 'q r'}, {x: 2}], c: [[1, 2], [3]], d: null, e: true, f: [],
#  g: {}, h: [1, {z: '&=+'}], i: [{}, {k: 'v'}], j: {0: 'zero', 1: 'one'}}
SHAPES_POST = (
    "a%5B%5D=1&a%5B%5D=2&b%5B0%5D%5Bx%5D=1&b%5B0%5D%5By%5D=q+r&b%5B1%5D%5Bx%5D=2"
    "&c%5B0%5D%5B%5D=1&c%5B0%5D%5B%5D=2&c%5B1%5D%5B%5D=3&d=&e=true"
    "&h%5B%5D=1&h%5B1%5D%5Bz%5D=%26%3D%2B&i%5B1%5D%5Bk%5D=v&j%5B0%5D=zero&j%5B1%5D=one"
)

# {method: 'send', argument: {fields: {action: 'Originate', Variable: ['A=1', 'B=2']},
#                             tel: '+7 100 200 30 40'}}
VARIABLE_POST = (
    "method=send&argument%5Bfields%5D%5Baction%5D=Originate"
    "&argument%5Bfields%5D%5BVariable%5D%5B%5D=A%3D1"
    "&argument%5Bfields%5D%5BVariable%5D%5B%5D=B%3D2&argument%5Btel%5D=%2B7+100+200+30+40"
)

# Base64.encode(JSON.stringify({method: 'gsmSendSMS', argument: {login: 'Agent',
#   login2: 'Иванов И.И.', sha1: SHA1, reqId: '0.5', tel: '+7 100 200 30 40',
#   msg: 'Перезвоните мне'}})) -- contains a "+", which a raw query string turns into " ".
SEED_FB64 = (
    "eyJtZXRob2QiOiJnc21TZW5kU01TIiwiYXJndW1lbnQiOnsibG9naW4iOiJBZ2VudCIsImxvZ2luMiI6ItCY0L"
    "LQsNC90L7QsiDQmC7QmC4iLCJzaGExIjoiODllNDk1ZTc5NDFjZjllNDBlNjk4MGQxNGExNmJmMDIzY2NkNGM5"
    "MSIsInJlcUlkIjoiMC41IiwidGVsIjoiKzcgMTAwIDIwMCAzMCA0MCIsIm1zZyI6ItCf0LXRgNC10LfQstC+0L"
    "3QuNGC0LUg0LzQvdC1In19"
)
SEED_FB64_VALUE = {
    "method": "gsmSendSMS",
    "argument": {
        "login": "Agent",
        "login2": "Иванов И.И.",
        "sha1": SHA1,
        "reqId": "0.5",
        "tel": "+7 100 200 30 40",
        "msg": "Перезвоните мне",
    },
}


def form(body: str) -> dict[str, object]:
    """Decode a form body the way aiohttp hands the pairs over."""
    return parse_bracket_params(parse_qsl(body, keep_blank_values=True))


def test_seed_post_example() -> None:
    assert form(SEED_POST) == {
        "method": "send",
        "argument": {
            "login": "Agent",
            "login2": "Иванов И.И.",
            "sha1": "a9de7c...",
            "reqId": "0.123",
        },
    }


def test_seed_send_example_nested_fields() -> None:
    assert form(SEND_POST) == {
        "method": "send",
        "argument": {
            "login": "Agent",
            "login2": "Иванов И.И.",
            "sha1": SHA1,
            "reqId": "0.5",
            "callbackAwait": "1",
            "fields": {"action": "ping", "actionId": "0.25"},
        },
    }


def test_jquery_shapes() -> None:
    assert form(SHAPES_POST) == {
        "a": ["1", "2"],
        "b": [{"x": "1", "y": "q r"}, {"x": "2"}],
        "c": [["1", "2"], ["3"]],
        "d": "",
        "e": "true",
        "h": ["1", {"z": "&=+"}],
        "i": [{"k": "v"}],  # jQuery sends nothing for the empty object at index 0
        "j": {"0": "zero", "1": "one"},  # numeric keys with plain values stay keys
    }


def test_list_values_become_repeated_header_lists() -> None:
    assert form(VARIABLE_POST) == {
        "method": "send",
        "argument": {
            "fields": {"action": "Originate", "Variable": ["A=1", "B=2"]},
            "tel": "+7 100 200 30 40",
        },
    }


def test_repeated_plain_keys_make_a_list() -> None:
    assert form("a=1&a=2&a=3") == {"a": ["1", "2", "3"]}
    assert form("x[b]=1&x[b]=2") == {"x": {"b": ["1", "2"]}}
    assert form("a[]=1&a=2") == {"a": ["1", "2"]}


def test_object_element_after_scalars_and_back() -> None:
    # [1, 2, {x: 1}, 5] -> a[]=1&a[]=2&a[2][x]=1&a[]=5
    assert form("a[]=1&a[]=2&a[2][x]=1&a[]=5") == {"a": ["1", "2", {"x": "1"}, "5"]}


def test_top_level_numeric_keys_stay_keys() -> None:
    assert form("0[x]=1") == {"0": {"x": "1"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a=1&a[b]=2", "form field a is given both as a value and as an object"),
        ("a[b]=2&a=1", "form field a is given both as an object and as a value"),
        ("a[]=1&a[b]=2", "form field a mixes list items"),
        ("a[b=1", "unclosed"),
        ("a]=1", "']' without '['"),
        ("a[b]c=1", "text after a ']'"),
        ("[b]=1", "nothing before"),
        ("a[b[c]]=1", "'[' inside brackets"),
        ("=1", "empty name"),
    ],
)
def test_conflicts_and_malformed_keys(body: str, message: str) -> None:
    with pytest.raises(FormError, match=message.replace("[", r"\[").replace("]", r"\]")):
        form(body)


def test_form_error_is_a_vwell_error() -> None:
    assert issubclass(FormError, VwellError)


def test_depth_limit() -> None:
    deep = "a" + "[x]" * 32 + "=1"
    assert json_depth_ok(form(deep), 33)
    with pytest.raises(FormError, match="deeper than 32 levels"):
        form("a" + "[x]" * 33 + "=1")
    with pytest.raises(FormError, match="deeper than 2 levels"):
        parse_bracket_params([("a[b][c][d]", "1")], max_depth=2)


def test_item_limit() -> None:
    pairs = [(f"k{i}", "v") for i in range(5)]
    assert len(parse_bracket_params(pairs, max_items=5)) == 5
    with pytest.raises(FormError, match="too many form fields"):
        parse_bracket_params(pairs, max_items=4)


# ---- fb64json ----


def test_seed_fb64json_through_a_raw_query_string() -> None:
    # 'api?fb64json=' + args: the browser sends "+" unescaped, the server's query
    # parser turns it into a space.
    assert "+" in SEED_FB64
    assert base64.b64encode(orjson.dumps(SEED_FB64_VALUE)).decode() == SEED_FB64
    [(key, value)] = parse_qsl("fb64json=" + SEED_FB64, keep_blank_values=True)
    assert key == "fb64json" and " " in value
    assert decode_fb64json(value) == SEED_FB64_VALUE


def test_fb64json_alphabets_and_padding() -> None:
    raw = orjson.dumps({"login2": "Иванов И.И.", "x": "?>>?"})
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert standard != urlsafe
    for text in (
        standard,
        urlsafe,
        standard.rstrip("="),
        urlsafe.rstrip("="),
        standard[:20] + "\n" + standard[20:],
    ):
        assert decode_fb64json(text) == {"login2": "Иванов И.И.", "x": "?>>?"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("eyJh!!", "fb64json is not valid base64"),
        ("abcde", "fb64json is not valid base64"),
        (base64.b64encode(b"{not json").decode(), "fb64json is not valid JSON: "),
        (base64.b64encode(b'"\xff\xfe"').decode(), "fb64json is not valid JSON: "),
        (base64.b64encode(b"[" * 40 + b"]" * 40).decode(), "nested deeper than 32 levels"),
    ],
)
def test_fb64json_errors(value: str, message: str) -> None:
    with pytest.raises(FormError, match=message):
        decode_fb64json(value)


def test_fb64json_length_limit() -> None:
    text = base64.b64encode(b'"' + b"x" * 100 + b'"').decode()
    assert decode_fb64json(text, max_length=len(text)) == "x" * 100
    with pytest.raises(FormError, match="longer than"):
        decode_fb64json(text, max_length=len(text) - 1)


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'{"a": {"b": [1]}}', True),  # 3 openers, depth 3: no walk needed
        (b'{"a": {"b": [[1]]}}', False),  # depth 4
        (b'{"a": "{{{{[[[["}', True),  # brackets in a string: the walk decides
        (b'{"a": [], "b": {}, "c": [], "d": {}}', True),  # 5 openers, depth 2
        (b'{"a": [], "b": {"c": {"d": []}}}', False),  # 5 openers, depth 4
    ],
)
def test_json_nesting_bound(body: bytes, ok: bool) -> None:
    if ok:
        assert decode_json(body, max_depth=3) == orjson.loads(body)
    else:
        with pytest.raises(FormError, match="deeper than 3 levels"):
            decode_json(body, max_depth=3)


def test_json_depth_ok() -> None:
    assert json_depth_ok("scalar", 0)
    assert json_depth_ok({"a": [1]}, 2)
    assert not json_depth_ok({"a": [1]}, 1)
    assert json_depth_ok({"a": [], "b": {"c": {}}}, 3)
    assert not json_depth_ok({"a": [], "b": {"c": {}}}, 2)
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    assert not json_depth_ok(deep, 32)  # no RecursionError
