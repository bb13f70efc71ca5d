"""Buying credits end to end: the real router (granian) with accounts, credits and stripe, a fake
Stripe API that the router's official ``stripe`` library talks to, webhook deliveries signed with
Stripe's scheme, and the ``lmrouter`` commands on the same database (a SQLite file, and again
PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stripe

from lmrouter.testing import config as kit
from lmrouter.testing import operator
from lmrouter.testing.operator import query
from lmrouter.testing.server import RouterServer
from lmrouter_credits.testing import ledger_matches_lots
from lmrouter_stripe.testing import FakeStripe, event, parse_form, sign

ADMIN = "sk-admin-stripe-e2e"
API_KEY = "sk_test_e2e"
SECRET = "whsec_e2e"
PICO = 10**12


def config(
    api_base: str,
    *,
    secret_key: str = API_KEY,
    webhook_secret: str = SECRET,
    store: str = "sqlite:///stripe.db",
) -> str:
    return kit.config(
        admin=ADMIN,
        disabled=["ratelimit"],
        storage={"url": store},
        credits={"expire_after_days": 30},
        stripe={
            "secret_key": secret_key,
            "webhook_secret": webhook_secret,
            "api_base": api_base,
            "min_usd": 5,
            "max_usd": 1000,
            "fee_percent": 4.8,
            "fee_fixed_usd": 0.35,
        },
    )


class Cli:
    """The `lmrouter` command on the server's config, in this (another) process."""

    def __init__(self, config_path: Path, db: Path | str) -> None:
        self.config_path = config_path
        self.db = db

    def __call__(self, *args: str) -> str:
        return operator.cli(self.config_path, *args)

    def user_with_key(self, email: str) -> tuple[str, str]:
        """(user id, API key) of a new user."""
        key = operator.user_with_key(self.config_path, email)
        [(user_id,)] = query(self.db, "SELECT id FROM users WHERE email = ?", (email,))
        return user_id, key


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the embedded store and again on PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite:///stripe.db"
    return request.getfixturevalue("postgres_cluster").database()


@pytest.fixture(scope="module")
def fake(store: str) -> Iterator[FakeStripe]:  # one per store: its requests are that run's
    fake = FakeStripe(api_key=API_KEY, webhook_secret=SECRET)
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(
    fake: FakeStripe, store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RouterServer]:
    workdir = tmp_path_factory.mktemp("stripe-e2e")
    with RouterServer(config(fake.base_url, store=store), workdir=workdir) as server:
        fake.webhook_url = f"{server.url}/v1/billing/stripe/webhook"
        yield server


@pytest.fixture(scope="module")
def db(router: RouterServer, store: str) -> Path | str:
    return router.workdir / "stripe.db" if store.startswith("sqlite:") else store


@pytest.fixture(scope="module")
def cli(router: RouterServer, db: Path | str) -> Cli:
    return Cli(router.config_path, db)


