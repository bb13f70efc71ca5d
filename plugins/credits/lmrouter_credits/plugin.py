"""The ``credits`` plugin: prepaid credits held and settled per request, usage records, the
``/v1/credits`` and ``/v1/usage`` endpoints and the ``lmrouter credits`` commands.

Per request it costs two synchronous hook calls (``admit`` and ``request_end``) and no database
round trip; the writes go through a batch writer (``[credits] flush_interval``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmrouter import ProcessState, hookimpl
from lmrouter_credits import cli, guard, schema
from lmrouter_credits.config import CreditsConfig
from lmrouter_credits.endpoints import Endpoints
from lmrouter_credits.meter import Meter

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from starlette.routing import BaseRoute

    from lmrouter import Config, Gateway, Outcome, RequestContext


class Credits:
    api_version = ">=1.5, <2"  # the hook API versions it is written for (process_state: 1.5)
    after = ["accounts"]  # its tables refer to the accounts tables, made first

    def __init__(self) -> None:
        self.meter: Meter | None = None
        self._lock: guard.ProcessLock | None = None

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return "credits", CreditsConfig

    @hookimpl
    def lmrouter_process_state(self, config: Config) -> list[ProcessState]:
        # On SQLite the holds are in each worker's memory; on a shared store, in the database.
        return [
            ProcessState(
                "each request's credit hold (credits)",
                config.store_multiprocess,
                '[storage] url = "postgresql://…" (plugin lmrouter-postgres): the holds then '
                "live in the database",
            )
        ]

    @hookimpl
    def lmrouter_migrations(self) -> tuple[str, list[str]]:
        return schema.NAMESPACE, schema.MIGRATIONS

    @hookimpl(tryfirst=True)  # refuse before other plugins start anything
    async def lmrouter_startup(self, gateway: Gateway) -> None:
        try:
            self._lock = guard.ProcessLock(gateway.store)  # a second process on one SQLite file
        except RuntimeError:
            # The core leaves the store open when start-up fails, and its thread would keep
            # this worker alive, serving nothing: close it so that the server exits.
            await gateway.store.close()
            raise
        self.meter = Meter(gateway.store, gateway.config.section("credits"))
        await self.meter.start()

    @hookimpl
    async def lmrouter_shutdown(self, gateway: Gateway) -> None:
        try:
            if self.meter is not None:
                await self.meter.stop()  # writes every charge and usage record still queued
        finally:
            if self._lock is not None:
                self._lock.release()

    @hookimpl
    def lmrouter_routes(self, gateway: Gateway) -> list[BaseRoute]:
        return list(Endpoints(self).routes())

    @hookimpl
    def lmrouter_cli(self, subparsers: Any) -> None:
        cli.add_commands(subparsers)

    @hookimpl
    def lmrouter_admit(self, ctx: RequestContext) -> Awaitable[None] | None:
        assert self.meter is not None
        return self.meter.admit(ctx)

    @hookimpl
    def lmrouter_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        assert self.meter is not None
        self.meter.end(ctx, outcome)
