"""Storage: one small async interface, the embedded SQLite implementation, versioned migrations
and a batch writer that keeps database writes off the request path.

Plugins write portable SQL with ``?`` placeholders (a PostgreSQL store plugin translates them)
and own their tables through ``lmrouter_migrations``. Other URL schemes come from
``lmrouter_store_types``, so a PostgreSQL backend is a plugin that touches no other plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiosqlite
import structlog

if TYPE_CHECKING:
    from lmrouter.config import Config

log = structlog.get_logger("lmrouter.storage")

Row = tuple[Any, ...]


class StorageError(Exception):
    """The store cannot do what was asked (unreachable, disk full, bad URL)."""


class Tx(Protocol):
    """Statements inside one transaction."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """``sql`` once per row. Atomic only inside a transaction: a row that fails may leave
        the ones before it written (or not), so run it in one and let the error roll it back."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Store(Tx, Protocol):
    """A database. Each statement outside :meth:`transaction` commits on its own.

    ``multiprocess``: whether several router processes (workers, hosts) may use the store at
    once and see each other's writes at once. The embedded SQLite store may not: plugins that
    keep state per process refuse ``workers > 1`` on it by reading
    :attr:`lmrouter.config.Config.store_multiprocess`, never the URL."""

    url: str
    multiprocess: bool

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...
    async def ping(self) -> bool: ...


