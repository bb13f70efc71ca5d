"""LMRouter plugin: PostgreSQL as the store, for several workers and hosts.

``[storage] url = "postgresql://USER[:PASS]@HOST[:PORT]/DB"`` (or ``postgres://``). Every
plugin's portable SQL runs through one translation layer (:mod:`lmrouter_postgres.translate`);
writes are serialised across all processes by an advisory lock, as SQLite serialises them
(:mod:`lmrouter_postgres.store`).
"""

from lmrouter_postgres.plugin import PostgresPlugin
from lmrouter_postgres.store import PostgresStore

__all__ = ["PostgresPlugin", "PostgresStore"]
