"""The hook: the store classes for ``postgresql://`` and ``postgres://`` URLs."""

from __future__ import annotations

from typing import Any

from lmrouter import hookimpl
from lmrouter_postgres.store import PostgresStore


class PostgresPlugin:
    @hookimpl
    def lmrouter_store_types(self) -> dict[str, Any]:
        return {"postgresql": PostgresStore, "postgres": PostgresStore}
