"""The running router: validated config, plugin manager, provider instances, model table."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lmrouter import config as config_mod
from lmrouter import plugins, sharing, storage, stores
from lmrouter.drain import Drains
from lmrouter.guard import Guard

if TYPE_CHECKING:
    from lmrouter.config import Config, Model
    from lmrouter.providers import Provider


def provider_types(pm: plugins.PluginManager) -> dict[str, type[Provider]]:
    """Adapter classes by type name; two plugins offering one name is a :class:`PluginError`."""
    types: dict[str, type[Provider]] = {}
    owners: dict[str, str] = {}
    for plugin, answer in plugins.answers(pm, "lmrouter_provider_types"):
        for kind, cls in (answer or {}).items():
            _claim(owners, kind, plugin, "provider type")
            types[kind] = cls
    return types


def config_sections(pm: plugins.PluginManager) -> dict[str, type]:
    """Plugin config tables by name; one the core or another plugin owns is a
    :class:`PluginError`."""
    sections: dict[str, type] = {}
    owners = {name: "the core" for name in config_mod.CoreConfig.__struct_fields__}
    for plugin, answer in plugins.answers(pm, "lmrouter_config_section"):
        if answer:
            name, schema = answer
            _claim(owners, name, plugin, "config section")
            sections[name] = schema
    return sections


def _claim(owners: dict[str, str], name: str, plugin: str, what: str) -> None:
    owner = owners.setdefault(name, f"plugin {plugin!r}")
    if owner != f"plugin {plugin!r}":
        raise plugins.PluginError(
            f"plugin {plugin!r} and {owner} both claim the {what} {name!r}: "
            "disable one of them in [plugins] disabled"
        )


def check_plugins(pm: plugins.PluginManager, path: Path | None) -> None:
    """Refuse what ``serve`` and ``check`` must not run with: a plugin that failed to load, a
    name in ``[plugins] disabled`` that no plugin has."""
    for info in pm.failures():
        raise config_mod.ConfigError(
            f"plugin {info.name!r} failed to load: {info.error}. Fix or uninstall it, or "
            f'add "{info.name}" to [plugins] disabled',
            path=path,
        )
    if pm.unknown_disabled:
        installed = ", ".join(sorted(info.name for info in pm.infos))
        raise config_mod.ConfigError(
            f"no installed plugin is called {', '.join(map(repr, pm.unknown_disabled))}; "
            f"installed plugins: {installed}",
            path=path,
            key="plugins.disabled",
        )


def load(path: Path) -> tuple[Config, plugins.PluginManager]:
    """Read the file, load the plugins it leaves enabled, and validate it against all of them."""
    raw = config_mod.read_raw(path)
    disabled = (
        raw.get("plugins", {}).get("disabled", []) if isinstance(raw.get("plugins"), dict) else []
    )
    pm = plugins.build(disabled if isinstance(disabled, list) else [])
    check_plugins(pm, path)
    # Sections that belong to a plugin the operator disabled are kept but not checked.
    off = {info.name for info in pm.infos if not info.enabled}
    try:
        sections, types = config_sections(pm), provider_types(pm)
    except plugins.PluginError as exc:
        raise config_mod.ConfigError(str(exc), path=path) from None
    cfg = config_mod.validate(
        raw, path=path, sections=sections, provider_types=types, disabled_sections=frozenset(off)
    )
    workers = os.environ.get("LMROUTER_WORKERS")  # `serve --workers N` overrides the file
    if workers and workers.isdigit():
        cfg.core.server.workers = int(workers)
    try:
        # a URL nobody can open is a config mistake
        cfg.store_multiprocess = stores.store_for(cfg, pm).multiprocess
    except storage.StorageError as exc:
        raise config_mod.ConfigError(str(exc), path=path, key="storage.url") from None
    pm.hook.lmrouter_config_loaded(config=cfg)
    sharing.check(cfg, pm)  # workers > 1 only when nothing stays in one process
    return cfg, pm


class Gateway:
    def __init__(self, config: Config, pm: plugins.PluginManager) -> None:
        self.config = config
        self.pm = pm
        self.models: dict[str, Model] = config.models
        self.store: storage.Store  # opened in start()
        self.counters: sharing.Counters | None = None  # shared ones, started in start()
        server = config.server
        self.guard = Guard(
            body_timeout=server.body_timeout,
            auth_failures_per_minute=server.auth_failures_per_minute,
        )
        types = provider_types(pm)
        self.providers: dict[str, Provider] = {
            name: types[cfg.type](name, cfg) for name, cfg in config.providers.items()
        }
        routing = config.core.routing
        self.drains = Drains(routing.drain_seconds, int(routing.drain_mb * 1024 * 1024))
        # Detached requests under way (background Responses): see lmrouter.context.Detached.
        self.detached: set[asyncio.Task[None]] = set()

    @classmethod
    def from_path(cls, path: Path) -> Gateway:
        return cls(*load(path))

    async def start(self) -> None:
        self.store = stores.store_for(self.config, self.pm)
        await self.store.open()
        try:
            await stores.migrate(self.store, self.pm)
            for provider in self.providers.values():
                await provider.start()
            await plugins.call(self.pm.hook.lmrouter_startup(gateway=self))
            self.counters = sharing.counters_for(self.config, self.pm)
            if self.counters is not None:
                await self.counters.start()
                self.guard.key_failures.shared = self.counters
        except BaseException:
            # Release what was opened, or its threads keep a worker alive serving nothing.
            for provider in self.providers.values():
                await provider.close()
            await self.store.close()
            raise

    async def stop(self) -> None:
        try:
            # Detached requests are cut like a client that left (what was generated is paid),
            # then settle, before the plugins that meter them stop.
            for task in list(self.detached):
                task.cancel()
            for task in list(self.detached):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.drains.stop()  # their requests settle before the plugins stop
            await plugins.call(self.pm.hook.lmrouter_shutdown(gateway=self))
        finally:
            await self.guard.deadlines.close()
            await self.guard.key_failures.close()
            if self.counters is not None:
                await self.counters.close()
                self.counters = None
            for provider in self.providers.values():
                await provider.close()
            await self.store.close()
