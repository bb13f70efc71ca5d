"""The hooks: the store classes for ``postgresql://`` and ``postgres://`` URLs, and
``lmrouter store copy``."""

from __future__ import annotations

import argparse
from typing import Any

from lmrouter import hookimpl
from lmrouter_postgres.store import PostgresStore


class PostgresPlugin:
    api_version = ">=1.3, <2"  # the hook API versions this plugin is written for

    @hookimpl
    def lmrouter_store_types(self) -> dict[str, Any]:
        return {"postgresql": PostgresStore, "postgres": PostgresStore}

    @hookimpl
    def lmrouter_cli(self, subparsers: argparse._SubParsersAction) -> None:
        from lmrouter_postgres import copy

        copy.add_commands(subparsers)
