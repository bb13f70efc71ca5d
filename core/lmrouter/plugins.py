"""The plugin manager: entry-point discovery, built-in plugins, load-time checks, async-aware
hook calls.

Built-in plugins are registered exactly like third-party ones, through the same hooks. Set
``LMROUTER_TRACE_HOOKS=1`` to log every hook call with its arguments and results.

Mistakes are found when the plugins load, never left to pass silently: a hook name no spec
declares (a typo: ``lmrouter_admt``), an implementation taking an argument its spec does not
name, an ``api_version`` range that excludes this core's :data:`~lmrouter.hookspecs.API_VERSION`,
a required plugin that is missing or disabled, a plugin that fails to import. Each marks the
plugin as failed (:attr:`PluginInfo.error`); ``lmrouter plugins`` lists it, ``check`` and
``serve`` refuse to start until it is fixed, uninstalled or disabled.

Hook order follows from what plugins declare, as class or module attributes:

- ``requires = ["credits"]``: this plugin needs those plugins (an error without them) and its
  implementations run after theirs — its migrations after their tables exist, its
  ``request_end`` after their settlement;
- ``after = ["credits"]``: only the order, when those plugins are there.

Otherwise plugins run in reverse name order (pluggy calls the last registered first), and
``tryfirst``/``trylast`` on an implementation still win over both.
``lmrouter plugins --hooks`` prints each hook's implementations in call order.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import sys
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from lmrouter import hookspecs

ENTRY_POINT_GROUP = "lmrouter.plugins"
BUILTINS = {"operator_keys": "lmrouter.builtin.operator_keys:OperatorKeys"}


class PluginError(Exception):
    """A plugin mistake found at load time (two plugins claiming one name, for one)."""


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
        # names in ``[plugins] disabled`` that no installed plugin has (a typo, most likely)
        self.unknown_disabled: list[str] = []

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.error]


@dataclass
class _Candidate:
    name: str
    plugin: Any
    distribution: str | None
    version: str | None
    requires: tuple[str, ...]
    after: tuple[str, ...]


def build(disabled: Iterable[str] = ()) -> PluginManager:
    """Register the built-ins and every installed ``lmrouter.plugins`` entry point not disabled,
    in the order their declarations call for, and check each one."""
    pm = PluginManager()
    disabled = set(disabled)
    found: list[tuple[str, Any, str | None, str | None]] = []  # name, loader, dist, version
    for name, target in BUILTINS.items():
        module_name, _, attr = target.partition(":")
        found.append(
            (
                name,
                lambda m=module_name, a=attr: getattr(importlib.import_module(m), a),
                "lmrouter",
                None,
            )
        )
    entry_points = sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    )
    found.extend(
        (ep.name, ep.load, ep.dist.name if ep.dist else None, ep.dist.version if ep.dist else None)
        for ep in entry_points
    )
    pm.unknown_disabled = sorted(disabled - {name for name, *_ in found})

    candidates: list[_Candidate] = []
    for name, loader, dist, version in found:
        if name in disabled:
            pm.infos.append(PluginInfo(name, dist, version, False, ()))
            continue
        try:
            plugin = _instantiate(loader())
            _check_api(plugin)
            requires = _names(plugin, "requires")
            after = _names(plugin, "after")
        except PluginError as exc:
            pm.infos.append(PluginInfo(name, dist, version, False, (), error=str(exc)))
            continue
        except Exception as exc:  # a broken third-party plugin must say so, not crash import
            pm.infos.append(PluginInfo(name, dist, version, False, (), error=repr(exc)))
            continue
        candidates.append(_Candidate(name, plugin, dist, version, requires, after))

    _assemble(pm, candidates, disabled)
    if os.environ.get("LMROUTER_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(f"[hooks] {text}"))
        pm.enable_tracing()
        pm.traced = True
    return pm


def manager(named: dict[str, Any]) -> PluginManager:
    """A plugin manager holding these plugin objects (by plugin name), ordered and checked as
    :func:`build` orders and checks installed ones: for tests and embedders that pick their
    plugins themselves. A plugin that fails a check raises :class:`PluginError`."""
    pm = PluginManager()
    candidates = [
        _Candidate(name, plugin, None, None, _names(plugin, "requires"), _names(plugin, "after"))
        for name, plugin in named.items()
    ]
    _assemble(pm, candidates, set())
    failures = pm.failures()
    if failures:
        raise PluginError("; ".join(f"plugin {i.name!r}: {i.error}" for i in failures))
    return pm


def _assemble(pm: PluginManager, candidates: list[_Candidate], disabled: set[str]) -> None:
    """Register the candidates in order, let them add hook specs (``lmrouter_addhooks``), then
    refuse any implementation of a hook that still has no spec."""
    builtins = [c for c in candidates if c.name in BUILTINS]
    registered = []
    for candidate in [*builtins, *_registration_order(pm, candidates, disabled)]:
        try:
            pm.register(candidate.plugin, name=candidate.name)
        except pluggy.PluginValidationError as exc:  # e.g. an argument the spec does not name
            _fail(pm, candidate, str(exc))
            continue
        registered.append(candidate)
    for candidate in list(registered):
        try:
            for impl in pm.hook.lmrouter_addhooks.get_hookimpls():
                if impl.plugin is candidate.plugin:
                    impl.function(pluginmanager=pm)
        except Exception as exc:  # a spec clashing with an implementation already registered
            pm.unregister(candidate.plugin)
            _fail(pm, candidate, f"lmrouter_addhooks failed: {exc}")
            registered.remove(candidate)
    for candidate in registered:
        callers = pm.get_hookcallers(candidate.plugin) or ()
        unknown = sorted(h.name for h in callers if not h.has_spec())
        if unknown:
            pm.unregister(candidate.plugin)
            _fail(pm, candidate, "; ".join(_unknown_hook(pm, name) for name in unknown))
            continue
        hooks = tuple(sorted(h.name for h in callers))
        pm.infos.append(
            PluginInfo(candidate.name, candidate.distribution, candidate.version, True, hooks)
        )
    pm.infos.sort(key=lambda info: (info.name not in BUILTINS, info.name))
    pm.check_pending()  # every offender was unregistered above; this guards the core's own


def _fail(pm: PluginManager, c: _Candidate, error: str) -> None:
    pm.infos.append(PluginInfo(c.name, c.distribution, c.version, False, (), error=error))


def _names(plugin: Any, attribute: str) -> tuple[str, ...]:
    value = getattr(plugin, attribute, ())
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise PluginError(f"`{attribute}` must be a list of plugin names, got {value!r}")
    return tuple(value)


def _registration_order(
    pm: PluginManager, candidates: list[_Candidate], disabled: set[str]
) -> list[_Candidate]:
    """The entry-point plugins in the order to register them: pluggy calls the last registered
    first, so a plugin is registered before the ones it requires or comes after. Among plugins
    free to go, the call order is reverse name order, as it was before plugins could declare
    any. A plugin whose requirement is absent fails; so does a cycle."""
    loaded = {c.name: c for c in candidates if c.name not in BUILTINS}
    while True:  # a failure can make a plugin that requires it fail too
        missing = {
            c.name: need
            for c in loaded.values()
            for need in c.requires
            if need not in loaded and need not in BUILTINS
        }
        if not missing:
            break
        for name, need in missing.items():
            why = "disabled" if need in disabled else "not installed or failed to load"
            _fail(pm, loaded.pop(name), f"requires plugin {need!r}, which is {why}")
    # name -> the plugins whose hooks run before its own
    before: dict[str, set[str]] = {name: set() for name in loaded}
    for c in loaded.values():
        before[c.name] |= {n for n in (*c.requires, *c.after) if n in loaded}
    calls: list[_Candidate] = []
    while before:
        ready = sorted(name for name, deps in before.items() if not deps)
        if not ready:
            cycle = ", ".join(sorted(before))
            for name in sorted(before):
                _fail(pm, loaded[name], f"`requires`/`after` form a cycle among: {cycle}")
            break
        chosen = ready[-1]
        calls.append(loaded[chosen])
        del before[chosen]
        for deps in before.values():
            deps.discard(chosen)
    return calls[::-1]


def _instantiate(obj: Any) -> Any:
    """A plugin is a module or a class; a class gets one fresh instance per plugin manager."""
    return obj() if inspect.isclass(obj) else obj


def _specified(pm: PluginManager) -> list[str]:
    """Every hook with a spec: the core's and those plugins added."""
    return sorted(name for name, caller in vars(pm.hook).items() if caller.has_spec())


