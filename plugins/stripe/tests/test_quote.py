"""The price of a top-up: exact decimals, the fee rounded up to whole cents, the limits."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmrouter_stripe.checkout import CheckoutError, quote, session_params
from lmrouter_stripe.config import StripeConfig

DEFAULT = StripeConfig()
cents = st.integers(min_value=1, max_value=99_999_900)
percents = st.decimals(min_value=0, max_value=Decimal("99.999"), places=3)


def config(**values: object) -> StripeConfig:
    return msgspec.convert(values, StripeConfig)


def test_the_documented_example() -> None:
    q = quote(DEFAULT, Decimal(20))  # 20 * 4.8 % = 0.96, + 0.35 = 1.31
    assert (q.credit_usd, q.fee_usd, q.total_usd) == (
        Decimal("20.00"),
        Decimal("1.31"),
        Decimal("21.31"),
    )
    assert (q.credit_cents, q.fee_cents, q.total_cents) == (2000, 131, 2131)
    assert q.credit_pico == 20 * 10**12
    assert quote(DEFAULT, "10.01").fee_usd == Decimal("0.84")  # 0.83048 + 0 → up to 0.84


@given(
    credit=cents,
    percent=percents,
    fixed=st.integers(min_value=0, max_value=10_000),
)
def test_the_fee_is_the_exact_fee_rounded_up_to_a_cent(
    credit: int, percent: Decimal, fixed: int
) -> None:
    settings = config(min_usd=Decimal("0.01"), max_usd=999_999, fee_percent=percent,
                      fee_fixed_usd=Decimal(fixed) / 100)  # fmt: skip
    amount = Decimal(credit) / 100
    q = quote(settings, amount)
    exact = amount * percent / 100 + Decimal(fixed) / 100
    assert q.fee_usd >= exact > q.fee_usd - Decimal("0.01")
    assert q.fee_usd == q.fee_usd.quantize(Decimal("0.01"))
    assert q.credit_usd == amount and q.total_usd == q.credit_usd + q.fee_usd
    assert q.total_cents == q.credit_cents + q.fee_cents


@given(credit=cents)
def test_limits_are_enforced_and_named(credit: int) -> None:
    amount = Decimal(credit) / 100
    inside = DEFAULT.min_usd <= amount <= DEFAULT.max_usd
    try:
        quote(DEFAULT, amount)
    except CheckoutError as exc:
        assert not inside
        assert exc.param == "amount_usd" and exc.status == 400
        assert "between 5.00 and 1000.00 USD" in exc.message
    else:
        assert inside


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("5.001", "whole cents"),
        ("abc", "a number"),
        ("NaN", "a number"),
        ("Infinity", "a number"),
        ("-10", "between"),
        ("1000.01", "between"),
        ("4.99", "between"),
    ],
)
def test_bad_amounts(amount: str, message: str) -> None:
    with pytest.raises(CheckoutError) as caught:
        quote(DEFAULT, amount)
    assert message in caught.value.message


def test_the_fee_is_its_own_line_and_the_credit_is_in_the_metadata() -> None:
    params = session_params(DEFAULT, "u1", quote(DEFAULT, 50), "https://a/ok", "https://a/no")
    credit, fee = params["line_items"]
    assert credit["price_data"]["unit_amount"] == 5000
    assert fee["price_data"]["unit_amount"] == 275  # 2.40 + 0.35
    assert fee["price_data"]["product_data"]["name"] == "Processing fee"
    assert params["metadata"] == {"lmrouter_user_id": "u1", "lmrouter_credit_usd": "50.00"}
    free = config(fee_percent=0, fee_fixed_usd=0)
    assert (
        len(session_params(free, "u1", quote(free, 5), "https://a", "https://a")["line_items"]) == 1
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_usd": 10, "max_usd": 5}, "min_usd"),
        ({"min_usd": 0}, "min_usd"),
        ({"max_usd": 10**7}, "max_usd"),
        ({"fee_percent": 100}, "fee_percent"),
        ({"fee_fixed_usd": Decimal("0.355")}, "whole cents"),
        ({"fee_percent": -1}, "fee_percent"),
        ({"api_base": "stripe.com"}, "api_base"),
        ({"webhook_tolerance": 0}, "webhook_tolerance"),
    ],
)
def test_bad_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        config(**values)
