"""The ``responses`` plugin: stored Responses. See the package README."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmrouter import hookimpl
from lmrouter_responses import schema
from lmrouter_responses.config import ResponsesConfig
from lmrouter_responses.conversations import ConversationEndpoints, Conversations
from lmrouter_responses.endpoints import Endpoints
from lmrouter_responses.keeper import Keeper

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from starlette.routing import BaseRoute

    from lmrouter import Gateway, Outcome, RequestContext, Store


class ResponsesPlugin:
    api_version = ">=1.6, <2"  # RequestContext.detached (background)

    def __init__(self) -> None:
        self.keeper: Keeper | None = None
        self.endpoints = Endpoints(self)
        self.conversation_endpoints = ConversationEndpoints(self)

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return "responses", ResponsesConfig

    @hookimpl
    def lmrouter_migrations(self) -> tuple[str, list[str]]:
        return schema.NAMESPACE, schema.MIGRATIONS

    @hookimpl
    async def lmrouter_startup(self, gateway: Gateway) -> None:
        config: ResponsesConfig = gateway.config.section("responses")
        conversations = Conversations(gateway.store, config.store_days)
        self.keeper = Keeper(gateway, config, conversations)
        await self.keeper.start()

    @hookimpl
    async def lmrouter_shutdown(self, gateway: Gateway) -> None:
        await self.endpoints.close()
        if self.keeper is not None:
            await self.keeper.stop()

    @hookimpl
    def lmrouter_routes(self, gateway: Gateway) -> list[BaseRoute]:
        return [*self.endpoints.routes(), *self.conversation_endpoints.routes()]

    # tryfirst: the history it adds counts in the credit hold other plugins take
    @hookimpl(tryfirst=True)
    def lmrouter_admit(self, ctx: RequestContext) -> Awaitable[None] | None:
        assert self.keeper is not None
        return self.keeper.admit(ctx)

    @hookimpl
    def lmrouter_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        assert self.keeper is not None
        self.keeper.record(ctx, outcome)

    @hookimpl
    async def lmrouter_user_deleted(self, store: Store, user_id: str) -> None:
        await store.execute("DELETE FROM stored_responses WHERE user_id = ?", (user_id,))
        await Conversations(store, 0).erase_user(user_id)