def _unknown_hook(pm: PluginManager, name: str) -> str:
    known = _specified(pm)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"implements {name}, which is not a hook{hint}"


_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(\d+)(?:\.(\d+))?\s*$")


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def api_compatible(supported: str, api: str = hookspecs.API_VERSION) -> bool:
    """Whether ``api`` is in ``supported``: comma-separated clauses of ``>=``, ``>``, ``<=``,
    ``<``, ``==`` or ``!=`` and ``MAJOR[.MINOR]`` (``">=1.3, <2"``). ``"1"`` means ``==1.*``."""
    have = _version(api)
    for clause in supported.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            raise PluginError(f"`api_version` {supported!r}: cannot read {clause.strip()!r}")
        op, major, minor = match.group(1), int(match.group(2)), match.group(3)
        want = (major, int(minor or 0))
        if op is None:
            ok = have[0] == major and (minor is None or have[1] == want[1])
        else:
            ok = {
                ">=": have >= want,
                "<=": have <= want,
                ">": have > want,
                "<": have < want,
                "==": have == want,
                "!=": have != want,
            }[op]
        if not ok:
            return False
    return True


def _check_api(plugin: Any) -> None:
    """A plugin may declare ``api_version = ">=1.3, <2"``: the hook API versions it supports."""
    supported = getattr(plugin, "api_version", None)
    if supported is None:
        return
    if not isinstance(supported, str):
        raise PluginError(f"`api_version` must be a string like '>=1.3, <2', got {supported!r}")
    if not api_compatible(supported):
        raise PluginError(
            f"supports hook API {supported}, but this lmrouter has hook API "
            f"{hookspecs.API_VERSION}: install a version of the plugin made for it"
        )


