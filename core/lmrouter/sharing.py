"""Which state lives in one process, and whether this config shares it across processes.

Every piece of state a plugin keeps in memory that other processes must see (a key cache, limit
counters, sign-in throttles, credit holds) is declared through ``lmrouter_process_state`` as a
:class:`ProcessState`: what it is, whether this config gives it a shared backend, and what the
operator sets to give it one. ``workers > 1`` is accepted exactly when every piece is shared;
otherwise :func:`check` refuses at config load, naming each piece that is not. Several hosts
need the same and a store every host reaches (``Store.multiprocess``): the router cannot see
the other hosts behind a load balancer, so ``lmrouter check`` prints what each would still lack.

A plugin never looks at URLs to decide this: it asks ``config.store_multiprocess`` or its own
backend (``[ratelimit] backend``), and reports the answer here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from lmrouter.config import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lmrouter.config import Config
    from lmrouter.plugins import PluginManager

__all__ = ["Counters", "ProcessState", "check", "counters_for", "unshared"]


@dataclass(frozen=True)
class ProcessState:
    """One piece of per-process state. ``what``: named for the operator ("the API-key cache");
    ``shared``: whether this config keeps it where every worker and host sees it; ``how``: what
    makes it shared (shown when it is not)."""

    what: str
    shared: bool
    how: str


class Counters(Protocol):
    """Fixed-window counters every process shares (``lmrouter_counters``; the Redis plugin's
    when ``[redis] url`` is set). The core counts invalid API keys per client address with
    them, so ``[server] auth_failures_per_minute`` holds for the whole deployment."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, key: str, window: float) -> tuple[int, float]:
        """Count one event under ``key`` in its current window (which starts with the first
        event and lasts ``window`` seconds): the count so far and the seconds left."""
        ...


def counters_for(config: Config, pm: PluginManager) -> Counters | None:
    """The shared counters a plugin offers under ``config``, if any (first answer wins)."""
    for impl in reversed(pm.hook.lmrouter_counters.get_hookimpls()):
        found = impl.function(config=config)
        if found is not None:
            return cast("Counters", found)
    return None


def core_pieces(config: Config, pm: PluginManager) -> list[tuple[str, ProcessState]]:
    """The core's own per-process state: invalid-key counts per client address."""
    shared = config.server.auth_failures_per_minute <= 0 or counters_for(config, pm) is not None
    return [
        (
            "core",
            ProcessState(
                "invalid-API-key counts per client address ([server] auth_failures_per_minute)",
                shared,
                '[redis] url = "redis://…" (plugin lmrouter-redis), or '
                "[server] auth_failures_per_minute = 0",
            ),
        )
    ]


def pieces(config: Config, pm: PluginManager) -> list[tuple[str, ProcessState]]:
    """Every piece the core and the enabled plugins declare, with who declared it."""
    impls = pm.hook.lmrouter_process_state.get_hookimpls()
    return core_pieces(config, pm) + [
        (impl.plugin_name, piece)
        for impl in reversed(impls)  # pluggy calls the last registered first: plugin order
        for piece in cast("Sequence[ProcessState] | None", impl.function(config=config)) or ()
    ]


def database(config: Config) -> ProcessState:
    """The store as a piece: several workers on one host share an embedded SQLite file (as
    they always have), several hosts cannot."""
    scheme = config.core.storage.url.partition(":")[0]
    return ProcessState(
        f"the database ({scheme}://…, one host's file)",
        config.store_multiprocess,
        '[storage] url = "postgresql://…" (plugin lmrouter-postgres)',
    )


def unshared(config: Config, pm: PluginManager, *, hosts: bool = False) -> list[str]:
    """One line per piece that stays in one process (with ``hosts``: on one host):
    ``what (plugin): how to share it``."""
    found = pieces(config, pm)
    if hosts:
        found.insert(0, ("core", database(config)))
    return [f"{piece.what} ({owner}): {piece.how}" for owner, piece in found if not piece.shared]


def check(config: Config, pm: PluginManager) -> None:
    """Refuse ``workers > 1`` while any piece stays in one process."""
    workers = config.server.workers
    if workers <= 1:
        return
    missing = unshared(config, pm)
    if missing:
        lines = "\n".join(f"  - {line}" for line in missing)
        raise ConfigError(
            f"{workers} workers need every per-process piece of state shared, and these are "
            f"not:\n{lines}\nRun one worker, or give each of them the shared backend named.",
            path=config.path,
            key="server.workers",
        )
