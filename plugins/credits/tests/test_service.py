"""The service API (what the CLI, the endpoints and the Stripe plugin call) and the
``lmrouter credits`` commands, run the way a shell runs them, on a real database file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lmrouter.cli import main
from lmrouter_credits import ledger, service

USD = 10**12


def test_a_purchase_is_credited_once_per_source_ref(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            user = await kit.user(store, "p@example.com")
            paid = datetime(2025, 6, 1, tzinfo=UTC)
            first, created = await service.add_purchase(store, user, 5 * USD, "cs_1", paid)
            again, created_again = await service.add_purchase(store, user, 5 * USD, "cs_1", paid)
            assert created and not created_again
            assert again == first
            assert first.source == "purchase" and first.source_ref == "cs_1"
            rows = await store.fetchall("SELECT kind, amount_pico, lot_id FROM ledger")
            assert rows == [("purchase", 5 * USD, first.id)]
            assert await ledger.revision(store) == 1  # the replay changed nothing

    asyncio.run(go())


def test_history_notes_and_purchases_share_a_transaction(tmp_path: Path, kit: Any) -> None:
    """What the Stripe plugin does: a purchase and its own record in one transaction (both or
    neither), and refund/dispute notes that move no money, so the ledger still sums to the lots.
    """

    async def go() -> None:
        heard: list[int] = []
        unsubscribe = service.subscribe(lambda: heard.append(1))
        try:
            async with kit.store(tmp_path / "c.db") as store:
                user = await kit.user(store, "n@example.com")
                paid = datetime(2025, 6, 1, tzinfo=UTC)
                with pytest.raises(RuntimeError):
                    async with service.transaction(store) as tx:
                        await service.add_purchase_in(tx, user, 5 * USD, "cs_x", paid)
                        raise RuntimeError("crash before commit")
                assert await store.fetchall("SELECT * FROM credit_lots") == []
                assert heard == []
                async with service.transaction(store) as tx:
                    lot, created = await service.add_purchase_in(tx, user, 5 * USD, "cs_x", paid)
                    await service.note_in(tx, user, "refund", "refunded at Stripe", lot_id=lot.id)
                    await service.note_in(tx, user, "dispute", "disputed", lot_id=lot.id)
                assert created and heard == [1]
                async with service.transaction(store) as tx:  # the same purchase: no change
                    _, again = await service.add_purchase_in(tx, user, 5 * USD, "cs_x", paid)
                assert not again and heard == [1]
                with pytest.raises(ValueError):
                    async with service.transaction(store) as tx:
                        await service.note_in(tx, user, "spend", "no", lot_id=None)
                with pytest.raises(kit.integrity_error):  # the schema refuses money in a note
                    await store.execute(
                        "INSERT INTO ledger (user_id, kind, amount_pico, created_at) "
                        "VALUES (?, 'refund', -1, 'x')",
                        (user,),
                    )
                rows = await store.fetchall("SELECT kind, amount_pico, lot_id, note FROM ledger")
                assert rows == [
                    ("purchase", 5 * USD, lot.id, None),
                    ("refund", 0, lot.id, "refunded at Stripe"),
                    ("dispute", 0, lot.id, "disputed"),
                ]
                assert await kit.sums(store) == {user: (5 * USD, 5 * USD)}
        finally:
            unsubscribe()

    asyncio.run(go())


def test_the_ledger_rebuild_keeps_rows(tmp_path: Path, kit: Any) -> None:
    """Migration 2 rebuilds the ledger table (a wider CHECK): rows written before it survive."""

    async def go() -> None:
        path = tmp_path / "c.db"
        async with kit.store(path) as store:
            user = await kit.user(store, "old@example.com")
            await service.grant(store, user, 3 * USD, note="before")
            await store.execute("DELETE FROM lmrouter_migrations WHERE namespace = 'credits' "
                                "AND version = 2")  # fmt: skip
        async with kit.store(path) as store:  # migration 2 runs again over the existing rows
            rows = await store.fetchall("SELECT kind, amount_pico, note FROM ledger")
            assert rows == [("grant", 3 * USD, "before")]
            assert await kit.indexes(store, "ledger") == {"ledger_user", "ledger_lot"}
            # rows added after the rebuild are numbered after the rows it copied
            await service.grant(store, user, 1 * USD, note="after")
            ids = await store.fetchall("SELECT id FROM ledger ORDER BY id")
            assert len(ids) == 2 and ids[0] < ids[1]

    asyncio.run(go())


def test_lots_must_hold_money(tmp_path: Path, kit: Any) -> None:
    async def go() -> None:
        async with kit.store(tmp_path / "c.db") as store:
            user = await kit.user(store, "z@example.com")
            for amount in (0, -5):
                with pytest.raises(ValueError):
                    await service.grant(store, user, amount)
            assert await store.fetchall("SELECT * FROM credit_lots") == []

    asyncio.run(go())


# -- the commands -------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "lmrouter.toml"
    path.write_text('[storage]\nurl = "sqlite:///credits.db"\n[credits]\nexpire_after_days = 30\n')
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_grant_show_and_sweep(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config)
    assert cli(capsys, "users", "add", "Ann@Example.com", "--config", c)[0] == 0
    code, out, _ = cli(
        capsys, "credits", "grant", "ann@example.com", "2.5", "--note", "welcome",
        "--purchased-at", "2025-01-01T00:00:00Z", "--config", c,
    )  # fmt: skip
    assert code == 0
    assert "granted 2.5 USD to ann@example.com" in out
    assert "expires 2025-01-31T00:00:00.000000Z" in out  # [credits] expire_after_days = 30
    code, out, _ = cli(
        capsys, "credits", "--config", c, "grant", "ANN@example.com", "0.000001", "--note", "x"
    )
    assert code == 0

    code, out, _ = cli(capsys, "credits", "show", "ann@example.com", "--json", "--config", c)
    shown = json.loads(out)
    assert shown["balance_usd"] == "0.000001"  # the first lot expired long ago (not swept)
    first, second = shown["lots"]
    assert first == {
        "id": first["id"],
        "source": "grant",
        "source_ref": None,
        "note": "welcome",
        "amount_usd": "2.5",
        "remaining_usd": "2.5",
        "purchased_at": "2025-01-01T00:00:00.000000Z",
        "expires_at": "2025-01-31T00:00:00.000000Z",
        "expired": True,
    }
    assert second["amount_usd"] == "0.000001" and not second["expired"]

    code, out, _ = cli(capsys, "credits", "show", "ann@example.com", "--config", c)
    assert code == 0 and "balance 0.000001 USD" in out and "(expired)" in out
    header, first_row = out.splitlines()[1:3]
    assert header.split() == ["lot", "source", "ref", "amount", "remaining", "purchased", "expires"]
    assert first_row.split()[1:4] == ["grant", "-", "2.5"]

    code, out, _ = cli(capsys, "credits", "sweep", "--as-of", "2025-01-30", "--config", c)
    assert out.strip() == "expired 0 lots of 0 users: 0 USD"  # not due yet on the 30th
    code, out, _ = cli(capsys, "credits", "sweep", "--as-of", "2025-01-31T00:00:00Z", "--config", c)
    assert out.strip() == "expired 1 lots of 1 users: 2.5 USD"  # due at its expiry exactly

    with sqlite3.connect(config.parent / "credits.db") as db:
        kinds = db.execute("SELECT kind, amount_pico FROM ledger ORDER BY id").fetchall()
        assert kinds == [("grant", 25 * 10**11), ("grant", 10**6), ("expiry", -25 * 10**11)]
        remaining = db.execute("SELECT SUM(remaining_pico) FROM credit_lots").fetchone()[0]
        assert remaining == sum(amount for _, amount in kinds) == 10**6


def test_mistakes_are_clear_errors(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config)
    code, _, err = cli(capsys, "credits", "grant", "nobody@example.com", "1", "--config", c)
    assert code == 1 and "no user 'nobody@example.com'" in err
    assert cli(capsys, "users", "add", "b@example.com", "--config", c)[0] == 0
    for amount, message in (
        ("abc", "is not a USD amount"),
        ("-1", "positive"),
        ("0", "positive"),
        ("0.0000000000001", "more than 12 decimal places"),
        ("1e3", "without an exponent"),
    ):
        code, _, err = cli(capsys, "credits", "grant", "b@example.com", amount, "--config", c)
        assert code == 1 and message in err, (amount, err)
    code, _, err = cli(
        capsys, "credits", "grant", "b@example.com", "1", "--purchased-at", "soon", "--config", c
    )
    assert code == 1 and "--purchased-at" in err and "ISO-8601" in err
    code, _, err = cli(capsys, "credits", "sweep", "--as-of", "later", "--config", c)
    assert code == 1 and "--as-of" in err
    early = ("--purchased-at", "0999-01-01", "--config", c)
    code, _, err = cli(capsys, "credits", "grant", "b@example.com", "1", *early)
    assert code == 1 and "between 1970 and 9000" in err


def test_daily_usage_and_balances_are_one_users_and_use_the_indexes(
    tmp_path: Path, kit: Any
) -> None:
    """What the dashboard reads: sums per day and model, filtered like the usage records, and
    several users' balances at once."""

    async def go() -> None:
        async with kit.store(tmp_path / "d.db") as store:
            ann = await kit.user(store, "ann@example.com")
            bob = await kit.user(store, "bob@example.com")
            await service.grant(store, ann, 2 * USD)
            rows = [
                # (user, key, model, day, prompt, completion, cost)
                (ann, "k1", "a", "2025-03-01T10:00:00.000000Z", 10, 1, 3),
                (ann, "k1", "a", "2025-03-01T23:59:59.999999Z", 20, 2, 4),
                (ann, "k2", "b", "2025-03-01T12:00:00.000000Z", 5, 5, 7),
                (ann, "k2", "a", "2025-03-02T00:00:00.000000Z", 1, 1, 1),
                (bob, "k3", "a", "2025-03-01T10:00:00.000000Z", 99, 99, 99),
            ]
            await store.executemany(
                "INSERT INTO usage (id, request_id, user_id, key_id, principal, model, dialect, "
                "attempts, status, http_status, prompt_tokens, completion_tokens, cost_pico, "
                "charged_pico, billable, total_ms, created_at) "
                "VALUES (?, ?, ?, ?, 'p', ?, 'openai.chat', 1, 'ok', 200, ?, ?, ?, ?, 1, 1, ?)",
                [
                    (f"u{i}", f"r{i}", u, k, m, p, c, cost, cost, at)
                    for i, (u, k, m, at, p, c, cost) in enumerate(rows)
                ],
            )
            query = service.UsageQuery(user_id=ann, start="2025-03-01", end="2025-03-03")
            daily = await service.daily_usage(store, query)
            assert [
                (d.day, d.model, d.requests, d.prompt_tokens, d.charged_pico) for d in daily
            ] == [
                ("2025-03-01", "a", 2, 30, 7),
                ("2025-03-01", "b", 1, 5, 7),
                ("2025-03-02", "a", 1, 1, 1),
            ]
            by_key = service.UsageQuery(user_id=ann, key_id="k2")
            assert [(d.day, d.model) for d in await service.daily_usage(store, by_key)] == [
                ("2025-03-01", "b"),
                ("2025-03-02", "a"),
            ]
            stranger = service.UsageQuery(user_id=bob, key_id="k1")  # another user's key: nothing
            assert await service.daily_usage(store, stranger) == []
            assert await service.balances(store, [ann, bob, "nobody"]) == {ann: 2 * USD}
            for sql, params, index in [
                (
                    "SELECT 1 FROM usage WHERE user_id = ? AND model = ? AND created_at >= ? "
                    "ORDER BY created_at DESC",
                    (ann, "a", "2025"),
                    "usage_user_model",
                ),
                (
                    "SELECT 1 FROM usage WHERE user_id = ? AND created_at >= ? "
                    "ORDER BY created_at DESC",
                    (ann, "2025"),
                    "usage_user",
                ),
            ]:
                plan = await kit.plan(store, sql, params)
                assert index in plan, plan

    asyncio.run(go())