def describe_order(pm: PluginManager) -> list[str]:
    """``lmrouter plugins --hooks``: every hook with its implementations in call order."""
    lines = []
    for name in _specified(pm):
        caller = getattr(pm.hook, name)
        first = " (first result wins)" if caller.spec.opts.get("firstresult") else ""
        lines.append(f"{name}{first}")
        impls = caller.get_hookimpls()[::-1]
        for index, impl in enumerate(impls, 1):
            marks = [
                m for m in ("tryfirst", "trylast", "wrapper", "hookwrapper") if getattr(impl, m)
            ]
            plugin = pm.get_plugin(impl.plugin_name)
            marks += [
                f"{what} {', '.join(getattr(plugin, what))}"
                for what in ("requires", "after")
                if getattr(plugin, what, ())
            ]
            lines.append(
                f"  {index}. {impl.plugin_name}" + (f"  ({'; '.join(marks)})" if marks else "")
            )
        if not impls:
            lines.append("  (no implementation)")
    return lines


def answers(pm: PluginManager, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Each implementation's answer with its plugin's name, in call order: for the start-up
    hooks whose answers must not collide (provider types, config sections)."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    return [
        (impl.plugin_name, impl.function(**{name: kwargs[name] for name in impl.argnames}))
        for impl in impls[::-1]
    ]


def call_order(pm: PluginManager, hook: str) -> list[str]:
    """The plugins implementing ``hook``, in the order they are called."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    return [impl.plugin_name for impl in impls[::-1]]


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

    The spec says how a hook is called: ``firstresult=True`` hooks with :meth:`first` (the first
    non-None answer, awaited, wins; nothing after it is called), the others with :meth:`call` or
    :meth:`start` (every implementation, in order). Calling a hook the other way is a
    ``TypeError``. An implementation's awaitable is awaited before the next implementation is
    called, so a refusal (``RouterError``) stops the request before later plugins reserve
    anything, whether it came synchronously or not. With hook tracing on, or with a hook
    wrapper registered, every call goes through pluggy instead, with the same semantics.
    Resolve after every plugin is registered (the app does, at build).
    """

    __slots__ = ("caller", "firstresult", "functions", "name", "names")

    def __init__(self, pm: PluginManager, name: str) -> None:
        caller = getattr(pm.hook, name)
        impls = caller.get_hookimpls()
        spec = caller.spec
        assert spec is not None, name
        self.name = name
        self.names: tuple[str, ...] = tuple(spec.argnames)
        self.firstresult = bool(spec.opts.get("firstresult"))
        wrapped = pm.traced or any(i.hookwrapper or i.wrapper for i in impls)
        self.caller = caller if wrapped else None
        self.functions = tuple(_positional(i.function, i.argnames, self.names) for i in impls[::-1])

    def __bool__(self) -> bool:
        """False when no plugin implements the hook: the caller may skip it altogether."""
        return bool(self.functions)

    def _through_pluggy(self, args: tuple[Any, ...]) -> list[Any]:
        """Every implementation's result, through pluggy (so tracing and wrappers see the
        call). Not ``caller(...)``: for a ``firstresult`` hook pluggy would stop at the first
        coroutine, before knowing whether it answers None."""
        caller = self.caller
        assert caller is not None
        kwargs = dict(zip(self.names, args, strict=True))
        return caller._hookexec(caller.name, caller.get_hookimpls(), kwargs, False)

    def _misused(self) -> TypeError:
        how = "first()" if self.firstresult else "call() or start()"
        return TypeError(f"{self.name} is called with {how}, as its spec says")

    async def call(self, *args: Any) -> None:
        pending = self.start(*args)
        if pending is not None:
            await pending

    def start(self, *args: Any) -> Awaitable[None] | None:
        """:meth:`call` without a coroutine when it can: None when every implementation
        answered synchronously (the usual case), else an awaitable that awaits the one that did
        not and calls the rest."""
        if self.firstresult:
            raise self._misused()
        if self.caller is not None:
            return call(self._through_pluggy(args))
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
        if not self.firstresult:
            raise self._misused()
        if self.caller is not None:
            return await first(self._through_pluggy(args))
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
