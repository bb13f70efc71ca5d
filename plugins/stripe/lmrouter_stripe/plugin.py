"""The ``stripe`` plugin: users buy prepaid credits through Stripe Checkout. Nothing per
request: two endpoints, two tables, and an async Stripe client per server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from lmrouter import hookimpl
from lmrouter_stripe import client, schema
from lmrouter_stripe.config import SECTION, StripeConfig
from lmrouter_stripe.endpoints import Endpoints
from lmrouter_stripe.events import Processor

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from lmrouter import Config, Gateway

log = structlog.get_logger("lmrouter.stripe")


class StripePlugin:
    api_version = ">=1.3, <2"  # the hook API versions this plugin is written for
    after = ["accounts", "credits"]  # its payments refer to users and credit lots, made first

    def __init__(self) -> None:
        self.processor: Processor | None = None
        # Off without accounts and credits: nothing to credit, and no tables either (its
        # tables refer to theirs; PostgreSQL refuses a reference to a table that is not there).
        self.needed = True

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, StripeConfig

    @hookimpl
    def lmrouter_config_loaded(self, config: Config) -> None:
        self.needed = "credits" in config.sections and "accounts" in config.sections

    @hookimpl
    def lmrouter_migrations(self) -> tuple[str, list[str]] | None:
        return (schema.NAMESPACE, schema.MIGRATIONS) if self.needed else None

    @hookimpl
    def lmrouter_startup(self, gateway: Gateway) -> None:
        config: StripeConfig = gateway.config.section(SECTION)
        if "credits" not in gateway.config.sections or "accounts" not in gateway.config.sections:
            # nothing to credit: the endpoints say so (503) instead of refusing the config
            log.warning("the stripe plugin needs the accounts and credits plugins; it is off")
            return
        expire = gateway.config.section("credits").expire_after_days
        self.processor = Processor(gateway.store, config, expire)
        if not config.checkout_enabled or not config.webhook_enabled:
            log.info(
                "buying credits is off until [stripe] secret_key and webhook_secret are set",
                checkout=config.checkout_enabled,
                webhook=config.webhook_enabled,
            )

    @hookimpl
    async def lmrouter_shutdown(self, gateway: Gateway) -> None:
        await client.close(gateway)

    @hookimpl
    def lmrouter_routes(self, gateway: Gateway) -> list[BaseRoute]:
        return list(Endpoints(self).routes())
