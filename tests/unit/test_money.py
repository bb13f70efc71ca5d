"""Exact money: route prices compile to integer pico-USD rates, costs are exact, and USD text
round-trips."""

from __future__ import annotations

import re
from decimal import Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lmrouter.config import Price
from lmrouter.money import PICO_PER_USD, Rates, format_usd, parse_usd, usd
from lmrouter.usage import Usage


@st.composite
def prices(draw: st.DrawFn) -> Decimal:
    """A non-negative USD amount with at most six decimals, written in any of the ways TOML's
    ``parse_float=Decimal`` or a user could produce (trailing zeros, exponents, big values)."""
    micro = draw(
        st.integers(0, 10**9)  # up to 1000 USD per 1M tokens: real prices
        | st.integers(0, 10**40)  # far beyond: still exact
        | st.sampled_from([0, 1, 10**6, 150_000, 600_000, 75_000])
    )
    digits = str(micro)
    style = draw(st.sampled_from(["plain", "padded", "exponent"]))
    if style == "exponent":  # e.g. 1.5E+2, 1E-6
        # normalize() rounds to the context precision: give it enough room
        value = Decimal((0, tuple(int(c) for c in digits), -6)).normalize(
            Context(prec=len(digits) + 1)
        )
    else:
        value = Decimal((0, tuple(int(c) for c in digits), -6))  # six places, e.g. 0.150000
        if style == "plain":
            text = f"{value:f}"
            value = Decimal(text.rstrip("0").rstrip(".") if "." in text else text)
    assert Fraction(value) == Fraction(micro, 10**6)
    return value


def exact_cost_pico(price: Price, usage: Usage) -> Fraction:
    """The brief's formula in exact rational arithmetic, in pico-USD."""
    cache_read = price.input if price.cache_read is None else price.cache_read
    cache_write = price.input if price.cache_write is None else price.cache_write
    uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    usd_total = (
        uncached * Fraction(price.input) / 10**6
        + usage.cached_tokens * Fraction(cache_read) / 10**6
        + usage.cache_write_tokens * Fraction(cache_write) / 10**6
        + usage.completion_tokens * Fraction(price.output) / 10**6
        + Fraction(price.request)
    )
    return usd_total * PICO_PER_USD


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    """Consistent usage: cached and cache-write tokens are parts of the prompt tokens."""
    cached = draw(st.integers(0, 10**7))
    cache_write = draw(st.integers(0, 10**7))
    prompt = cached + cache_write + draw(st.integers(0, 10**8))
    completion = draw(st.integers(0, 10**8))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=draw(st.integers(0, completion)),
    )


@settings(max_examples=400, deadline=None)
@given(
    prices(),
    prices(),
    st.none() | prices(),
    st.none() | prices(),
    prices(),
    usages(),
)
@example(
    Decimal("0.15"), Decimal("0.60"), Decimal("0.075"), None, Decimal(0),
    Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200),
)  # fmt: skip
@example(
    Decimal("0.1"), Decimal("0.2"), None, None, Decimal("0.000001"),
    Usage(prompt_tokens=3, completion_tokens=7),
)  # fmt: skip
@example(
    Decimal("12345678901234567890123.000001"), Decimal(0), None, None, Decimal(0),
    Usage(prompt_tokens=1),
)  # fmt: skip
def test_cost_is_the_exact_decimal_computation(
    input_: Decimal,
    output: Decimal,
    cache_read: Decimal | None,
    cache_write: Decimal | None,
    request: Decimal,
    usage: Usage,
) -> None:
    price = Price(
        input=input_, output=output, cache_read=cache_read, cache_write=cache_write,
        request=request,
    )  # fmt: skip
    rates = Rates.from_price(price)
    assert all(type(rate) is int for rate in rates)
    expected = exact_cost_pico(price, usage)
    assert expected.denominator == 1  # six decimals per 1M tokens: whole pico-USD
    cost = rates.cost(usage)
    assert type(cost) is int
    assert cost == expected


def test_known_cost() -> None:
    rates = Rates.from_price(Price(input=Decimal("0.15"), output=Decimal("0.60")))
    assert rates == Rates(input=150_000, output=600_000, cache_read=150_000,
                          cache_write=150_000, request=0)  # fmt: skip
    # 1000 prompt tokens (200 cached) + 500 completion tokens
    cost = rates.cost(Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200))
    assert cost == 1000 * 150_000 + 500 * 600_000
    assert format_usd(cost) == "0.00045"


