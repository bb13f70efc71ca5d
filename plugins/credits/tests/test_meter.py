"""The money path against a real database (SQLite, and PostgreSQL where holds are shared by
every process: see also test_shared_holds.py): holds at admission, settlement at the end, the
batched write, reloads after changes from elsewhere. Tests of the in-memory wallet itself (the
embedded store's path) run on SQLite only."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lmrouter.errors import RouterError
from lmrouter.usage import Usage
from lmrouter_credits import ledger, service
from lmrouter_credits.clock import now_us
from lmrouter_credits.meter import HOLD, Meter, _Flush

USD = 10**12


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def admit(meter: Meter, ctx: Any) -> Any:
    """The hook's contract: None, or an awaitable to await."""
    return meter.admit(ctx)


async def admitted(meter: Meter, ctx: Any) -> None:
    result = meter.admit(ctx)
    if result is not None:
        await result


async def usage_rows(store: Any) -> list[dict[str, Any]]:
    return await ledger.usage_rows(store, ledger.UsageQuery(limit=1000))


def test_several_answers_hold_the_prompt_once_per_answer(tmp_path: Path, kit: Any) -> None:
    """A provider without choices is sent the prompt once per answer (fan-out): held so."""

    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            alice = await kit.user(store, "alice@example.com")
            await service.grant(store, alice, 1 * USD)
            meter = kit.meter(store)
            ctx = kit.ctx(kit.model(), kit.principal(alice), max_output_tokens=10, prompt_chars=400)
            ctx.n = 3
            await admitted(meter, ctx)
            # 3 x 100 prompt tokens at 1e6 pico + 3 x 10 output tokens at 2e6 pico
            assert ctx.state[HOLD] == 3 * 100 * 10**6 + 3 * 10 * 2 * 10**6
            meter.end(ctx, kit.outcome(ctx, Usage(prompt_tokens=300, completion_tokens=30)))
            await meter.writer.flush()

    run(go())


