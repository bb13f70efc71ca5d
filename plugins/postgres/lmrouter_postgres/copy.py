"""``lmrouter store copy --to postgresql://…``: an embedded SQLite deployment's whole database
(users, keys, BYOK keys, lots, ledger, usage, payments: every plugin's tables) into an empty
PostgreSQL database, then a check that every table holds the same rows on both sides (so every
balance and every ledger sum match).

Run it with the router stopped: it reads the SQLite file as it is. The target gets the schema
from the same migrations the router runs, then every row in one transaction: an error leaves it
as empty as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from lmrouter import ConfigError, SQLiteStore, find_config, load, migrate, store_for
from lmrouter_postgres.store import PostgresStore, advance_identities, redact

if TYPE_CHECKING:
    from lmrouter import PluginManager

MIGRATIONS = "lmrouter_migrations"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    common = subparsers.common  # type: ignore[attr-defined]  # gives each leaf --config
    store = subparsers.add_parser("store", help="move the database")
    actions = store.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = "copy the embedded SQLite database into an empty PostgreSQL database, and verify it"
    copy = actions.add_parser("copy", parents=[common], help=text, description=text)
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST/DB")
    copy.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    config, pm = load(find_config(args.config).resolve())
    source = store_for(config, pm)
    if not isinstance(source, SQLiteStore):
        raise ConfigError(f"store copy reads an embedded sqlite:// store, not {source.url}")
    if not args.to.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"--to must be a postgresql:// URL, not {args.to!r}")
    try:
        tables, rows = asyncio.run(copy(source, PostgresStore(args.to), pm))
    except CopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"copied and verified {rows} rows in {tables} tables to {redact(args.to)}")
    print(f'now set [storage] url = "{redact(args.to)}" (with its password) and start the router')
    return 0


class CopyError(Exception):
    """The copy was refused or did not verify."""


async def copy(source: SQLiteStore, target: PostgresStore, pm: PluginManager) -> tuple[int, int]:
    """Every table of ``source`` into ``target`` (empty), verified. Returns (tables, rows)."""
    await source.open()
    await target.open()
    try:
        if await target.fetchone("SELECT to_regclass(?)", (MIGRATIONS,)) != (None,):
            raise CopyError(f"{redact(target.url)} is not empty: copy into a new database")
        await migrate(source, pm)  # the same schema version on both sides
        await migrate(target, pm)
        tables = await _tables(source)
        total = 0
        async with target.transaction() as tx:
            for table, _ in tables:
                # the migrations' own rows (state counters) give way to the source's
                await tx.execute(f'DELETE FROM "{table}"')
            for table, columns in reversed(tables):  # referenced tables first
                rows = await source.fetchall(f'SELECT {_list(columns)} FROM "{table}"')
                marks = ", ".join("?" * len(columns))
                insert = f'INSERT INTO "{table}" ({_list(columns)}) VALUES ({marks})'
                if rows:
                    await tx.executemany(insert, rows)
                await advance_identities(tx.conn, table)  # type: ignore[attr-defined]
                total += len(rows)
        for table, columns in tables:
            await _verify(source, target, table, columns)
        return len(tables), total
    finally:
        await target.close()
        await source.close()


async def _tables(source: SQLiteStore) -> list[tuple[str, list[str]]]:
    """Every table but the migrations' record, those that refer to others before them (the
    order to empty them in; reversed, the order to fill them in)."""
    names = [
        name
        for (name,) in await source.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
        if name != MIGRATIONS
    ]
    refers: dict[str, set[str]] = {}
    columns: dict[str, list[str]] = {}
    for name in names:
        keys = await source.fetchall(f"SELECT * FROM pragma_foreign_key_list('{name}')")
        refers[name] = {row[2] for row in keys if row[2] != name}
        info = await source.fetchall(f"SELECT name FROM pragma_table_info('{name}')")
        columns[name] = [row[0] for row in info]
    filled: list[str] = []  # referenced before referring
    while len(filled) < len(names):
        ready = [n for n in names if n not in filled and refers[n] <= {*filled, *_missing(refers)}]
        if not ready:
            raise CopyError(
                f"tables refer to each other in a cycle: {sorted(set(names) - set(filled))}"
            )
        filled.extend(ready)
    return [(name, columns[name]) for name in reversed(filled)]


def _missing(refers: dict[str, set[str]]) -> set[str]:
    """Tables referred to that do not exist (SQLite allows it): no order to keep for them."""
    return {ref for refs in refers.values() for ref in refs} - set(refers)


async def _verify(
    source: SQLiteStore, target: PostgresStore, table: str, columns: list[str]
) -> None:
    sql = f'SELECT {_list(columns)} FROM "{table}"'
    mine, theirs = await asyncio.gather(source.fetchall(sql), target.fetchall(sql))
    if sorted(map(_key, mine)) != sorted(map(_key, theirs)):
        raise CopyError(
            f"table {table} differs after the copy ({len(mine)} rows, {len(theirs)} copied)"
        )


def _key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(repr(value) for value in row)


def _list(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)