class SQLiteStore:
    """aiosqlite on one connection, WAL mode. One process only: several router workers need a
    server database (the PostgreSQL plugin). Transactions are ``BEGIN IMMEDIATE`` and
    serialised here, so they never deadlock on SQLite's lock upgrade."""

    multiprocess = False

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != Path(":memory:"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Accounts, key hashes and the ledger are nobody else's business: a new database is
            # made 0600, and SQLite gives its -wal and -shm files the database file's mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=NORMAL",  # WAL + NORMAL: durable across process crashes
                "PRAGMA foreign_keys=ON",
                "PRAGMA busy_timeout=5000",
                # deleted personal data is zeroed, not left in free space (some builds' default)
                "PRAGMA secure_delete=ON",
            ):
                await self._db.execute(pragma)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("store used before open()")
        return self._db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            cursor = await self.db.execute(sql, params)
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await _SQLiteTx(self.db).fetchone(sql, params)  # reads need no lock in WAL

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await _SQLiteTx(self.db).fetchall(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            try:
                # BEGIN inside the try: a caller cancelled while BEGIN waits for aiosqlite's
                # thread still has it run (queued statements always run, in order), and the
                # ROLLBACK queued after it keeps the connection from staying in a transaction.
                await self.db.execute("BEGIN IMMEDIATE")
                yield _SQLiteTx(self.db)
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # BEGIN itself failed
                    await self.db.execute("ROLLBACK")
                raise
            else:
                await self.db.execute("COMMIT")

    async def ping(self) -> bool:
        try:
            await self.fetchone("SELECT 1")
        except (sqlite3.Error, StorageError):
            return False
        return True


class _SQLiteTx:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self.db.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        parts = _insert_parts(sql)
        if parts is None:
            await self.db.executemany(sql, rows)
            return
        # SQLite releases the GIL around every step, and executemany steps once per row: with
        # the event loop busy, the writer thread then waits for the GIL once per row, and the
        # two threads hand it back and forth hundreds of times a batch. One INSERT of many rows
        # steps once. Measured with the app driven in-process: accounts + credits cost 31 µs
        # of CPU a request over the bare router row by row, 16 µs in chunks of 32 rows, and
        # more again in chunks of 64 or more (why is not established).
        head, row, tail, width = parts
        rows = rows if isinstance(rows, Sequence) else list(rows)
        most = max(1, min(_MAX_ROWS, _MAX_PARAMS // width))
        start = 0
        while start < len(rows):
            # powers of two, largest first: a few statement texts, each prepared once
            size = 1 << (min(len(rows) - start, most).bit_length() - 1)
            chunk = rows[start : start + size]
            if any(len(values) != width for values in chunk):
                raise sqlite3.ProgrammingError(f"every row needs {width} values: {sql}")
            params = [value for values in chunk for value in values]
            await self.db.execute(_many_rows(head, row, tail, size), params)
            start += size

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self.db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
            return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self.db.execute(sql, params) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]


# Parameters one statement may bind: SQLite's default limit (999 before 3.32).
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_MAX_ROWS = 32  # rows per INSERT (see _SQLiteTx.executemany)
_INSERT = re.compile(
    r"(\s*INSERT\b.*?\bVALUES\s*)(\((?:[^()']|'[^']*')*\))(.*)", re.IGNORECASE | re.DOTALL
)


@functools.lru_cache(maxsize=64)
def _insert_parts(sql: str) -> tuple[str, str, str, int] | None:
    """``INSERT … VALUES (row) [tail]`` as head, row, tail and the row's number of ``?``;
    None for any other statement (functions or numbered parameters in the row included)."""
    found = _INSERT.fullmatch(sql)
    if found is None:
        return None
    head, row, tail = found.groups()
    plain = re.sub(r"'[^']*'", "''", row)
    if re.search(r"\?\d|[:@$]\w", plain) or "?" not in plain:
        return None
    return head, row, tail, plain.count("?")


@functools.lru_cache(maxsize=256)
def _many_rows(head: str, row: str, tail: str, count: int) -> str:
    return f"{head}{', '.join([row] * count)}{tail}"


# -- opening and migrating ----------------------------------------------------------------------

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS lmrouter_migrations (
    namespace TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (namespace, version)
)"""


# What makes a store for a URL scheme a plugin provides: ``factory(url, config)``.
StoreFactory = Callable[[str, "Config"], "Store"]
# A plugin's schema: its namespace and its steps, in order (``lmrouter_migrations``' answer).
Migrations = tuple[str, Sequence[str]]


def store_at(config: Config, types: Mapping[str, StoreFactory]) -> Store:
    """The store named by ``[storage] url``: ``sqlite:///relative/to/config.db``,
    ``sqlite:////absolute.db``, ``sqlite://:memory:``, or a scheme in ``types`` (what the
    plugins provide, :func:`lmrouter.stores.store_types`)."""
    url = config.core.storage.url
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(f"[storage] url {url!r} has no scheme (e.g. sqlite:///lmrouter.db)")
    if scheme == "sqlite":
        if rest == ":memory:":
            return SQLiteStore(url, Path(":memory:"))
        path = Path(rest[1:] if rest.startswith("/") else rest)
        if not path.is_absolute():
            path = config.base_dir / path
        return SQLiteStore(url, path)
    factory = types.get(scheme)
    if factory is not None:
        return factory(url, config)
    raise StorageError(f"[storage] url scheme {scheme!r} is not installed (try sqlite:///…)")


async def apply_migrations(store: Store, schemas: Iterable[Migrations]) -> list[tuple[str, int]]:
    """Apply the schema steps not applied yet, each in its own transaction, in the order of
    ``schemas`` (the plugins', :func:`lmrouter.stores.migrations`)."""
    await store.execute(_MIGRATIONS_TABLE)
    applied: list[tuple[str, int]] = []
    for namespace, steps in schemas:
        done = {
            row[0]
            for row in await store.fetchall(
                "SELECT version FROM lmrouter_migrations WHERE namespace = ?", (namespace,)
            )
        }
        for version, sql in enumerate(steps, 1):
            if version in done:
                continue
            async with store.transaction() as tx:
                # Several workers start at once: another may have applied it since we looked.
                if await tx.fetchone(
                    "SELECT 1 FROM lmrouter_migrations WHERE namespace = ? AND version = ?",
                    (namespace, version),
                ):
                    continue
                for statement in _statements(sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO lmrouter_migrations (namespace, version) VALUES (?, ?)",
                    (namespace, version),
                )
            applied.append((namespace, version))
            log.info("migration applied", namespace=namespace, version=version)
    return applied


async def migrate(store: Store, pm: Any) -> list[tuple[str, int]]:
    """The old spelling of :func:`lmrouter.migrate` (the plugins' migrations), kept while plugin
    tests import it from here; new code imports ``lmrouter.migrate``."""
    from lmrouter.stores import migrate as migrate_plugins  # storage itself knows no plugins

    return await migrate_plugins(store, pm)


def _statements(sql: str) -> list[str]:
    """A step may hold several statements separated by ``;`` at line ends."""
    return [part.strip() for part in sql.split(";\n") if part.strip().rstrip(";")]


# -- batching writes ----------------------------------------------------------------------------

Operation = Callable[[Tx], Awaitable[None]]
# Failures that may pass (disk full, database busy): retried, never dropped.
TRANSIENT: tuple[type[BaseException], ...] = (sqlite3.OperationalError, OSError, StorageError)


class BatchWriter:
    """Collects write operations and runs them together in one transaction every ``interval``
    seconds (or sooner once ``max_batch`` wait), off the request path. ``stop()`` flushes.

    A batch is atomic: after a crash, either all of its operations happened or none did. What a
    crash can lose is the last interval's batch, never part of one. A batch whose outcome is
    unknown (a commit cut short) runs again, so operations must be idempotent."""

    def __init__(self, store: Store, *, interval: float = 0.05, max_batch: int = 1000) -> None:
        self.store = store
        self.interval = interval
        self.max_batch = max_batch
        self._pending: list[Operation] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing = 0  # batches taken from _pending whose transaction has not ended
        self._none_writing = asyncio.Event()  # set exactly when _writing is 0
        self._none_writing.set()
        self.failures = 0

    def add(self, operation: Operation) -> None:
        self._pending.append(operation)
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lmrouter-batch-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        """Write everything added so far, and wait for it: for the batches another flush took
        a moment before too (the background one), so that a read right after sees them all."""
        await self._write_pending()
        while self._writing:  # another flush's batch, still in its transaction
            await self._none_writing.wait()
            await self._write_pending()  # added meanwhile, say by an operation of that batch

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self._writing += 1
            self._none_writing.clear()
            try:
                async with self.store.transaction() as tx:
                    for operation in batch:
                        await operation(tx)
            except TRANSIENT:
                # Keep the batch: a full disk or a busy database may clear up.
                self.failures += 1
                self._pending[:0] = batch
                log.exception("batch write failed; will retry", operations=len(batch))
                raise
            except Exception:
                # One bad operation must not hold the others back: run each on its own.
                self.failures += 1
                await self._one_by_one(batch)
            except BaseException:
                # Cancelled mid-write (stop() during a background flush): the transaction rolled
                # back, so the batch goes back for the flush that stop() runs next. (Were the
                # commit done after all, the operations run again: they must be idempotent.)
                self._pending[:0] = batch
                raise
            finally:
                self._writing -= 1
                if not self._writing:
                    self._none_writing.set()

    async def _one_by_one(self, batch: list[Operation]) -> None:
        for index, operation in enumerate(batch):
            try:
                async with self.store.transaction() as tx:
                    await operation(tx)
            except TRANSIENT:
                self._pending[:0] = batch[index:]
                raise
            except Exception:
                log.exception("write operation failed and was dropped", operation=operation)
            except BaseException:
                self._pending[:0] = batch[index:]
                raise

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing is being written: every operation added so far has ended
        (committed, or failed for good and logged)."""
        return not self._pending and not self._writing

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            with contextlib.suppress(Exception):  # logged in flush; retried next round
                await self.flush()
