"""The storage layer: SQLite on a real file, migrations, transactions and the batch writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter import hookimpl, storage
from lmrouter.config import validate
from lmrouter.plugins import PluginManager
from lmrouter.storage import BatchWriter, SQLiteStore, StorageError
from lmrouter.stores import migrate, store_for


class Schema:
    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    @hookimpl
    def lmrouter_migrations(self) -> tuple[str, list[str]]:
        return "demo", self.steps


def manager(*plugins: Any) -> PluginManager:
    pm = PluginManager()
    for plugin in plugins:
        pm.register(plugin)
    return pm


STEPS = [
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)",
    "ALTER TABLE notes ADD COLUMN n INTEGER NOT NULL DEFAULT 0;\nCREATE INDEX notes_n ON notes (n)",
]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_storage_takes_the_schemas_as_data(tmp_path: Path) -> None:
    """No plugin manager below lmrouter.stores: the steps themselves, in the given order."""

    async def go() -> list[tuple[str, int]]:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        try:
            applied = await storage.apply_migrations(store, [("a", STEPS[:1]), ("b", ["SELECT 1"])])
            assert await storage.apply_migrations(store, [("a", STEPS)]) == [("a", 2)]
            return applied
        finally:
            await store.close()

    assert run(go()) == [("a", 1), ("b", 1)]


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    async def go() -> list[tuple[str, int]]:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        first = await migrate(store, manager(Schema(STEPS[:1])))
        again = await migrate(store, manager(Schema(STEPS)))
        await store.execute("INSERT INTO notes (text, n) VALUES (?, ?)", ("a", 1))
        assert await store.fetchone("SELECT text, n FROM notes") == ("a", 1)
        assert await migrate(store, manager(Schema(STEPS))) == []
        await store.close()
        return first + again

    assert run(go()) == [("demo", 1), ("demo", 2)]
    with sqlite3.connect(tmp_path / "x.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_workers_migrating_one_file_at_once_apply_each_step_once(tmp_path: Path) -> None:
    """Several router workers start together on one database: each step runs once, and no
    worker fails on a table another has just made."""

    async def go() -> list[list[tuple[str, int]]]:
        stores = [SQLiteStore("sqlite:///x", tmp_path / "x.db") for _ in range(4)]
        for store in stores:
            await store.open()
        try:
            return list(await asyncio.gather(*(migrate(s, manager(Schema(STEPS))) for s in stores)))
        finally:
            for store in stores:
                await store.close()

    applied = run(go())
    assert sorted(step for steps in applied for step in steps) == [("demo", 1), ("demo", 2)]
    with sqlite3.connect(tmp_path / "x.db") as db:
        assert db.execute("SELECT COUNT(*) FROM lmrouter_migrations").fetchone() == (2,)


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    async def go() -> list[Any]:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await migrate(store, manager(Schema(STEPS)))
        with pytest.raises(sqlite3.IntegrityError):
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO notes (text) VALUES ('a')")
                await tx.execute("INSERT INTO notes (text) VALUES ('a')")
        rows = await store.fetchall("SELECT text FROM notes")
        await store.close()
        return rows

    assert run(go()) == []


def test_batch_writer_is_atomic_isolates_bad_ops_and_flushes_on_stop(tmp_path: Path) -> None:
    async def go() -> tuple[list[Any], int]:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await migrate(store, manager(Schema(STEPS)))
        writer = BatchWriter(store, interval=10)  # only stop() will flush
        writer.start()

        def insert(text: str) -> Any:
            async def op(tx: Any) -> None:
                await tx.execute("INSERT INTO notes (text) VALUES (?)", (text,))

            return op

        for text in ("a", "b", "a", "c"):  # the second "a" violates UNIQUE
            writer.add(insert(text))
        assert await store.fetchall("SELECT text FROM notes") == []  # nothing on the hot path
        await writer.stop()
        rows = await store.fetchall("SELECT text FROM notes ORDER BY text")
        await store.close()
        return rows, writer.pending

    rows, pending = run(go())
    assert rows == [("a",), ("b",), ("c",)]
    assert pending == 0


def test_flush_waits_for_the_batch_the_background_flush_is_writing(tmp_path: Path) -> None:
    """A reader flushes, then reads: what was added before must be there even when the
    background flush had already taken it and was still in its transaction."""

    async def go() -> None:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await migrate(store, manager(Schema(STEPS)))
        writer = BatchWriter(store, interval=3600)
        taken, release = asyncio.Event(), asyncio.Event()

        async def slow(tx: Any) -> None:
            taken.set()
            await release.wait()
            await tx.execute("INSERT INTO notes (text) VALUES ('kept')")

        writer.add(slow)
        background = asyncio.create_task(writer.flush())  # as the writer's own task would
        await taken.wait()
        reader = asyncio.create_task(writer.flush())  # nothing pending, one batch writing
        for _ in range(20):
            await asyncio.sleep(0)  # every ready callback runs: the reader must still wait
        assert not reader.done()
        release.set()
        await reader
        assert await store.fetchall("SELECT text FROM notes") == [("kept",)]
        await background
        await store.close()

    run(go())


def test_a_transaction_cancelled_while_it_begins_leaves_the_connection_usable(
    tmp_path: Path,
) -> None:
    async def go() -> list[Any]:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await migrate(store, manager(Schema(STEPS)))

        async def write() -> None:
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO notes (text) VALUES ('never')")

        task = asyncio.create_task(write())
        await asyncio.sleep(0)  # the task now waits for BEGIN to run in aiosqlite's thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with store.transaction() as tx:  # not "a transaction within a transaction"
            await tx.execute("INSERT INTO notes (text) VALUES ('next')")
        rows = await store.fetchall("SELECT text FROM notes")
        await store.close()
        return rows

    assert run(go()) == [("next",)]


def test_batch_writer_stopped_mid_write_loses_nothing(tmp_path: Path) -> None:
    """stop() while the background task is inside a batch's transaction: the cancelled batch
    rolls back and is written by stop()'s own flush, not dropped."""

    async def go() -> list[Any]:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await migrate(store, manager(Schema(STEPS)))
        writer = BatchWriter(store, interval=0.01)
        inside = asyncio.Event()

        async def slow(tx: Any) -> None:
            await tx.execute("INSERT INTO notes (text) VALUES ('slow')")
            inside.set()
            await asyncio.sleep(0.2)  # a long batch: stop() arrives in the middle

        async def quick(tx: Any) -> None:
            await tx.execute("INSERT OR IGNORE INTO notes (text) VALUES ('quick')")

        writer.start()
        writer.add(quick)
        writer.add(slow)
        await inside.wait()
        await writer.stop()
        rows = await store.fetchall("SELECT text FROM notes ORDER BY text")
        await store.close()
        return rows

    assert run(go()) == [("quick",), ("slow",)]


