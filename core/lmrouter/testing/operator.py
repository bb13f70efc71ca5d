"""What an operator does beside a running router, for tests: the ``lmrouter`` command on its
config, and a look straight into its database (a SQLite file, or a server database by URL)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import re
import sqlite3
from pathlib import Path
from typing import Any
from unittest import mock


def cli(config_path: Path, *args: str, stdin: str = "") -> str:
    """``lmrouter ARGS --config CONFIG_PATH`` in this process; its stdout. A non-zero exit fails
    the test with what the command printed on stderr."""
    from lmrouter.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        mock.patch("sys.stdin", io.StringIO(stdin)),
    ):
        code = main([*args, "--config", str(config_path)])
    assert code == 0, err.getvalue()
    return out.getvalue()


def user_with_key(config_path: Path, email: str, *key_args: str) -> str:
    """A new user and an API key for them: the secret, the last line ``keys create`` prints."""
    cli(config_path, "users", "add", email)
    key = cli(config_path, "keys", "create", email, *key_args).strip().splitlines()[-1]
    assert re.fullmatch(r"sk-lmr-\S+", key), key
    return key


def query(db: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read on a connection of their own, as another process would (waits out a write):
    from a SQLite file, or from a server database's URL through the store plugin installed for
    its scheme."""
    if isinstance(db, str) and "://" in db and not db.startswith("sqlite:"):
        return _query_server(db, sql, params)
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


def _query_server(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    from lmrouter import plugins

    scheme = url.partition("://")[0]
    found = [t[scheme] for t in plugins.build().hook.lmrouter_store_types() if t and scheme in t]
    if not found:
        raise ValueError(f"no store plugin installed for {scheme}://")

    async def read() -> list[tuple[Any, ...]]:
        store = found[0](url, None)
        await store.open()
        try:
            return await store.fetchall(sql, params)
        finally:
            await store.close()

    # in a thread of its own: callable from inside a running event loop as well
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()
