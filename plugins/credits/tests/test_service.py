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
        ("0.0000000000001", "finer than 1e-12"),
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
