"""A real SQLite file with the accounts schema, for the service and the authenticator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lmrouter.plugins import PluginManager
from lmrouter.storage import SQLiteStore, migrate
from lmrouter_accounts import AccountsPlugin, service


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "accounts.db"


@pytest.fixture
def db(db_path: Path) -> Callable[[], contextlib.AbstractAsyncContextManager[SQLiteStore]]:
    """``async with db() as store``: the file opened and migrated in the running loop."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(f"sqlite:///{db_path}", db_path)
        await store.open()
        pm = PluginManager()
        pm.register(AccountsPlugin())
        await migrate(store, pm)
        try:
            yield store
        finally:
            await store.close()

    return opened


@pytest.fixture(autouse=True)
def no_leftover_subscribers() -> Iterator[None]:
    yield
    leftover: list[Any] = list(service._subscribers)
    service._subscribers.clear()
    assert not leftover, "an Authenticator was not stopped"
