"""The plugin manager: entry-point discovery, built-in plugins, async-aware hook calls.

Built-in plugins are registered exactly like third-party ones, through the same hooks. Set
``LMROUTER_TRACE_HOOKS=1`` to log every hook call with its arguments and results.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from lmrouter import hookspecs

ENTRY_POINT_GROUP = "lmrouter.plugins"
BUILTINS = {"operator_keys": "lmrouter.builtin.operator_keys:OperatorKeys"}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    enabled: bool
    hooks: tuple[str, ...]
    error: str | None = None


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []


def build(disabled: Iterable[str] = ()) -> PluginManager:
    """Register built-ins and every installed ``lmrouter.plugins`` entry point not disabled."""
    pm = PluginManager()
    disabled = set(disabled)
    for name, target in BUILTINS.items():
        module_name, _, attr = target.partition(":")
        _register(
            pm,
            _instantiate(getattr(importlib.import_module(module_name), attr)),
            name,
            "lmrouter",
            None,
        )
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    ):
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        if ep.name in disabled:
            pm.infos.append(PluginInfo(ep.name, dist, version, False, ()))
            continue
        try:
            plugin = _instantiate(ep.load())
        except Exception as exc:  # a broken third-party plugin must say so, not crash import
            pm.infos.append(PluginInfo(ep.name, dist, version, False, (), error=repr(exc)))
            continue
        _register(pm, plugin, ep.name, dist, version)
    if os.environ.get("LMROUTER_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(f"[hooks] {text}"))
        pm.enable_tracing()
    return pm


def _instantiate(obj: Any) -> Any:
    """A plugin is a module or a class; a class gets one fresh instance per plugin manager."""
    return obj() if inspect.isclass(obj) else obj


def _register(pm: PluginManager, plugin: Any, name: str, dist: str | None, version: str | None):
    pm.register(plugin, name=name)
    hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
    pm.infos.append(PluginInfo(name, dist, version, True, hooks))


async def call(results: list[Any]) -> None:
    """Await whatever the hook implementations returned that is awaitable, in hook order. When
    one raises (a refusal), the coroutines after it are closed, never left un-awaited."""
    for index, result in enumerate(results):
        if result is not None and inspect.isawaitable(result):
            try:
                await result
            except BaseException:
                for rest in results[index + 1 :]:
                    if inspect.iscoroutine(rest):
                        rest.close()
                raise


async def first(results: list[Any]) -> Any:
    """The first non-None answer, awaiting as needed; later coroutines are closed unawaited."""
    found = None
    for result in results:
        if found is None:
            if result is not None and inspect.isawaitable(result):
                result = await result
            found = result
        elif inspect.iscoroutine(result):
            result.close()
    return found
