"""The testing kit against the official ``stripe`` library: our signatures pass its check (and
fail it when anything differs), and the fake API answers its calls as Stripe does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from lmrouter_stripe.testing import FakeStripe, event, parse_form, sign

SECRET = "whsec_test_secret"


@given(payload=st.binary(max_size=300).map(lambda b: b.hex().encode()), skew=st.integers(0, 299))
def test_signatures_pass_the_official_check(payload: bytes, skew: int) -> None:
    header = sign(payload, SECRET, int(time.time()) - skew)
    assert stripe.WebhookSignature.verify_header(payload, header, SECRET, 300)
    for forged in (
        sign(payload + b" ", SECRET),  # another body
        sign(payload, SECRET + "x"),  # another secret
    ):
        bad = forged.split(",")[1]
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(
                payload, f"{header.split(',')[0]},{bad}", SECRET, 300
            )
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stale = sign(payload, SECRET, int(time.time()) - 301 - skew)
        stripe.WebhookSignature.verify_header(payload, stale, SECRET, 300)


def test_events_have_stripes_shape() -> None:
    evt = event("charge.refunded", {"id": "ch_1", "object": "charge"})
    payload = json.dumps(evt)
    body = stripe.Webhook.construct_event(payload, sign(payload.encode(), SECRET), SECRET)
    assert body.type == "charge.refunded" and body.data.object.id == "ch_1"
    assert evt["id"].startswith("evt_") and evt["object"] == "event" and not evt["livemode"]


def test_form_encoding() -> None:
    text = "a=1&b[c]=2&l[0][x]=3&l[1][x]=4&l[0][y][z]=5&e="
    assert parse_form(text) == {
        "a": "1",
        "b": {"c": "2"},
        "l": [{"x": "3", "y": {"z": "5"}}, {"x": "4"}],
        "e": "",
    }


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    fake = FakeStripe(api_key="sk_test_123")
    with fake.run_in_thread():
        yield fake


def client(fake: FakeStripe, key: str = "sk_test_123") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": fake.base_url}, max_network_retries=0)


def item(unit_amount: Any = 1000, **extra: Any) -> dict[str, Any]:
    data = {"currency": "usd", "unit_amount": unit_amount, "product_data": {"name": "Credits"}}
    return {"price_data": data, "quantity": 1, **extra}


def test_sessions_are_created_validated_and_read_back(fake: FakeStripe) -> None:
    api = client(fake)
    ok = {"mode": "payment", "success_url": "https://a/ok", "cancel_url": "https://a/no"}
    session = api.v1.checkout.sessions.create(
        params={**ok, "line_items": [item(), item(50)], "metadata": {"k": "v"}}
    )
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert (session.amount_total, session.currency, session.metadata.to_dict()) == (
        1050,
        "usd",
        {"k": "v"},
    )
    assert (session.status, session.payment_status, session.payment_intent) == (
        "open",
        "unpaid",
        None,
    )
    assert session.url.startswith(fake.base_url)
    assert api.v1.checkout.sessions.retrieve(session.id).amount_total == 1050
    assert fake.requests[0].headers["authorization"] == "Bearer sk_test_123"

    cases = [
        (
            {**ok, "line_items": [item("12.5")]},
            "line_items[0][price_data][unit_amount]",
            "Invalid integer",
        ),
        (
            {**ok, "line_items": [item(-1)]},
            "line_items[0][price_data][unit_amount]",
            "greater than",
        ),
        ({**ok}, "line_items", "Missing required param"),
        ({**ok, "line_items": [item()], "bogus": 1}, "bogus", "unknown parameter"),
        ({"mode": "payment", "line_items": [item()]}, "success_url", "Missing required param"),
        ({**ok, "line_items": [item(10)]}, "line_items", "at least $0.50"),
    ]
    for params, param, message in cases:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            api.v1.checkout.sessions.create(params=params)
        assert caught.value.param == param and message in str(caught.value.user_message)
        assert caught.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as missing:
        api.v1.checkout.sessions.retrieve("cs_test_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.AuthenticationError) as denied:
        client(fake, "sk_test_wrong").v1.checkout.sessions.retrieve(session.id)
    assert (
        "Invalid API Key" in str(denied.value.user_message)
        and "wrong" not in str(denied.value.user_message)[:-4]
    )


def test_the_payment_page_pays_and_redirects(fake: FakeStripe) -> None:
    api = client(fake)
    session = api.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [item()],
            "cancel_url": "https://a/no",
            "success_url": "https://a/ok?session={CHECKOUT_SESSION_ID}",
        }
    )
    page = httpx.get(session.url)
    assert page.status_code == 200 and "<button" in page.text and "$10.00" in page.text
    paid = httpx.post(session.url)
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://a/ok?session={session.id}"
    again = api.v1.checkout.sessions.retrieve(session.id)
    assert (again.status, again.payment_status) == ("complete", "paid")
    assert again.payment_intent.startswith("pi_")
    assert fake.charges[session.id]["payment_intent"] == again.payment_intent
    assert "no longer active" in httpx.get(session.url).text
    assert fake.deliveries == []  # no webhook_url set: nothing delivered


def test_api_failures_can_be_scripted(fake: FakeStripe) -> None:
    fake.default.fail_status = 500
    with pytest.raises(stripe.APIError):
        client(fake).v1.checkout.sessions.retrieve("cs_test_x")
    assert parse_form(fake.requests[-1].body.decode()) == {}
