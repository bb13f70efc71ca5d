"""The running router: validated config, plugin manager, provider instances, model table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lmrouter import config as config_mod
from lmrouter import plugins, storage
from lmrouter.drain import Drains

if TYPE_CHECKING:
    from lmrouter.config import Config, Model
    from lmrouter.providers import Provider


def provider_types(pm: plugins.PluginManager) -> dict[str, type[Provider]]:
    types: dict[str, type[Provider]] = {}
    for answer in pm.hook.lmrouter_provider_types():
        types.update(answer or {})
    return types


def config_sections(pm: plugins.PluginManager) -> dict[str, type]:
    sections: dict[str, type] = {}
    for answer in pm.hook.lmrouter_config_section():
        if answer:
            name, schema = answer
            sections[name] = schema
    return sections


def load(path: Path) -> tuple[Config, plugins.PluginManager]:
    """Read the file, load the plugins it leaves enabled, and validate it against all of them."""
    raw = config_mod.read_raw(path)
    disabled = (
        raw.get("plugins", {}).get("disabled", []) if isinstance(raw.get("plugins"), dict) else []
    )
    pm = plugins.build(disabled if isinstance(disabled, list) else [])
    # Sections that belong to a plugin the operator disabled are kept but not checked.
    off = {info.name for info in pm.infos if not info.enabled}
    cfg = config_mod.validate(
        raw,
        path=path,
        sections=config_sections(pm),
        provider_types=provider_types(pm),
        disabled_sections=frozenset(off),
    )
    workers = os.environ.get("LMROUTER_WORKERS")  # `serve --workers N` overrides the file
    if workers and workers.isdigit():
        cfg.core.server.workers = int(workers)
    try:
        storage.store_for(cfg, pm)  # a URL nobody can open is a config mistake
    except storage.StorageError as exc:
        raise config_mod.ConfigError(str(exc), path=path, key="storage.url") from None
    pm.hook.lmrouter_config_loaded(config=cfg)
    return cfg, pm


class Gateway:
    def __init__(self, config: Config, pm: plugins.PluginManager) -> None:
        self.config = config
        self.pm = pm
        self.models: dict[str, Model] = config.models
        self.store: storage.Store  # opened in start()
        types = provider_types(pm)
        self.providers: dict[str, Provider] = {
            name: types[cfg.type](name, cfg) for name, cfg in config.providers.items()
        }
        routing = config.core.routing
        self.drains = Drains(routing.drain_seconds, int(routing.drain_mb * 1024 * 1024))

    @classmethod
    def from_path(cls, path: Path) -> Gateway:
        return cls(*load(path))

    async def start(self) -> None:
        self.store = storage.store_for(self.config, self.pm)
        await self.store.open()
        try:
            await storage.migrate(self.store, self.pm)
            for provider in self.providers.values():
                await provider.start()
            await plugins.call(self.pm.hook.lmrouter_startup(gateway=self))
        except BaseException:
            # Release what was opened, or its threads keep a worker alive serving nothing.
            for provider in self.providers.values():
                await provider.close()
            await self.store.close()
            raise

    async def stop(self) -> None:
        try:
            await self.drains.stop()  # their requests settle before the plugins stop
            await plugins.call(self.pm.hook.lmrouter_shutdown(gateway=self))
        finally:
            for provider in self.providers.values():
                await provider.close()
            await self.store.close()
