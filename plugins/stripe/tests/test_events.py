"""The event processor in-process on a real SQLite file and a real PostgreSQL database: what the
end-to-end tests cannot easily reach (a crash inside the transaction, settings off, a refund
before its payment)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from lmrouter.plugins import manager
from lmrouter.storage import Store, migrate
from lmrouter_accounts import AccountsPlugin
from lmrouter_accounts import service as accounts
from lmrouter_credits import Credits
from lmrouter_stripe import StripePlugin
from lmrouter_stripe.config import StripeConfig
from lmrouter_stripe.events import BadEvent, Processor, decode_event
from lmrouter_stripe.testing import event

PICO = 10**12


@contextlib.asynccontextmanager
async def opened(store: Store, **settings: Any) -> AsyncIterator[tuple[Store, Processor]]:
    await store.open()
    pm = manager({"accounts": AccountsPlugin(), "credits": Credits(), "stripe": StripePlugin()})
    await migrate(store, pm)
    try:
        yield store, Processor(store, msgspec.convert(settings, StripeConfig), 30)
    finally:
        await store.close()


def session(user_id: str, sid: str, *, paid: str = "paid", credit: str = "10.00") -> dict[str, Any]:
    return {
        "id": sid,
        "object": "checkout.session",
        "payment_status": paid,
        "payment_intent": "pi_" + sid,
        "currency": "usd",
        "amount_total": 1083,
        "metadata": {"lmrouter_user_id": user_id, "lmrouter_credit_usd": credit},
    }


def charge_event(kind: str, sid: str) -> dict[str, Any]:
    if kind == "charge.refunded":
        obj = {"id": "ch_" + sid, "payment_intent": "pi_" + sid, "amount_refunded": 1083}
    else:
        obj = {"id": "dp_" + sid, "charge": "ch_" + sid, "payment_intent": "pi_" + sid,
               "amount": 1083, "reason": "fraudulent"}  # fmt: skip
    return event(kind, obj)


async def checked_out(store: Store, user_id: str, sid: str, total_cents: int = 1083) -> None:
    """The row checkout writes when it makes session ``sid`` ($10.00 credit)."""
    await store.execute(
        "INSERT INTO stripe_sessions (id, user_id, credit_pico, fee_cents, amount_total_cents, "
        "created_at) VALUES (?, ?, ?, ?, ?, '2026-01-01T00:00:00.000000Z')",
        (sid, user_id, 10 * PICO, total_cents - 1000, total_cents),
    )


async def apply(processor: Processor, evt: dict[str, Any]) -> str:
    return await processor.process(decode_event(orjson.dumps(evt)))


def test_a_crash_inside_the_transaction_leaves_nothing_behind(
    tmp_path: Path, make_store: Any
) -> None:
    async def go() -> None:
        async with opened(make_store(tmp_path / "s.db")) as (store, processor):
            user = (await accounts.create_user(store, "c@example.com")).id
            await checked_out(store, user, "cs_1")
            evt = event("checkout.session.completed", session(user, "cs_1"))

            async def crash(*args: Any) -> None:
                raise RuntimeError("power cut")

            processor._apply_waiting = crash  # type: ignore[method-assign]  # after the credit
            with pytest.raises(RuntimeError):
                await apply(processor, evt)
            for table in ("credit_lots", "ledger", "stripe_events"):
                assert await store.fetchall(f"SELECT * FROM {table}") == [], table
            assert await store.fetchall("SELECT lot_id, paid_at FROM stripe_sessions") == [
                (None, None)
            ]
            del processor._apply_waiting  # Stripe retries the same event
            assert await apply(processor, evt) == "credited"
            assert await store.fetchall("SELECT amount_pico FROM credit_lots") == [(10 * PICO,)]

    asyncio.run(go())


def test_a_refund_before_its_payment_and_disputes_without_suspension(
    tmp_path: Path, make_store: Any
) -> None:
    async def go() -> None:
        async with opened(make_store(tmp_path / "s.db"), suspend_on_dispute=False) as (
            store,
            processor,
        ):
            user = (await accounts.create_user(store, "d@example.com")).id
            await checked_out(store, user, "cs_2")
            assert await apply(processor, charge_event("charge.refunded", "cs_2")) == "unmatched"
            assert await apply(processor, charge_event("charge.dispute.created", "cs_2")) == (
                "unmatched"
            )
            paid = event("checkout.session.completed", session(user, "cs_2"))
            assert await apply(processor, paid) == "credited"
            rows = await store.fetchall("SELECT kind, amount_pico FROM ledger ORDER BY id")
            assert rows == [("purchase", 10 * PICO), ("refund", 0), ("dispute", 0)]
            assert (await accounts.get_user(store, user)).status == "active"  # setting off
            later = charge_event("charge.dispute.created", "cs_2")
            assert await apply(processor, later) == "recorded"
            assert (await accounts.get_user(store, user)).status == "active"
            outcomes = await store.fetchall("SELECT DISTINCT outcome FROM stripe_events")
            assert sorted(outcomes) == [("credited",), ("recorded",)]

    asyncio.run(go())


def test_sessions_that_are_not_paid_top_ups(tmp_path: Path, make_store: Any) -> None:
    async def go() -> None:
        async with opened(make_store(tmp_path / "s.db")) as (store, processor):
            user = (await accounts.create_user(store, "e@example.com")).id
            cases = [
                (session(user, "cs_a", paid="no_payment_required"), "ignored"),
                (session(user, "cs_b", credit="10.001"), "ignored"),  # not whole cents
                (session(user, "cs_c", credit="-1"), "ignored"),
                (session(user, "cs_d", credit="ten"), "ignored"),
                (session(user, "cs_g", credit="1e999999"), "ignored"),
                (session(user, "cs_h", credit="NaN"), "ignored"),
                ({**session(user, "cs_e"), "currency": "eur"}, "ignored"),
                (session(user, "cs_f", paid="unpaid"), "awaiting_payment"),
            ]
            for obj, expected in cases:
                await checked_out(store, user, obj["id"])
                evt = event("checkout.session.completed", obj)
                assert await apply(processor, evt) == expected, obj
            assert await store.fetchall("SELECT * FROM credit_lots") == []

    asyncio.run(go())


def test_only_a_session_made_at_checkout_for_that_user_and_sum_is_credited(
    tmp_path: Path, make_store: Any
) -> None:
    async def go() -> None:
        async with opened(make_store(tmp_path / "s.db")) as (store, processor):
            user = (await accounts.create_user(store, "f@example.com")).id
            other = (await accounts.create_user(store, "g@example.com")).id
            await checked_out(store, other, "cs_other")  # made for someone else
            await checked_out(store, user, "cs_small", total_cents=583)  # made for $5.83 total
            cases = [
                session(user, "cs_never"),  # never made here
                session(user, "cs_other"),
                session(user, "cs_small"),
            ]
            for obj in cases:
                evt = event("checkout.session.completed", obj)
                assert await apply(processor, evt) == "unknown_session", obj["id"]
                assert await apply(processor, evt) == "duplicate"  # recorded: no retry loop
            assert await store.fetchall("SELECT * FROM credit_lots") == []

    asyncio.run(go())


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"id": "evt_1", "type": "x", "created": 1}',  # no data
        b'{"id": "evt_1", "type": "x", "created": -5, "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "x", "created": 99999999999999, "data": {"object": {}}}',
        b'{"id": 1, "type": "x", "created": 1, "data": {"object": {}}}',
    ],
)
def test_malformed_events(body: bytes) -> None:
    with pytest.raises(BadEvent):
        decode_event(body)
