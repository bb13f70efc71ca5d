"""The sign-in throttle kept in the store (what every worker and host shares) decides as the rule
in memory does, on SQLite and on PostgreSQL, and counts exactly when two processes (two stores
on one database) race on one key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrouter import Store
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter_dashboard import schema
from lmrouter_dashboard.throttle import StoredThrottle, Throttle


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)  # on SQLite and on PostgreSQL


class Clock:
    def __init__(self) -> None:
        self.now = 1_765_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def opened(loop: asyncio.AbstractEventLoop, store: Store, *, make_table: bool = True) -> Store:
    async def go() -> None:
        await store.open()
        for statement in schema.MIGRATIONS[1].split(";\n") if make_table else ():
            await store.execute(statement)

    loop.run_until_complete(go())
    return store


@pytest.fixture
def store(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, make_store: Callable[[Path], Store]
) -> Iterator[Store]:
    store = opened(loop, make_store(tmp_path / "throttle.db"))
    yield store
    loop.run_until_complete(store.close())


examples = iter(range(1_000_000))

events = st.lists(
    st.tuples(
        st.sampled_from(["attempt", "failed", "forgive", "succeeded", "retry_after"]),
        st.sampled_from("ab"),
        st.sampled_from([0, 0, 0, 1, 7, 31, 400, 700]),  # seconds passing first
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events)
def test_stored_throttle_decides_as_the_rule_in_memory(
    loop: asyncio.AbstractEventLoop, store: Store, events: list[tuple[str, str, int]]
) -> None:
    clock = Clock()
    memory = Throttle(4, window=600, base=10, cap=300, clock=clock)
    # a name of its own per example: the examples share the database
    stored = StoredThrottle(store, f"ex{next(examples)}", 4, window=600, base=10, cap=300)
    stored.clock = clock

    async def run() -> None:
        for operation, key, pause in events:
            clock.now += pause
            expected: Any = getattr(memory, operation)(key)
            got = await getattr(stored, operation)(key)
            assert got == expected, (operation, key)
            assert await stored.retry_after(key) == memory.retry_after(key)

    loop.run_until_complete(run())


def test_two_processes_racing_on_one_key_count_exactly(
    loop: asyncio.AbstractEventLoop,
    store: Store,
    store_kind: str,
    tmp_path: Path,
    make_store: Callable[[Path], Store],
) -> None:
    """Twenty attempts at once through two stores (as two hosts would, each with its own pool):
    five pass, as with one. SQLite serves one process: there both go through the one store."""
    if store_kind == "sqlite":
        other = store
    else:
        other = opened(loop, make_store(tmp_path / "throttle.db"), make_table=False)
    try:
        throttles = [StoredThrottle(s, "race", 5, base=60, cap=60) for s in (store, other)]

        async def run() -> list[int]:
            return await asyncio.gather(
                *(throttles[i % 2].attempt("email:ann@example.com") for i in range(20))
            )

        waits = loop.run_until_complete(run())
    finally:
        if other is not store:
            loop.run_until_complete(other.close())
    assert waits.count(0) == 5  # counted and let through to the password check
    assert all(0 < wait <= 60 for wait in waits if wait)
