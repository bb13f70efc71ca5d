"""What the credits tests share: a real database (a SQLite file, and again PostgreSQL) with the
accounts and credits schemas, users made by the accounts service, and requests shaped the way
the pipeline hands them to hooks."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lmrouter.config import Model, Price, Route
from lmrouter.context import Outcome, Principal, RequestContext
from lmrouter.plugins import PluginManager
from lmrouter.storage import SQLiteStore, Store, migrate
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.usage import Usage
from lmrouter_accounts import AccountsPlugin
from lmrouter_accounts import service as accounts
from lmrouter_credits import Credits
from lmrouter_credits.config import CreditsConfig
from lmrouter_credits.meter import Meter

# $1 per 1M input tokens, $2 per 1M output tokens: 1e6 and 2e6 pico-USD a token
PRICE = Price(input=Decimal(1), output=Decimal(2))
_ids = itertools.count(1)


class Kit:
    # what the database raises when a constraint refuses a row
    integrity_error: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    @staticmethod
    def make_store(path: Path) -> Store:
        return SQLiteStore(f"sqlite:///{path}", path)

    @classmethod
    @contextlib.asynccontextmanager
    async def store(cls, path: Path) -> AsyncIterator[Store]:
        """The database for ``path`` opened and migrated (accounts first: credits refers to its
        users): a SQLite file, or a PostgreSQL database of its own."""
        store = cls.make_store(path)
        await store.open()
        pm = PluginManager()
        pm.register(Credits())
        pm.register(AccountsPlugin())
        await migrate(store, pm)
        try:
            yield store
        finally:
            await store.close()

    @staticmethod
    async def indexes(store: Store, table: str) -> set[str]:
        """The names of ``table``'s indexes (those of constraints left out)."""
        if isinstance(store, SQLiteStore):
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
        else:
            sql = (
                "SELECT indexname FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = ? "
                "AND indexname NOT LIKE '%pkey%'"
            )
        return {
            name
            for (name,) in await store.fetchall(sql, (table,))
            if not name.startswith("sqlite_")
        }

    @staticmethod
    async def plan(store: Store, sql: str, params: tuple[Any, ...]) -> str:
        """How the database runs ``sql``: SQLite's query plan; PostgreSQL's with sequential
        scans ruled out (on a few rows it would scan, whatever the indexes)."""
        if isinstance(store, SQLiteStore):
            rows = await store.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
        else:
            async with store.transaction() as tx:
                await tx.execute("SET LOCAL enable_seqscan = off")
                rows = await tx.fetchall(f"EXPLAIN {sql}", params)
        return " ".join(str(row) for row in rows)

    @staticmethod
    async def user(store: Store, email: str) -> str:
        return (await accounts.create_user(store, email)).id

    @staticmethod
    def meter(store: Store, **settings: Any) -> Meter:
        """A meter whose writes run only when the test flushes (no background tasks)."""
        return Meter(store, msgspec.convert(settings, CreditsConfig))

    @staticmethod
    def model(*providers: str, price: Price = PRICE, max_output_tokens: int | None = None) -> Model:
        routes = [
            Route(provider=p, model=f"{p}-model", price=price) for p in (providers or ("up",))
        ]
        return Model(id="m", routes=routes, max_output_tokens=max_output_tokens)

    @staticmethod
    def principal(user_id: str | None, *, byok: frozenset[str] = frozenset()) -> Principal:
        if user_id is None:
            return Principal(id="operator:0", kind="operator", is_admin=True)
        return Principal(
            id=f"user:{user_id}",
            kind="user",
            user_id=user_id,
            key_id=f"key-{user_id}",
            byok_providers=byok,
        )

    @staticmethod
    def ctx(
        model: Model, principal: Principal, *, max_output_tokens: int | None, prompt_chars: int
    ) -> RequestContext:
        return RequestContext(
            gateway=None,  # type: ignore[arg-type]
            request_id=f"req-{next(_ids)}",
            dialect="openai.chat",
            headers={},
            body=b"",
            doc={},
            model=model,
            principal=principal,
            output_limit=max_output_tokens,
            prompt_chars=prompt_chars,
        )

    @staticmethod
    def outcome(ctx: RequestContext, usage: Usage, *, status: str = "ok") -> Outcome:
        route = ctx.model.routes[0]
        ctx.attempts.append(None)  # type: ignore[arg-type]
        return Outcome(
            status,  # type: ignore[arg-type]
            200 if status == "ok" else 499,
            usage=usage,
            cost_pico=route.rates.cost(usage),
            route=route,
            total_ms=1.0,
        )

    @staticmethod
    async def sums(store: Store) -> dict[str, tuple[int, int]]:
        """Per user: (sum of the ledger, sum of the lots' remainders)."""
        ledger = dict(
            await store.fetchall("SELECT user_id, SUM(amount_pico) FROM ledger GROUP BY 1")
        )
        lots = dict(
            await store.fetchall("SELECT user_id, SUM(remaining_pico) FROM credit_lots GROUP BY 1")
        )
        return {u: (ledger.get(u, 0), lots.get(u, 0)) for u in set(ledger) | set(lots)}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)  # every test using `kit` runs on SQLite and on PostgreSQL


@pytest.fixture
def kit(store_kind: str, make_store: Callable[[Path], Store]) -> type[Kit]:
    errors = Kit.integrity_error
    if store_kind == "postgres":
        import asyncpg

        errors = (asyncpg.IntegrityConstraintViolationError,)
    return type(
        "StoreKit", (Kit,), {"make_store": staticmethod(make_store), "integrity_error": errors}
    )


@pytest.fixture
def pg(postgres_cluster: Any, request: pytest.FixtureRequest) -> type[Kit]:
    """The kit on PostgreSQL only, one database per test that every path names: for tests of
    holds shared by several processes (several stores on the same database)."""
    from lmrouter_postgres import PostgresStore

    url = postgres_cluster.database()
    request.addfinalizer(lambda: postgres_cluster.drop(url))
    return type("PgKit", (Kit,), {"make_store": staticmethod(lambda path: PostgresStore(url))})