def test_hold_is_the_worst_case_and_settles_to_the_real_cost(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            alice = await kit.user(store, "alice@example.com")
            await service.grant(store, alice, 1 * USD)
            meter = kit.meter(store)
            model = kit.model()
            ctx = kit.ctx(model, kit.principal(alice), max_output_tokens=1000, prompt_chars=400)
            await admitted(meter, ctx)
            # 100 prompt tokens at 1e6 pico + 1000 output tokens at 2e6 pico
            assert ctx.state[HOLD] == 100 * 10**6 + 1000 * 2 * 10**6
            if meter.shared:  # the hold is a row, with its owner and lease
                assert await store.fetchall(
                    "SELECT user_id, amount_pico, owner FROM credit_holds"
                ) == [(alice, ctx.state[HOLD], meter.owner)]
            else:
                wallet = meter.wallets[alice]
                assert wallet.available(now_us()) == USD - ctx.state[HOLD]
            assert meter.holds == 1
            usage = Usage(prompt_tokens=90, completion_tokens=10)
            meter.end(ctx, kit.outcome(ctx, usage))
            cost = 90 * 10**6 + 10 * 2 * 10**6
            assert meter.holds == 0
            if not meter.shared:
                assert wallet.held == 0
                assert wallet.balance == USD - cost
            await meter.writer.flush()
            assert await store.fetchall("SELECT * FROM credit_holds") == []
            assert await service.balance(store, alice) == USD - cost
            [row] = await usage_rows(store)
            assert row["request_id"] == ctx.request_id
            assert (row["cost_pico"], row["charged_pico"], row["written_off_pico"]) == (
                cost,
                cost,
                0,
            )
            assert (row["prompt_tokens"], row["completion_tokens"]) == (90, 10)
            assert row["user_id"] == alice and row["key_id"] == f"key-{alice}"
            assert row["provider"] == "up" and row["route_model"] == "up-model"
            assert await kit.sums(store) == {alice: (USD - cost, USD - cost)}

    run(go())


def test_not_enough_credits_is_402_and_the_refusal_is_recorded(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            bob = await kit.user(store, "bob@example.com")
            await service.grant(store, bob, 2000 * 10**6)  # 1000 output tokens' worth
            meter = kit.meter(store)
            ctx = kit.ctx(kit.model(), kit.principal(bob), max_output_tokens=600, prompt_chars=0)
            await admitted(meter, ctx)
            second = kit.ctx(kit.model(), kit.principal(bob), max_output_tokens=600, prompt_chars=0)
            with pytest.raises(RouterError) as refused:
                pending = admit(meter, second)  # synchronous in-process: the wallet is in memory
                assert meter.shared and pending is not None  # else the database decides
                await pending
            assert refused.value.status == 402
            assert refused.value.code == "insufficient_credits"
            assert HOLD not in second.state
            meter.end(second, kit.outcome(second, Usage(), status="refused"))
            meter.end(ctx, kit.outcome(ctx, Usage(completion_tokens=100)))
            await meter.writer.flush()
            rows = {r["request_id"]: r for r in await usage_rows(store)}
            assert rows[second.request_id]["status"] == "refused"
            assert rows[second.request_id]["charged_pico"] == 0
            assert rows[ctx.request_id]["charged_pico"] == 100 * 2 * 10**6
            assert await service.balance(store, bob) == 1800 * 10**6

    run(go())


def test_no_limit_anywhere_holds_the_configured_default(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            user = await kit.user(store, "d@example.com")
            await service.grant(store, user, USD)
            meter = kit.meter(store, default_max_output_tokens=7)
            ctx = kit.ctx(kit.model(), kit.principal(user), max_output_tokens=None, prompt_chars=0)
            await admitted(meter, ctx)
            assert ctx.state[HOLD] == 7 * 2 * 10**6

    run(go())


def test_worst_route_is_held_and_byok_routes_hold_only_the_fee(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            carol = await kit.user(store, "carol@example.com")
            await service.grant(store, carol, USD)
            meter = kit.meter(store, byok_fee_percent=10)
            model = kit.model("cheap", "pricey")
            model.routes[1].rates = model.routes[1].rates._replace(output=5 * 10**6)
            full = kit.ctx(model, kit.principal(carol), max_output_tokens=100, prompt_chars=0)
            await admitted(meter, full)
            assert full.state[HOLD] == 100 * 5 * 10**6  # the pricier route
            byok = kit.principal(carol, byok=frozenset({"pricey"}))
            mixed = kit.ctx(model, byok, max_output_tokens=100, prompt_chars=0)
            await admitted(meter, mixed)
            # pricey is paid by the user's own key: 10 % of 500e6; cheap costs 200e6 in full
            assert mixed.state[HOLD] == 100 * 2 * 10**6

    run(go())


def test_byok_requests_pay_the_fee_only(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            dave = await kit.user(store, "dave@example.com")
            await service.grant(store, dave, USD)
            meter = kit.meter(store, byok_fee_percent="2.5")
            principal = kit.principal(dave, byok=frozenset({"up"}))
            ctx = kit.ctx(kit.model(), principal, max_output_tokens=100, prompt_chars=0)
            await admitted(meter, ctx)
            ctx.billable = False  # what accounts does when it hands out the user's key
            outcome = kit.outcome(ctx, Usage(prompt_tokens=1000, completion_tokens=100))
            meter.end(ctx, outcome)
            await meter.writer.flush()
            [row] = await usage_rows(store)
            assert row["cost_pico"] == outcome.cost_pico == 1200 * 10**6
            assert row["charged_pico"] == 30 * 10**6
            assert row["billable"] == 0
            assert await service.balance(store, dave) == USD - 30 * 10**6

    run(go())


def test_a_cost_above_the_hold_takes_what_there_is_and_writes_off_the_rest(
    tmp_path: Path, kit: Any
) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            erin = await kit.user(store, "erin@example.com")
            await service.grant(store, erin, 50 * 10**6)
            meter = kit.meter(store)
            ctx = kit.ctx(kit.model(), kit.principal(erin), max_output_tokens=10, prompt_chars=0)
            await admitted(meter, ctx)
            # the upstream ignored max_tokens: 100 tokens cost 200e6, the user has 50e6
            meter.end(ctx, kit.outcome(ctx, Usage(completion_tokens=100)))
            assert meter.shared or meter.wallets[erin].available(now_us()) == 0
            await meter.writer.flush()
            [row] = await usage_rows(store)
            assert (row["charged_pico"], row["written_off_pico"]) == (50 * 10**6, 150 * 10**6)
            assert await service.balance(store, erin) == 0
            assert await kit.sums(store) == {erin: (0, 0)}

    run(go())


def test_operator_requests_hold_nothing_and_are_recorded(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            meter = kit.meter(store)
            ctx = kit.ctx(kit.model(), kit.principal(None), max_output_tokens=10, prompt_chars=0)
            assert admit(meter, ctx) is None
            assert HOLD not in ctx.state
            meter.end(ctx, kit.outcome(ctx, Usage(completion_tokens=5)))
            await meter.writer.flush()
            [row] = await usage_rows(store)
            assert row["user_id"] is None and row["principal"] == "operator:0"
            assert row["cost_pico"] == 10 * 10**6 and row["charged_pico"] == 0

    run(go())


@pytest.mark.sqlite_only  # the in-memory wallet (shared holds: test_shared_holds.py)
def test_concurrent_first_requests_load_the_wallet_once(
    tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    real = ledger.live_lots

    async def counting(reader: Any, users: Any) -> Any:
        loads.append(list(users))
        await asyncio.sleep(0.01)  # long enough for every request to arrive meanwhile
        return await real(reader, users)

    monkeypatch.setattr(ledger, "live_lots", counting)

    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            frank = await kit.user(store, "frank@example.com")
            await service.grant(store, frank, 10 * 2 * 10**6)  # exactly 10 requests' holds
            meter = kit.meter(store)
            ctxs = [
                kit.ctx(kit.model(), kit.principal(frank), max_output_tokens=1, prompt_chars=0)
                for _ in range(15)
            ]
            results = await asyncio.gather(
                *(admitted(meter, c) for c in ctxs), return_exceptions=True
            )
            assert loads == [[frank]]
            refused = [r for r in results if isinstance(r, RouterError)]
            assert len(refused) == 5 and all(r.status == 402 for r in refused)
            assert meter.wallets[frank].available(now_us()) == 0

    run(go())


def test_a_retried_batch_writes_nothing_twice(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            gina = await kit.user(store, "gina@example.com")
            await service.grant(store, gina, USD)
            meter = kit.meter(store)
            ctx = kit.ctx(kit.model(), kit.principal(gina), max_output_tokens=10, prompt_chars=0)
            await admitted(meter, ctx)
            meter.end(ctx, kit.outcome(ctx, Usage(completion_tokens=10)))
            [flush] = [op for op in meter.writer._pending if isinstance(op, _Flush)]
            async with store.transaction() as tx:
                await flush(tx)
            async with store.transaction() as tx:  # as if the commit had reported failure
                await flush(tx)
            assert len(await usage_rows(store)) == 1
            assert await service.balance(store, gina) == USD - 20 * 10**6
            assert await kit.sums(store) == {gina: (USD - 20 * 10**6,) * 2}

    run(go())


def test_one_bad_record_does_not_take_the_batch_down(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            hank = await kit.user(store, "hank@example.com")
            await service.grant(store, hank, USD)
            meter = kit.meter(store)
            good = kit.ctx(kit.model(), kit.principal(hank), max_output_tokens=10, prompt_chars=0)
            await admitted(meter, good)
            # a user the database does not know: its record breaks a foreign key
            ghost = kit.ctx(
                kit.model(), kit.principal("ghost"), max_output_tokens=10, prompt_chars=0
            )
            meter.end(ghost, kit.outcome(ghost, Usage(completion_tokens=1)))
            meter.end(good, kit.outcome(good, Usage(completion_tokens=10)))
            await meter.writer.flush()
            rows = await usage_rows(store)
            assert [r["request_id"] for r in rows] == [good.request_id]
            assert await service.balance(store, hank) == USD - 20 * 10**6
            assert await kit.sums(store) == {hank: (USD - 20 * 10**6,) * 2}

    run(go())


@pytest.mark.sqlite_only  # the in-memory wallet (shared holds: test_shared_holds.py)
def test_changes_from_another_process_reach_a_running_meter(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        path = tmp_path / "c.db"
        async with kit.store(path) as store, kit.store(path) as cli:
            ivy = await kit.user(store, "ivy@example.com")
            meter = kit.meter(store, flush_interval=0.01)
            await meter.start()
            try:
                ctx = kit.ctx(kit.model(), kit.principal(ivy), max_output_tokens=10, prompt_chars=0)
                with pytest.raises(RouterError):
                    await admitted(meter, ctx)
                meter.end(ctx, kit.outcome(ctx, Usage(), status="refused"))
                # another connection stands for `lmrouter credits grant` in another process;
                # unsubscribe-free: service notifies this process too, so detach it first
                meter._unsubscribe()
                meter._unsubscribe = None
                await service.grant(cli, ivy, USD)
                for _ in range(40):  # the poll runs every 0.5 s
                    await asyncio.sleep(0.05)
                    if meter.wallets[ivy].available(now_us()) > 0:
                        break
                assert meter.wallets[ivy].balance == USD
                ctx = kit.ctx(kit.model(), kit.principal(ivy), max_output_tokens=10, prompt_chars=0)
                await admitted(meter, ctx)
                meter.end(ctx, kit.outcome(ctx, Usage(completion_tokens=10)))
                await meter.read(ledger.revision)  # the charge is written
                # a sweep elsewhere that expires everything: the meter follows
                await service.sweep(cli, as_of=datetime.now(UTC) + timedelta(days=400))
                for _ in range(40):
                    await asyncio.sleep(0.05)
                    if meter.wallets[ivy].balance == 0:
                        break
                assert meter.wallets[ivy].balance == 0
            finally:
                await meter.stop()
            sums = await kit.sums(store)
            assert sums == {ivy: (0, 0)}
            rows = await store.fetchall(
                "SELECT kind, amount_pico FROM ledger WHERE user_id = ? ORDER BY id", (ivy,)
            )
            assert rows == [("grant", USD), ("spend", -20 * 10**6), ("expiry", -(USD - 20 * 10**6))]

    run(go())


def test_a_purchase_in_this_process_is_spendable_at_once(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            jo = await kit.user(store, "jo@example.com")
            meter = kit.meter(store, flush_interval=0.01)
            await meter.start()
            try:
                await meter.wallet(jo)
                _, created = await service.add_purchase(
                    store, jo, 5 * USD, "cs_test_1", datetime.now(UTC)
                )
                assert created
                await meter.read(ledger.revision)  # runs after the reload the purchase queued
                assert meter.wallets[jo].balance == 5 * USD
            finally:
                await meter.stop()

    run(go())


def test_read_sees_this_workers_queued_writes(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            kim = await kit.user(store, "kim@example.com")
            await service.grant(store, kim, USD)
            meter = kit.meter(store, flush_interval=0.02)
            await meter.start()
            try:
                ctx = kit.ctx(kit.model(), kit.principal(kim), max_output_tokens=10, prompt_chars=0)
                await admitted(meter, ctx)
                meter.end(ctx, kit.outcome(ctx, Usage(completion_tokens=3)))
                summary = await meter.read(lambda tx: service.summary(tx, kim))
                assert summary.balance_pico == USD - 6 * 10**6
                rows = await meter.read(lambda tx: ledger.usage_rows(tx, ledger.UsageQuery()))
                assert [r["request_id"] for r in rows] == [ctx.request_id]
            finally:
                await meter.stop()

    run(go())


def test_holds_in_flight_are_a_prometheus_gauge(tmp_path: Path, kit: Any) -> None:
    from prometheus_client import REGISTRY

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("lmrouter_credit_holds_outstanding")

    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            lee = await kit.user(store, "lee@example.com")
            await service.grant(store, lee, USD)
            meter = kit.meter(store)
            # the gauge sums every live meter: let earlier tests' meters go first, or one
            # collected between two readings would move it
            gc.collect()
            before = gauge()
            assert before is not None
            ctxs = [
                kit.ctx(kit.model(), kit.principal(lee), max_output_tokens=1, prompt_chars=0)
                for _ in range(3)
            ]
            for ctx in ctxs:
                await admitted(meter, ctx)
            assert gauge() == before + 3
            for ctx in ctxs:
                meter.end(ctx, kit.outcome(ctx, Usage()))
            assert gauge() == before

    run(go())


@pytest.mark.sqlite_only  # the in-memory wallet (shared holds: test_shared_holds.py)
def test_a_balance_that_cannot_be_read_is_a_503_and_is_read_again_later(
    tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ledger.live_lots
    failures = [RuntimeError("disk on fire")]

    async def flaky(reader: Any, users: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(reader, users)

    monkeypatch.setattr(ledger, "live_lots", flaky)

    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            mo = await kit.user(store, "mo@example.com")
            await service.grant(store, mo, USD)
            meter = kit.meter(store)
            ctx = kit.ctx(kit.model(), kit.principal(mo), max_output_tokens=1, prompt_chars=0)
            with pytest.raises(RouterError) as failed:
                await admitted(meter, ctx)
            assert failed.value.status == 503 and failed.value.code == "unavailable"
            assert mo not in meter.wallets and not meter._loading
            await admitted(meter, ctx)
            assert meter.wallets[mo].available(now_us()) == USD - 2 * 10**6

    run(go())


@pytest.mark.sqlite_only  # the in-memory wallet (shared holds: test_shared_holds.py)
def test_idle_wallets_are_evicted_and_read_again_exactly(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            alice = await kit.user(store, "alice@example.com")
            bob = await kit.user(store, "bob@example.com")
            for user in (alice, bob):
                await service.grant(store, user, 1 * USD)
            meter = kit.meter(store)
            model = kit.model()
            usage = Usage(prompt_tokens=90, completion_tokens=10)
            for user in (alice, bob):
                ctx = kit.ctx(model, kit.principal(user), max_output_tokens=100, prompt_chars=360)
                await admitted(meter, ctx)
                meter.end(ctx, kit.outcome(ctx, usage))
            balance = meter.wallets[alice].balance
            held = kit.ctx(model, kit.principal(bob), max_output_tokens=100, prompt_chars=360)
            await admitted(meter, held)  # bob has a request in flight
            later = now_us() + 601 * 10**6
            # Charges not yet written: nothing may go (a wallet read now would miss them).
            assert meter.evict_idle(later) == 0 and set(meter.wallets) == {alice, bob}
            await meter.writer.flush()
            assert meter.evict_idle(now_us()) == 0, "used moments ago"
            assert meter.evict_idle(later) == 1 and set(meter.wallets) == {bob}, "bob holds"
            ctx = kit.ctx(model, kit.principal(alice), max_output_tokens=100, prompt_chars=360)
            await admitted(meter, ctx)  # read afresh from the database
            assert meter.wallets[alice].balance == balance
            meter.end(held, kit.outcome(held, usage))
            meter.end(ctx, kit.outcome(ctx, usage))
            await meter.writer.flush()
            assert meter.evict_idle(now_us() + 601 * 10**6) == 2 and meter.wallets == {}
            left = USD - 2 * (90 * 10**6 + 10 * 2 * 10**6)  # two requests each
            assert await kit.sums(store) == {alice: (left, left), bob: (left, left)}

    run(go())
