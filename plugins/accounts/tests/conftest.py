"""A real database with the accounts schema, for the service and the authenticator: a SQLite
file, and again a PostgreSQL database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lmrouter.plugins import PluginManager
from lmrouter.storage import Store, migrate
from lmrouter.testing.operator import query
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter_accounts import AccountsPlugin, service


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "accounts.db"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)  # every test using `db` runs on SQLite and on PostgreSQL


@pytest.fixture
def db(
    db_path: Path, make_store: Callable[[Path], Store]
) -> Callable[[], contextlib.AbstractAsyncContextManager[Store]]:
    """``async with db() as store``: the database opened and migrated in the running loop."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Store]:
        store = make_store(db_path)
        await store.open()
        pm = PluginManager()
        pm.register(AccountsPlugin())
        await migrate(store, pm)
        try:
            yield store
        finally:
            await store.close()

    return opened


@pytest.fixture
def external(
    store_kind: str, db_path: Path, make_store: Callable[[Path], Store]
) -> Callable[..., Awaitable[None]]:
    """``await external(*statements)``: a change made by another process (the CLI), in one
    transaction on a connection of its own."""

    async def on_sqlite(*statements: str) -> None:
        # In a thread, so the event loop can finish a write transaction the router has open
        # (blocking the loop here would wait on that writer while stopping it from committing).
        def change() -> None:
            with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
                conn.execute("BEGIN IMMEDIATE")  # waits for the router's writer, not failing
                for statement in statements:
                    conn.execute(statement)
                conn.execute("COMMIT")

        await asyncio.to_thread(change)

    async def on_server(*statements: str) -> None:
        other = make_store(db_path)
        await other.open()
        try:
            async with other.transaction() as tx:
                for statement in statements:
                    await tx.execute(statement)
        finally:
            await other.close()

    return on_sqlite if store_kind == "sqlite" else on_server


@pytest.fixture
def read_rows(
    store_kind: str, db_path: Path, make_store: Callable[[Path], Store]
) -> Callable[..., list[tuple[Any, ...]]]:
    """``read_rows(sql, params)``: rows read on a connection of their own, as another process
    would, from inside or outside the test's event loop."""
    if store_kind == "sqlite":
        return functools.partial(query, db_path)

    def read(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async def go() -> list[tuple[Any, ...]]:
            other = make_store(db_path)
            await other.open()
            try:
                return await other.fetchall(sql, params)
            finally:
                await other.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    return read


@pytest.fixture
def stored_bytes(
    store_kind: str, db_path: Path, make_store: Callable[[Path], Store], request: Any
) -> Callable[[], bytes]:
    """Everything the database holds, as bytes: SQLite's file and its WAL; a dump of the
    PostgreSQL database."""
    if store_kind == "sqlite":
        return lambda: b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    cluster = request.getfixturevalue("postgres_cluster")
    url = make_store(db_path).url.partition("?")[0]  # the whole database: every schema
    return lambda: (
        subprocess.run(
            [str(cluster.bin / "pg_dump"), "-d", url], capture_output=True, check=True
        ).stdout
    )


@pytest.fixture(autouse=True)
def no_leftover_subscribers() -> Iterator[None]:
    yield
    leftover: list[Any] = list(service._subscribers)
    service._subscribers.clear()
    assert not leftover, "an Authenticator was not stopped"
