"""The configured store and its schema as the installed plugins provide them: the plugin
manager's answers (``lmrouter_store_types``, ``lmrouter_migrations``) gathered here and handed to
:mod:`lmrouter.storage` as plain data, so that storage knows nothing of plugins."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from lmrouter import storage

if TYPE_CHECKING:
    from lmrouter.config import Config
    from lmrouter.plugins import PluginManager
    from lmrouter.storage import Migrations, Store, StoreFactory

__all__ = ["migrate", "migrations", "opened", "store_for", "store_types"]


def store_types(pm: PluginManager) -> dict[str, StoreFactory]:
    """Store factories by URL scheme; the first plugin in hook order to offer one wins."""
    types: dict[str, StoreFactory] = {}
    for answer in pm.hook.lmrouter_store_types():
        for scheme, factory in (answer or {}).items():
            types.setdefault(scheme, factory)
    return types


def migrations(pm: PluginManager) -> list[Migrations]:
    """Every plugin's ``(namespace, steps)``, in hook order."""
    return [answer for answer in pm.hook.lmrouter_migrations() if answer]


def store_for(config: Config, pm: PluginManager) -> Store:
    """The store named by ``[storage] url``: ``sqlite:///relative/to/config.db``,
    ``sqlite:////absolute.db``, ``sqlite://:memory:``, or a scheme a plugin provides."""
    return storage.store_at(config, store_types(pm))


async def migrate(store: Store, pm: PluginManager) -> list[tuple[str, int]]:
    """Apply every plugin's schema steps not applied yet, each in its own transaction."""
    return await storage.apply_migrations(store, migrations(pm))


@contextlib.asynccontextmanager
async def opened(config: Config, pm: PluginManager) -> AsyncIterator[Store]:
    """For CLI commands: the configured store, open and migrated."""
    store = store_for(config, pm)
    await store.open()
    try:
        await migrate(store, pm)
        yield store
    finally:
        await store.close()
