"""Phone number normalisation (docs/api.md, *Phone numbers*): tables plus a property."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vwell_pbx.pbx.errors import InvalidArgument
from vwell_pbx.pbx.numbers import MAX_NUMBER_LENGTH, PhoneRules, is_normalised, is_plain

DEFAULT = PhoneRules()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 100 200 30 40", "81002003040"),  # the original's gsmSendSMS example
        ("+7 (100) 200-30-40", "81002003040"),
        ("+7.100.200.30.40", "81002003040"),
        ("+7\u00a0100\t200 30 40", "81002003040"),  # no-break space and tab
        ("[+7] 100 200 30 40", "81002003040"),
        ("269", "269"),  # internal extension unchanged
        (269, "269"),
        ("81002003040", "81002003040"),
        ("+79787342741", "89787342741"),
        ("+380 44 123 45 67", "+380441234567"),  # other countries keep their '+'
        ("*72#", "*72#"),
        ("#31#100", "#31#100"),
        ("  100  ", "100"),
    ],
)
def test_normalise_table(raw: str | int, expected: str) -> None:
    assert DEFAULT.normalise(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "-()",
        "+",
        "1+2",  # '+' only at the start
        "++7100",
        "abc",
        "100a",
        "100\r\nAction: Hangup",  # header injection attempt
        '100"',
        "100;200",
        "١٢٣",  # Arabic-Indic digits are not ASCII digits
        "１２３",  # full-width digits
        "1" * (MAX_NUMBER_LENGTH + 1),
        "1" * 200,
        -5,
        True,
        1.5,
        None,
    ],
)
def test_normalise_refuses(raw: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        DEFAULT.normalise(raw)  # type: ignore[arg-type]
    assert str(info.value).startswith("argument.tel ")
    assert info.value.argument == "tel"


def test_error_names_the_argument_and_says_what_is_right() -> None:
    with pytest.raises(InvalidArgument) as info:
        DEFAULT.normalise("call me", argument="from")
    message = str(info.value)
    assert message.startswith("argument.from must be a phone number")
    assert "digits" in message
    with pytest.raises(InvalidArgument, match=r"^argument\.toTel is required"):
        DEFAULT.normalise("", argument="toTel")


def test_rewrites_apply_first_match_only_in_order() -> None:
    rules = PhoneRules(rewrite=(("+7", "8"), ("8", "+7"), ("+380", "0")))
    assert rules.normalise("+7 100") == "8100"  # not rewritten back by the second rule
    assert rules.normalise("8 100") == "+7100"
    assert rules.normalise("+380 44") == "044"
    assert PhoneRules(rewrite=()).normalise("+7 100") == "+7100"


def test_rewrite_that_leaves_nothing_is_refused() -> None:
    rules = PhoneRules(rewrite=(("+7", ""),))
    assert rules.normalise("+7100") == "100"
    with pytest.raises(InvalidArgument):
        rules.normalise("+7")


@pytest.mark.parametrize(
    "pair",
    [("", "8"), ("+7", "8 "), ("7", "a"), ("+7", "8+"), ("+ 7", "8"), ("+7", "\r\n")],
)
def test_bad_rewrite_configuration_names_the_field(pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match=r"phone\.rewrite\[0\]"):
        PhoneRules(rewrite=(pair,))


_NUMBER = re.compile(r"\+?[0-9*#]+")


#: Up to three rewrite rules (prefix -> replacement), as ``[phone] rewrite`` takes them.
_REWRITES = st.lists(
    st.tuples(
        st.from_regex(r"\+?[0-9*#]{1,4}", fullmatch=True),
        st.from_regex(r"\+?[0-9*#]{0,4}", fullmatch=True),
    ),
    max_size=3,
)


@given(
    raw=st.one_of(
        st.text(max_size=60),
        st.text(alphabet="+0123456789*# -.()[]\t\r\n", max_size=60),
        st.integers(),
    ),
    rewrite=_REWRITES,
)
def test_normalise_gives_a_number_or_raises_invalid_argument(
    raw: str | int, rewrite: list[tuple[str, str]]
) -> None:
    rules = PhoneRules(rewrite=tuple(rewrite))
    try:
        number = rules.normalise(raw)
    except InvalidArgument as exc:
        assert str(exc).startswith("argument.tel ")
        return
    assert _NUMBER.fullmatch(number), number
    assert re.fullmatch(r"^[+0-9*#]+$", number)
    assert is_normalised(number)


@given(
    number=st.one_of(
        st.from_regex(r"\+?[0-9]{1,40}", fullmatch=True),
        st.from_regex(r"\+?[0-9]{120,140}", fullmatch=True),
    ),
    rewrite=_REWRITES,
)
def test_normalise_plain_is_normalise_without_the_error(
    number: str, rewrite: list[tuple[str, str]]
) -> None:
    rules = PhoneRules(rewrite=tuple(rewrite))
    assert is_plain(number)
    try:
        expected: str | None = rules.normalise(number)
    except InvalidArgument:
        expected = None
    assert rules.normalise_plain(number) == expected


@pytest.mark.parametrize(
    ("rewrite", "number", "expected"),
    [
        ((("+7", "8"),), "+79787342741", "89787342741"),
        ((("+7", ""),), "+7", None),  # nothing left
        ((("+7", "+"),), "+7", None),  # a lone '+'
        ((("12", "*#"),), "1234", "*#34"),
        ((), "1" * MAX_NUMBER_LENGTH, "1" * MAX_NUMBER_LENGTH),
        ((), "1" * (MAX_NUMBER_LENGTH + 1), None),
    ],
)
def test_normalise_plain_table(
    rewrite: tuple[tuple[str, str], ...], number: str, expected: str | None
) -> None:
    assert PhoneRules(rewrite=rewrite).normalise_plain(number) == expected


@given(st.text(alphabet="+0123456789٣²a -", max_size=8))
def test_is_plain_means_ascii_digits_after_an_optional_plus(text: str) -> None:
    assert is_plain(text) == (re.fullmatch(r"\+?[0-9]+", text, re.ASCII) is not None)