def test_request_price_is_per_call() -> None:
    rates = Rates.from_price(Price(request=Decimal("0.004")))
    assert rates.request == 4 * 10**9
    assert rates.cost(Usage()) == 4 * 10**9
    assert rates.cost(Usage(prompt_tokens=10**6, completion_tokens=10**6)) == 4 * 10**9


def test_cache_prices_default_to_the_input_price() -> None:
    rates = Rates.from_price(Price(input=Decimal("3"), output=Decimal("15")))
    assert rates.cache_read == rates.input == rates.cache_write == 3_000_000
    explicit = Rates.from_price(
        Price(input=Decimal("3"), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))
    )
    assert (explicit.cache_read, explicit.cache_write) == (300_000, 3_750_000)
    free = Rates.from_price(Price(input=Decimal("3"), cache_read=Decimal(0)))
    assert free.cache_read == 0  # zero is a price, not "unset"
    assert free.cache_write == 3_000_000


def test_cached_tokens_use_the_cache_prices() -> None:
    rates = Rates(input=10, output=1000, cache_read=1, cache_write=100, request=0)
    usage = Usage(prompt_tokens=100, cached_tokens=30, cache_write_tokens=20, completion_tokens=2)
    assert rates.cost(usage) == 50 * 10 + 30 * 1 + 20 * 100 + 2 * 1000


def test_inconsistent_usage_never_gets_a_negative_uncached_part() -> None:
    # a provider reporting more cached tokens than prompt tokens: charge the cached ones only
    rates = Rates(input=10, output=0, cache_read=1, cache_write=100, request=0)
    usage = Usage(prompt_tokens=5, cached_tokens=8, cache_write_tokens=1)
    assert rates.cost(usage) == 8 * 1 + 1 * 100


# -- USD text ---------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0) | st.integers(0, 10**40))
@example(0)
@example(1)
@example(10**12)
@example(10**28 + 1)
@example(10**40 + 7)
@example(123456789012345678901234567890123)
def test_format_usd_round_trips_and_is_plain(pico: int) -> None:
    text = format_usd(pico)
    assert re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", text), text  # no exponent, no "0."
    assert parse_usd(text) == pico
    assert usd(pico) == Fraction(pico, PICO_PER_USD)


def test_format_usd_examples() -> None:
    assert format_usd(0) == "0"
    assert format_usd(1) == "0.000000000001"
    assert format_usd(1_500_000) == "0.0000015"
    assert format_usd(10**12) == "1"
    assert format_usd(25 * 10**11) == "2.5"
    assert format_usd(10**20) == "100000000"  # no 1E+8
    assert format_usd(1_234_567, places=6) == "0.000001"
    assert format_usd(5 * 10**11 + 1, places=0) == "1"


def test_parse_usd_examples() -> None:
    assert parse_usd("1.25") == 1_250_000_000_000
    assert parse_usd("0") == 0
    assert parse_usd("0.000000000001") == 1
    assert parse_usd(" 7 ") == 7 * 10**12
    assert parse_usd("5.000000000000000000") == 5 * 10**12  # trailing zeros are not "finer"
    assert parse_usd("1" * 40 + ".000000000001") == int("1" * 40) * 10**12 + 1


@pytest.mark.parametrize("text", ["0.0000000000001", "0.1234567890123"])
def test_parse_usd_refuses_fractions_of_a_pico_dollar(text: str) -> None:
    with pytest.raises(ValueError, match="more than 12 decimal places"):
        parse_usd(text)


@pytest.mark.parametrize("text", ["1e3", "1E+2", "2.5e-1", "1e-13"])
def test_parse_usd_refuses_exponents(text: str) -> None:
    with pytest.raises(ValueError, match="without an exponent"):
        parse_usd(text)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "$5", "inf", "-Infinity", "nan", "sNaN"])
def test_parse_usd_refuses_non_amounts_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_usd(text)


def test_usd_is_exact() -> None:
    assert usd(1) == Decimal("1E-12")
    assert usd(10**30 + 1) == Decimal("1000000000000000000.000000000001")
    assert "E" not in f"{usd(10**30 + 1):f}"
