"""The PostgreSQL store: asyncpg's connection pool behind :class:`lmrouter.storage.Store`.

Transactions behave as on the embedded store, where ``BEGIN IMMEDIATE`` makes writers take
turns: every write (a transaction, or a statement run on its own) first takes one
transaction-scoped advisory lock, so writes from all workers and hosts are serialised and a
plugin's read-then-write inside a transaction sees no other writer in between. Reads never wait
for it. The same lock makes migrations run once when several hosts start at the same moment:
:func:`lmrouter.storage.migrate` checks each step again inside its transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from lmrouter import Row, StorageError
from lmrouter_postgres.translate import translate

if TYPE_CHECKING:
    from lmrouter import Config

# The advisory lock every write takes (any 64-bit number no other program uses: "lmrouter").
WRITE_LOCK = 0x6C6D726F75746572
# Taken first in every transaction, with the database's own commit durability restored for it
# (statements outside a transaction commit without waiting for the disk: see open()).
_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK}), set_config('synchronous_commit', $1, true)"
# What a dropped connection or an unreachable server raises. The store raises StorageError
# instead, which lmrouter.storage.BatchWriter keeps and retries (any other error, it drops the
# operation as bad: a charge written during a restart of the server would be lost).
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # connection lost or refused (class 08)
    asyncpg.exceptions.OperatorInterventionError,  # server shut down, backend terminated (57)
    asyncpg.exceptions.TooManyConnectionsError,
)


def _numeric(text: str) -> int | float:
    """NUMERIC as SQLite would return it: whole numbers as int (``SUM`` of a ``BIGINT``)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with. The store leaves no session state (its
    lock is transaction-scoped, its settings ``SET LOCAL``), so asyncpg's default reset (a round
    trip of ``RESET ALL``, ``UNLISTEN *`` … after every query) is only a transaction left
    open by an error to end."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _setup(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text"
    )


def _count(status: str) -> int:
    """The row count of a command tag (``UPDATE 3``, ``INSERT 0 1``); -1 when it has none, as
    sqlite3's ``rowcount`` for a statement that changes no rows by count (DDL)."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class PostgresStore:
    """``postgresql://USER[:PASS]@HOST[:PORT]/DB[?sslmode=…]`` (also ``postgres://``, and a
    unix-socket directory as ``?host=/run/postgresql``, as libpq writes them)."""

    multiprocess = True  # every process sees the same rows at once (see lmrouter.storage.Store)
    shared = True

    def __init__(self, url: str, config: Config | None = None, *, max_size: int = 10) -> None:
        self.url = url
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        # One writer per process waits for the advisory lock; the others wait here, holding
        # no connection, so readers always find one in the pool.
        self._write = asyncio.Lock()
        self._durable = "on"  # the database's synchronous_commit, for transactions

    async def open(self) -> None:
        """The pool. Its connections commit a statement run outside a transaction without
        waiting for the disk (``synchronous_commit = off``): the one such write is the credits
        admission (a hold), once per request, and a hold lost in a crash of the database server
        costs at most a write-off, never a balance below zero (each charge is capped to what
        the lots hold beyond the other holds). Every transaction (charges, usage, grants,
        purchases, migrations) commits as durably as the database is set to."""
        try:
            conn = await asyncpg.connect(self.url)
            try:
                self._durable = await conn.fetchval("SHOW synchronous_commit")
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.max_size,
                init=_setup,
                reset=_reset,
                server_settings={"synchronous_commit": "off"},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StorageError(f"cannot open {redact(self.url)}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("store used before open()")
        return self._pool

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            row = await self.pool.fetchrow(translate(sql), *params)
        except UNREACHABLE as exc:
            raise self._lost(exc) from exc
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            rows = await self.pool.fetch(translate(sql), *params)
        except UNREACHABLE as exc:
            raise self._lost(exc) from exc
        return [tuple(row) for row in rows]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresTx]:
        try:
            async with self._write, self.pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK, self._durable)
                yield _PostgresTx(conn)
        except UNREACHABLE as exc:
            raise self._lost(exc) from exc

    def _lost(self, exc: BaseException) -> StorageError:
        return StorageError(f"lost the connection to {redact(self.url)}: {exc!r}")

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(2):
                await self.fetchone("SELECT 1")
        except (StorageError, asyncpg.PostgresError, *UNREACHABLE):
            return False
        return True


# SQLite's way to change a table: make the new one, copy the rows (ids included), drop the old,
# rename. The copied ids leave an identity column's sequence behind them: a rename moves it on.
_RENAME = re.compile(r"\s*ALTER\s+TABLE\s+\S+\s+RENAME\s+TO\s+\"?(\w+)\"?\s*$", re.IGNORECASE)
_IDENTITY_COLUMNS = """SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'"""


async def advance_identities(conn: asyncpg.Connection, table: str) -> None:
    """Move ``table``'s identity sequences past the largest id it holds."""
    for (column,) in await conn.fetch(_IDENTITY_COLUMNS, table):
        await conn.execute(
            f'SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX("{column}"), 0) + 1, '
            f'false) FROM "{table}"',
            table,
            column,
        )


class _PostgresTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        count = _count(await self.conn.execute(translate(sql), *params))
        renamed = _RENAME.match(sql)
        if renamed is not None:
            await advance_identities(self.conn, renamed.group(1))
        return count

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(translate(sql), rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = await self.conn.fetchrow(translate(sql), *params)
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in await self.conn.fetch(translate(sql), *params)]
