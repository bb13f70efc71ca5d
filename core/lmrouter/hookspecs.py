"""The plugin API: every hook LMRouter calls, one place.

A plugin is any module or class registered under the ``lmrouter.plugins`` entry-point group
that implements some of these hooks with ``@lmrouter.hookimpl``. First-party plugins use nothing
else. A class is instantiated once per server, so it can keep state on ``self``.

Hooks that run per request (``authenticate``, ``admit``, ``upstream_key``, ``attempt``,
``request_end``) may be ``async def`` or return an awaitable; the core awaits what they return.
Hooks declared ``firstresult=True`` (*first result wins*) are called in order until one
answers: the first non-``None`` answer, once awaited, is used and no later implementation is
called. The core calls them through :class:`lmrouter.plugins.Hook`, which awaits each answer
before deciding (pluggy's own ``firstresult`` would stop at the first coroutine). To refuse a
request, raise :class:`lmrouter.RouterError`. Per-request hooks cost about 2 µs each:
keep them cheap.

Call order: ``tryfirst`` implementations, then the others, then ``trylast`` ones; within each
group, a plugin runs after the plugins it names in ``requires`` or ``after`` (see
:mod:`lmrouter.plugins`), otherwise in reverse name order. ``lmrouter plugins --hooks`` prints
the order of an installation.

``API_VERSION`` changes its major number when a hook's signature or meaning changes
incompatibly, its minor number when hooks are added. A plugin declares the versions it
supports with an ``api_version`` attribute (``">=1.3, <2"``); one that excludes this version
is refused at load (:mod:`lmrouter.plugins`). 1.3: ``api_version``, ``requires`` and ``after``.
1.4: ``lmrouter_user_deleted``, ``lmrouter_attempt``. 1.5: ``lmrouter_process_state``,
``lmrouter_health``, ``lmrouter_counters``. 1.6: ``RequestContext.detached``
(:class:`lmrouter.Detached`): an admission hook may answer at once and let the request run on.
1.7: ``CannotServe`` (a route skipped for a request its provider has no form for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Mapping, Sequence

    from starlette.routing import BaseRoute

    from lmrouter.config import Config, Route
    from lmrouter.context import Outcome, Principal, RequestContext
    from lmrouter.errors import RouterError
    from lmrouter.gateway import Gateway
    from lmrouter.plugins import PluginManager
    from lmrouter.providers import Provider, UpstreamRequest
    from lmrouter.sharing import Counters, ProcessState
    from lmrouter.storage import Store

API_VERSION = "1.7"

__all__ = ["API_VERSION", "hookimpl", "hookspec"]
PROJECT = "lmrouter"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lmrouter_addhooks(pluginmanager: PluginManager) -> None:
    """Right after every plugin is registered: add the hooks this plugin offers to others, with
    ``pluginmanager.add_hookspecs(module_or_class)`` (pytest's ``pytest_addhooks``). Their specs
    then check the implementations other plugins registered, like the core's own. (API 1.3)"""


@hookspec
def lmrouter_config_section() -> tuple[str, type] | None:
    """Claim a top-level config table: return ``(name, msgspec.Struct type)``; read it back
    with ``gateway.config.section(name)``. Unknown keys in it are errors, like everywhere."""


@hookspec
def lmrouter_config_loaded(config: Config) -> None:
    """After the config validated: check what spans sections in ``config`` (e.g. ``[server]
    workers`` against a store that is per process: ``config.store_multiprocess``) and raise
    ``ConfigError`` to refuse. Runs for ``lmrouter check`` and before ``serve`` starts any
    worker."""


@hookspec
def lmrouter_process_state(config: Config) -> Sequence[ProcessState] | None:
    """What this plugin keeps in each process's memory that other processes must see, under
    ``config``: a :class:`lmrouter.ProcessState` per piece, ``shared`` when this config gives
    it a shared backend. ``workers > 1`` is refused while any piece is not shared, naming it
    (see :mod:`lmrouter.sharing`); ``lmrouter check`` lists them."""


@hookspec(firstresult=True)
def lmrouter_counters(config: Config) -> Counters | None:
    """Counters shared by every process (:class:`lmrouter.sharing.Counters`), when ``config``
    gives this plugin a backend for them (the Redis plugin: ``[redis] url``); None otherwise.
    Not started yet: the core starts and closes them with the server."""


@hookspec
def lmrouter_migrations() -> tuple[str, Sequence[str]] | None:
    """Return ``(namespace, [sql, ...])``: this plugin's schema steps, applied once, in order."""


@hookspec
def lmrouter_store_types() -> dict[str, Any] | None:
    """Store classes by URL scheme (``postgresql``) for ``[storage] url``; each is called as
    ``cls(url, config)`` and implements :class:`lmrouter.Store` (``multiprocess`` included)."""


@hookspec
def lmrouter_startup(gateway: Gateway) -> Awaitable[None] | None:
    """Server start, inside each worker's event loop, after ``gateway.store`` is open and
    migrated: load caches, start batch writers (:class:`lmrouter.BatchWriter`). ``gateway``
    also holds ``config``, ``providers`` and ``models``."""


@hookspec
def lmrouter_shutdown(gateway: Gateway) -> Awaitable[None] | None:
    """Server stop, after in-flight requests ended: flush batch writers, close pools. ``gateway``
    is the one ``lmrouter_startup`` saw."""


@hookspec
def lmrouter_health(gateway: Gateway) -> Mapping[str, str] | Awaitable[Mapping[str, str]] | None:
    """For ``GET /health``: each backend this plugin needs beyond the store (``"redis"``) and
    ``"ok"``, or what is wrong (no passwords); ``gateway`` is the started router. Any answer
    other than ``"ok"`` makes the router not ready (503)."""


@hookspec
def lmrouter_routes(gateway: Gateway) -> Sequence[BaseRoute] | None:
    """Extra Starlette routes (``/v1/credits``, dashboards, webhooks), added at app build.
    ``gateway`` is not started yet: read ``request.app.state.gateway`` in the endpoints, and
    :func:`lmrouter.require_principal` for the caller."""


@hookspec
def lmrouter_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add CLI subcommands: ``subparsers.add_parser(name, parents=[subparsers.common])`` gives the
    ``--config`` flag; ``set_defaults(func=f)`` with ``f(args) -> int | None``, which may call
    ``lmrouter.load(lmrouter.find_config(args.config))`` for the config and plugin manager, and
    ``lmrouter.opened_store(config, pm)`` for the database. Raise ``ConfigError`` for a clear
    message and exit 1."""


@hookspec
def lmrouter_provider_types() -> dict[str, type[Provider]] | None:
    """Provider adapter classes by the ``type`` name used in ``[providers.NAME]``."""


@hookspec(firstresult=True)
def lmrouter_authenticate(
    gateway: Gateway, api_key: str, headers: Any
) -> Principal | Awaitable[Principal | None] | None:
    """*First result wins.* Who is calling with ``api_key``: a Principal, or None when the key
    is not one of yours. Raise ``RouterError`` for a key of yours that is refused (revoked,
    suspended). ``headers``: the request's headers (lower-case names); ``gateway``: the running
    router. Runs before the body is read, for every request: keep it cheap (cache)."""


@hookspec
def lmrouter_admit(ctx: RequestContext) -> Awaitable[None] | None:
    """Before going upstream with ``ctx`` (caller, model, request): raise ``RouterError`` to
    refuse (rate limit, credit hold). Keep
    what you reserved on ``ctx.state``: ``lmrouter_request_end`` runs for every request that
    reached admission, refused ones included (``outcome.status == "refused"``), so each plugin
    undoes its own reservation."""


@hookspec(firstresult=True)
def lmrouter_upstream_key(ctx: RequestContext, route: Route) -> str | Awaitable[str | None] | None:
    """*First result wins.* Per attempt at ``route`` (provider, upstream model, price): a
    provider key to use instead of the provider's own (BYOK). Set ``ctx.billable = False`` when
    the caller pays the provider directly."""


@hookspec
def lmrouter_attempt(
    ctx: RequestContext, route: Route, request: UpstreamRequest
) -> Awaitable[None] | None:
    """Right before each upstream attempt at ``route`` sends ``request`` (URL, headers, body):
    add headers to ``request.headers`` (a trace's ``traceparent``), note when the attempt began.
    ``ctx.attempts[-1]`` is this attempt; its ``status`` is filled in when the answer comes, so
    the next call (a fallback) or ``lmrouter_request_end`` sees how it went. Runs for every
    attempt: keep it cheap, and synchronous if you can. Not called when no plugin implements
    it. (API 1.4)"""


@hookspec
def lmrouter_request_refused(dialect: str, error: RouterError) -> None:
    """A request answered with ``error`` before admission (no or unknown key, a body that does
    not parse, an unknown model): no context exists yet and ``lmrouter_request_end`` will not
    run. ``dialect`` names the endpoint's dialect (``openai.chat``, ``anthropic.messages``…).
    Synchronous and cheap: a flood of bad keys calls it for each one. (API 1.2)"""


@hookspec
def lmrouter_request_end(ctx: RequestContext, outcome: Outcome) -> Awaitable[None] | None:
    """Exactly once per request that reached admission, whatever happened (success, upstream
    error, client disconnect, cancellation): ``ctx`` as admission left it, ``outcome`` with the
    status, final usage and cost. Keep it cheap: enqueue database writes to a batch writer
    instead of awaiting them here."""


@hookspec
def lmrouter_user_deleted(store: Store, user_id: str) -> Awaitable[None] | None:
    """An account was deleted (by ``lmrouter users delete`` or from the dashboard), after its
    keys were revoked: erase what this plugin keeps for ``user_id`` in ``store`` (stored
    conversations, say). May run in a CLI process, with no server started. (API 1.4)"""