def checkout(router: RouterServer, key: str | None, body: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{router.url}/v1/billing/checkout", json=body, headers=headers, timeout=30)


def credits(router: RouterServer, key: str) -> dict[str, Any]:
    response = httpx.get(
        f"{router.url}/v1/credits", headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def top_up(router: RouterServer, key: str, amount: Any = "10") -> str:
    response = checkout(
        router,
        key,
        {"amount_usd": amount, "success_url": "https://app/ok", "cancel_url": "https://app/no"},
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


def post_event(
    router: RouterServer,
    evt: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    at: int | None = None,
) -> httpx.Response:
    body = evt if isinstance(evt, bytes) else orjson.dumps(evt)
    return httpx.post(
        f"{router.url}/v1/billing/stripe/webhook",
        content=body,
        headers={"stripe-signature": sign(body, secret, at), "content-type": "application/json"},
        timeout=30,
    )


def outcome(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["outcome"]


# -- the whole top-up --------------------------------------------------------------------------


def test_a_full_top_up_ends_with_the_exact_balance(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    user_id, key = cli.user_with_key("ann@example.com")
    started = time.time()
    seen = len(fake.requests)  # the fake is the module's: earlier tests' requests are there too
    response = checkout(
        router,
        key,
        {
            "amount_usd": 20,
            "success_url": "https://app/ok?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app/cancel",
        },
    )
    assert response.status_code == 200, response.text
    made = response.json()
    assert (made["credit_usd"], made["fee_usd"], made["total_usd"]) == ("20.00", "1.31", "21.31")

    # what the router's official stripe library sent: the fee its own line, the credit in metadata
    new = fake.requests[seen:]
    [sent] = [r for r in new if r.path == "/v1/checkout/sessions" and r.method == "POST"]
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    params = parse_form(sent.body.decode())
    amounts = [i["price_data"]["unit_amount"] for i in params["line_items"]]
    names = [i["price_data"]["product_data"]["name"] for i in params["line_items"]]
    assert amounts == ["2000", "131"] and names == ["LMRouter credits", "Processing fee"]
    assert params["metadata"] == {"lmrouter_user_id": user_id, "lmrouter_credit_usd": "20.00"}

    # the user pays on the hosted page; Stripe (the fake) posts the signed webhook, then redirects
    session = stripe.StripeClient(API_KEY, base_addresses={"api": fake.base_url})
    assert session.v1.checkout.sessions.retrieve(made["id"]).url == made["url"]
    assert "Pay" in httpx.get(made["url"]).text
    paid = httpx.post(made["url"])
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://app/ok?session={made['id']}"
    assert fake.deliveries[-1].status == 200
    assert orjson.loads(fake.deliveries[-1].body)["outcome"] == "credited"

    shown = credits(router, key)
    assert shown["balance_usd"] == "20"  # the credit, not the 21.31 paid
    [lot] = shown["lots"]
    assert (lot["source"], lot["source_ref"], lot["amount_usd"]) == ("purchase", made["id"], "20")
    purchased = datetime.fromisoformat(lot["purchased_at"])
    assert started - 2 <= purchased.timestamp() <= time.time() + 1
    assert datetime.fromisoformat(lot["expires_at"]) == purchased + timedelta(days=30)

    as_json = json.loads(cli("credits", "show", "ann@example.com", "--json"))
    assert as_json["lots"][0]["source"] == "purchase"
    assert as_json["lots"][0]["source_ref"] == made["id"]
    text = cli("credits", "show", "ann@example.com")
    assert made["id"] in text and "purchase" in text
    pi = session.v1.checkout.sessions.retrieve(made["id"]).payment_intent
    assert query(db, "SELECT payment_intent, lot_id FROM stripe_sessions WHERE id = ?",
                 (made["id"],)) == [(pi, lot["id"])]  # fmt: skip
    ledger_matches_lots(db)


def test_the_lot_expires_after_the_payment_time(
    router: RouterServer, cli: Cli, fake: FakeStripe
) -> None:
    _, key = cli.user_with_key("late@example.com")
    session_id = top_up(router, key)
    paid_at = int(time.time()) - 10 * 86_400  # paid ten days ago; the webhook comes only now
    evt = fake.complete(session_id)
    evt["created"] = paid_at
    assert outcome(post_event(router, evt)) == "credited"
    [lot] = credits(router, key)["lots"]
    assert datetime.fromisoformat(lot["purchased_at"]) == datetime.fromtimestamp(paid_at, UTC)
    assert datetime.fromisoformat(lot["expires_at"]) == datetime.fromtimestamp(
        paid_at, UTC
    ) + timedelta(days=30)


# -- the checkout endpoint ---------------------------------------------------------------------


def test_checkout_refuses_bad_requests_clearly(router: RouterServer, cli: Cli) -> None:
    _, key = cli.user_with_key("bad@example.com")
    urls = {"success_url": "https://app/ok", "cancel_url": "https://app/no"}
    for amount in (4.99, "1000.01", 0, -5):
        response = checkout(router, key, {"amount_usd": amount, **urls})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "amount_usd"
        assert "between 5.00 and 1000.00 USD" in error["message"]
    cases = [
        ({"amount_usd": "5.001", **urls}, "amount_usd", "whole cents"),
        (
            {"amount_usd": 10, "success_url": "javascript:x", "cancel_url": "https://a"},
            "success_url",
            "http",
        ),
        ({"amount_usd": 10, "success_url": "https://a"}, "cancel_url", "cancel_url"),
        ({"amount_usd": [1], **urls}, "amount_usd", "amount_usd"),
    ]
    for body, param, message in cases:
        response = checkout(router, key, body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param and message in response.text
    raw = httpx.post(f"{router.url}/v1/billing/checkout", content=b"{nope",
                     headers={"authorization": f"Bearer {key}"})  # fmt: skip
    assert raw.status_code == 400 and "JSON" in raw.text
    assert checkout(router, None, {"amount_usd": 10, **urls}).status_code == 401
    operator = checkout(router, ADMIN, {"amount_usd": 10, **urls})
    assert operator.status_code == 403 and operator.json()["error"]["code"] == "no_account"
    assert credits(router, key)["lots"] == []


def test_a_stripe_failure_is_a_502_not_a_crash(
    router: RouterServer, cli: Cli, fake: FakeStripe
) -> None:
    _, key = cli.user_with_key("down@example.com")
    fake.default.fail_status = 500
    try:
        response = checkout(
            router, key, {"amount_usd": 10, "success_url": "https://a", "cancel_url": "https://a"}
        )
    finally:
        fake.default.fail_status = None
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "payment_provider_error"
    assert API_KEY not in response.text
    assert API_KEY not in router.logs() and SECRET not in router.logs()


# -- webhook deliveries ------------------------------------------------------------------------


def test_forged_stale_malformed_and_unsigned_deliveries_are_refused(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    _, key = cli.user_with_key("forge@example.com")
    session_id = top_up(router, key)
    evt = fake.complete(session_id)
    refused = [
        post_event(router, evt, secret="whsec_forged"),
        post_event(router, evt, at=int(time.time()) - 301),  # past the 300 s tolerance
        httpx.post(f"{router.url}/v1/billing/stripe/webhook", content=orjson.dumps(evt)),
        post_event(router, b'{"id": "evt_1", "type": "checkout.session.completed"'),  # cut
        post_event(router, b"\xff\xfe not utf-8"),
        post_event(router, event("checkout.session.completed", {"no": "id"})),
        post_event(router, orjson.dumps({**evt, "created": "yesterday"})),
    ]
    for response in refused:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    for how in ({"secret": "whsec_forged"}, {"timestamp": int(time.time()) - 3600}):
        assert fake.deliver(evt, **how).status == 400
    signed_wrong = post_event(router, orjson.dumps(evt), secret="whsec_forged")
    assert "Stripe-Signature" in signed_wrong.json()["error"]["message"]
    assert credits(router, key)["lots"] == []
    assert query(db, "SELECT COUNT(*) FROM stripe_events WHERE object_id = ?", (session_id,)) == [
        (0,)
    ]
    assert outcome(post_event(router, evt)) == "credited"  # the genuine delivery still works
    assert credits(router, key)["balance_usd"] == "10"


def test_replays_and_new_event_ids_credit_once(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    _, key = cli.user_with_key("replay@example.com")
    session_id = top_up(router, key, "12.34")
    first = fake.pay(session_id)  # completes the session and delivers the event
    assert first.status == 200 and orjson.loads(first.body)["outcome"] == "credited"
    evt = first.event
    assert outcome(post_event(router, evt)) == "duplicate"  # the same event again
    renamed = {**evt, "id": "evt_" + "r" * 24}  # the same session under a new event id
    assert outcome(post_event(router, renamed)) == "already_credited"
    later = fake.async_succeeded(session_id)  # and under another type
    assert outcome(post_event(router, later)) == "already_credited"
    shown = credits(router, key)
    assert shown["balance_usd"] == "12.34" and len(shown["lots"]) == 1
    ledger_matches_lots(db)


def test_fifty_concurrent_deliveries_of_one_event(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    _, key = cli.user_with_key("herd@example.com")
    session_id = top_up(router, key, "7.77")
    body = orjson.dumps(fake.complete(session_id))

    async def deliver_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{router.url}/v1/billing/stripe/webhook",
                        content=body,
                        headers={"stripe-signature": sign(body, SECRET)},
                    )
                    for _ in range(50)
                )
            )

    responses = asyncio.run(deliver_all())
    outcomes = sorted(outcome(r) for r in responses)
    assert outcomes == ["credited"] + ["duplicate"] * 49
    shown = credits(router, key)
    assert shown["balance_usd"] == "7.77" and len(shown["lots"]) == 1
    ledger_matches_lots(db)


def test_unknown_events_are_acknowledged_and_ignored(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    before = query(db, "SELECT COUNT(*) FROM stripe_events")
    assert outcome(post_event(router, event("customer.created", {"id": "cus_1"}))) == "ignored"
    assert outcome(post_event(router, event("invoice.paid", {"weird": [1, 2]}))) == "ignored"
    assert query(db, "SELECT COUNT(*) FROM stripe_events") == before
    # a paid session that is not a top-up (another product on the same Stripe account)
    foreign = {"id": "cs_test_other", "object": "checkout.session", "payment_status": "paid",
               "metadata": {}, "currency": "usd", "amount_total": 999}  # fmt: skip
    assert outcome(post_event(router, event("checkout.session.completed", foreign))) == "ignored"
    # a top-up of a user this server does not know (e.g. staging sharing the Stripe account)
    metadata = {"lmrouter_user_id": "u_nobody", "lmrouter_credit_usd": "9.00"}
    stranger = {**foreign, "id": "cs_test_stranger", "metadata": metadata}
    assert (
        outcome(post_event(router, event("checkout.session.completed", stranger))) == "unknown_user"
    )
    # metadata that claims more than was paid is not credited
    _, key = cli.user_with_key("greedy@example.com")
    session_id = top_up(router, key)
    evt = fake.complete(session_id)
    evt["data"]["object"]["amount_total"] = 500
    assert outcome(post_event(router, evt)) == "ignored"
    assert credits(router, key)["lots"] == []


def test_a_signed_session_not_made_here_for_that_user_and_sum_credits_nothing(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path
) -> None:
    victim_id, victim_key = cli.user_with_key("forged-for@example.com")
    _, other_key = cli.user_with_key("forged-other@example.com")
    # a session created on the Stripe account outside this router, naming a user in metadata
    metadata = {"lmrouter_user_id": victim_id, "lmrouter_credit_usd": "500.00"}
    outside = {"id": "cs_test_outside", "object": "checkout.session", "payment_status": "paid",
               "payment_intent": "pi_outside", "metadata": metadata, "currency": "usd",
               "amount_total": 50000}  # fmt: skip
    answer = post_event(router, event("checkout.session.completed", outside))
    assert outcome(answer) == "unknown_session"  # 200: Stripe must not retry it forever
    # a real session of another user, completed with the victim's id in its metadata
    session_id = top_up(router, other_key, "20")
    evt = fake.complete(session_id)
    evt["data"]["object"]["metadata"]["lmrouter_user_id"] = victim_id
    assert outcome(post_event(router, evt)) == "unknown_session"
    # the session's own user with a bigger sum than checkout recorded
    evt = fake.complete(top_up(router, other_key, "5"))
    paid = evt["data"]["object"]
    paid["metadata"]["lmrouter_credit_usd"], paid["amount_total"] = "900.00", 90000
    assert outcome(post_event(router, evt)) == "unknown_session"
    assert credits(router, victim_key)["lots"] == []
    assert credits(router, other_key)["lots"] == []
    ledger_matches_lots(db)


# -- asynchronous payments, refunds, disputes ---------------------------------------------------


def test_a_delayed_payment_is_credited_when_it_clears(
    router: RouterServer, cli: Cli, fake: FakeStripe
) -> None:
    _, key = cli.user_with_key("sepa@example.com")
    session_id = top_up(router, key, "30")
    assert outcome(post_event(router, fake.complete(session_id, paid=False))) == "awaiting_payment"
    assert credits(router, key)["lots"] == []
    assert outcome(post_event(router, fake.async_succeeded(session_id))) == "credited"
    assert credits(router, key)["balance_usd"] == "30"

    # delivered out of order: the success first, the completion (still unpaid) after
    _, key2 = cli.user_with_key("sepa2@example.com")
    other = top_up(router, key2, "6")
    unpaid = fake.complete(other, paid=False)
    assert outcome(post_event(router, fake.async_succeeded(other))) == "credited"
    assert outcome(post_event(router, unpaid)) == "awaiting_payment"
    assert credits(router, key2)["balance_usd"] == "6"


def test_refunds_and_disputes_keep_credits_and_are_recorded(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    user_id, key = cli.user_with_key("chargeback@example.com")
    session_id = top_up(router, key, "40")
    assert outcome(post_event(router, fake.complete(session_id))) == "credited"

    refund = fake.refund(session_id, 1000)
    assert outcome(post_event(router, refund)) == "recorded"
    assert outcome(post_event(router, refund)) == "duplicate"
    assert credits(router, key)["balance_usd"] == "40"  # purchases are final

    dispute = fake.dispute(session_id)
    assert outcome(post_event(router, dispute)) == "recorded"
    rows = query(
        db, "SELECT kind, amount_pico, note FROM ledger WHERE user_id = ? ORDER BY id", (user_id,)
    )
    assert [(kind, amount) for kind, amount, _ in rows] == [
        ("purchase", 40 * PICO),
        ("refund", 0),
        ("dispute", 0),
    ]
    assert "10.00 USD" in rows[1][2] and dispute["data"]["object"]["id"] in rows[2][2]
    ledger_matches_lots(db)
    # the account is suspended: its key is refused within the cache's half second
    deadline = time.monotonic() + 5
    while True:
        response = httpx.get(f"{router.url}/v1/credits", headers={"authorization": f"Bearer {key}"})
        if response.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.status_code == 403 and response.json()["error"]["code"] == "account_suspended"

    # an operator resumes the user; a replay of the dispute must not suspend again
    cli("users", "resume", "chargeback@example.com")
    assert outcome(post_event(router, dispute)) == "duplicate"
    assert query(db, "SELECT status FROM users WHERE id = ?", (user_id,)) == [("active",)]


def test_a_dispute_before_its_payment_waits_for_it(
    router: RouterServer, cli: Cli, fake: FakeStripe, db: Path | str
) -> None:
    user_id, key = cli.user_with_key("early@example.com")
    session_id = top_up(router, key, "8")
    completed = fake.complete(session_id)
    assert outcome(post_event(router, fake.dispute(session_id))) == "unmatched"
    assert outcome(post_event(router, completed)) == "credited"
    kinds = query(db, "SELECT kind FROM ledger WHERE user_id = ? ORDER BY id", (user_id,))
    assert kinds == [("purchase",), ("dispute",)]
    assert query(db, "SELECT status FROM users WHERE id = ?", (user_id,)) == [("suspended",)]
    assert query(db, "SELECT outcome FROM stripe_events WHERE type = 'charge.dispute.created' "
                 "AND payment_intent = ?", (completed["data"]["object"]["payment_intent"],)) == [
        ("recorded",)
    ]  # fmt: skip


# -- not configured ------------------------------------------------------------------------------


def test_without_keys_the_endpoints_say_so(
    fake: FakeStripe, tmp_path: Path, lmrouter_server: Any
) -> None:
    text = config(fake.base_url, secret_key="", webhook_secret="")
    (tmp_path / "lmrouter.toml").write_text(text)
    check = Cli(tmp_path / "lmrouter.toml", tmp_path / "stripe.db")("check")
    assert "is valid" in check
    server = lmrouter_server(text, workdir=tmp_path)
    cli = Cli(server.config_path, tmp_path / "stripe.db")
    _, key = cli.user_with_key("nokeys@example.com")
    response = checkout(
        server, key, {"amount_usd": 10, "success_url": "https://a", "cancel_url": "https://a"}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "billing_not_configured"
    assert "not configured" in response.json()["error"]["message"]
    hook = post_event(server, event("checkout.session.completed", {"id": "cs_1"}))
    assert hook.status_code == 503 and "webhook_secret" in hook.text