def test_batch_writer_keeps_everything_when_the_disk_fails(tmp_path: Path) -> None:
    async def go() -> int:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()

        async def full_disk(tx: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        writer = BatchWriter(store)
        writer.add(full_disk)
        writer.add(full_disk)
        with pytest.raises(sqlite3.OperationalError):
            await writer.flush()
        await store.close()
        return writer.pending

    assert run(go()) == 2, "a transient failure loses nothing"


def test_store_urls(tmp_path: Path) -> None:
    config = validate(
        {"storage": {"url": "sqlite:///data/r.db"}},
        path=tmp_path / "c.toml",
        sections={},
        provider_types={},
    )
    store = store_for(config, manager())
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "data" / "r.db"
    config.core.storage.url = "postgresql://db/lmrouter"
    with pytest.raises(StorageError, match="postgresql"):
        store_for(config, manager())


# -- executemany: an INSERT runs as multi-row statements -----------------------------------------

MANY_TABLE = "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, kind TEXT NOT NULL, f REAL)"
MANY_INSERT = "INSERT INTO t (k, v, kind, f) VALUES (?, ?, 'x(y)', ?) ON CONFLICT (k) DO NOTHING"
many_rows = st.lists(
    st.tuples(
        st.integers(0, 40),  # small keys: conflicts within a chunk and across chunks
        st.one_of(st.none(), st.text(max_size=5)),
        st.floats(allow_nan=False),
    ),
    max_size=1200,  # past _MAX_ROWS: several chunks of different sizes
)


@settings(max_examples=30, deadline=None)
@given(rows=many_rows)
def test_executemany_inserts_what_row_by_row_inserts(tmp_path_factory: Any, rows: Any) -> None:
    path = tmp_path_factory.mktemp("many") / "x.db"

    async def go() -> list[Any]:
        store = SQLiteStore("sqlite:///x", path)
        await store.open()
        try:
            await store.execute(MANY_TABLE)
            async with store.transaction() as tx:
                await tx.executemany(MANY_INSERT, iter(rows))  # any iterable
            return await store.fetchall("SELECT * FROM t ORDER BY k")
        finally:
            await store.close()

    expected = sqlite3.connect(":memory:")
    expected.execute(MANY_TABLE)
    expected.executemany(MANY_INSERT, rows)
    assert run(go()) == expected.execute("SELECT * FROM t ORDER BY k").fetchall()


def test_executemany_checks_every_rows_width_and_is_atomic_in_a_transaction(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await store.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        insert = "INSERT INTO t (k, v) VALUES (?, ?)"
        with pytest.raises(sqlite3.ProgrammingError, match="2 values"):
            async with store.transaction() as tx:  # a short row would shift every value after it
                await tx.executemany(insert, [(1, "a"), (2,), (3, "c")])
        with pytest.raises(sqlite3.IntegrityError):
            async with store.transaction() as tx:
                await tx.executemany(insert, [(k, "v") for k in range(600)] + [(700, None)])
        assert await store.fetchone("SELECT COUNT(*) FROM t") == (0,)
        await store.executemany("UPDATE t SET v = ? WHERE k = ?", [])  # not an INSERT: as before
        await store.close()

    run(go())
