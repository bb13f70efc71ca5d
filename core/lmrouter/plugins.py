"""The plugin manager: entry-point discovery, built-in plugins, async-aware hook calls.

Built-in plugins are registered exactly like third-party ones, through the same hooks. Set
``LMROUTER_TRACE_HOOKS=1`` to log every hook call with its arguments and results.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
from collections.abc import Awaitable, Iterable
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
        self.traced = False


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
        pm.traced = True
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


class Hook:
    """A per-request hook resolved once, for the request path: its implementations in pluggy's
    call order, each called directly with positional arguments. Going through pluggy costs a
    couple of microseconds a call (keyword matching, the result list, the tracing hooks) and
    four such calls run per request.

    The semantics are those of :func:`call` and :func:`first` over pluggy's results, with one
    difference that follows the contract more closely: an implementation's awaitable is
    awaited before the next implementation is called, so a refusal (``RouterError``) stops
    the request before later plugins reserve anything, whether it came synchronously or not;
    and :meth:`first` calls nothing after the first answer. With hook tracing on, or with a
    hook wrapper registered, every call goes through pluggy instead. Resolve after every plugin
    is registered (the app does, at build).
    """

    __slots__ = ("caller", "functions", "names")

    def __init__(self, pm: PluginManager, name: str) -> None:
        caller = getattr(pm.hook, name)
        impls = caller.get_hookimpls()
        spec = caller.spec
        assert spec is not None, name
        self.names: tuple[str, ...] = tuple(spec.argnames)
        wrapped = pm.traced or any(i.hookwrapper or i.wrapper for i in impls)
        self.caller = caller if wrapped else None
        self.functions = tuple(_positional(i.function, i.argnames, self.names) for i in impls[::-1])

    def __bool__(self) -> bool:
        """False when no plugin implements the hook: the caller may skip it altogether."""
        return bool(self.functions)

    async def call(self, *args: Any) -> None:
        pending = self.start(*args)
        if pending is not None:
            await pending

    def start(self, *args: Any) -> Awaitable[None] | None:
        """:meth:`call` without a coroutine when it can: None when every implementation
        answered synchronously (the usual case), else an awaitable that awaits the one that did
        not and calls the rest."""
        if self.caller is not None:
            return call(self.caller(**dict(zip(self.names, args, strict=True))))
        functions = self.functions
        for index, function in enumerate(functions):
            result = function(*args)
            if result is not None and inspect.isawaitable(result):
                return self._finish(result, functions[index + 1 :], args)
        return None

    @staticmethod
    async def _finish(pending: Awaitable[Any], rest: tuple[Any, ...], args: tuple[Any, ...]):
        await pending
        for function in rest:
            result = function(*args)
            if result is not None and inspect.isawaitable(result):
                await result

    async def first(self, *args: Any) -> Any:
        if self.caller is not None:
            return await first(self.caller(**dict(zip(self.names, args, strict=True))))
        for function in self.functions:
            result = function(*args)
            if result is not None and inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return None


def _positional(function: Any, argnames: tuple[str, ...], names: tuple[str, ...]) -> Any:
    """``function`` as called with the spec's arguments in order; an implementation may take
    fewer of them (pluggy passes each only the ones it names)."""
    if tuple(argnames) == names:
        return function
    picks = tuple(names.index(name) for name in argnames)
    return lambda *args: function(*(args[i] for i in picks))
