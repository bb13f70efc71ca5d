"""The accounts plugin's hooks: config, schema, authentication, BYOK keys and CLI commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import structlog

from lmrouter import ProcessState, hookimpl
from lmrouter_accounts import schema
from lmrouter_accounts.auth import Authenticator
from lmrouter_accounts.config import AccountsConfig
from lmrouter_accounts.crypto import SecretBox
from lmrouter_accounts.secret import check_stored_keys, server_secret, verify_stored_keys
from lmrouter_accounts.service import byok_allowed

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from lmrouter import Config, Gateway, Principal, RequestContext, Route

log = structlog.get_logger("lmrouter.accounts")

SECTION = "accounts"


def box_for(config: Config) -> SecretBox | None:
    """The cipher for BYOK keys: ``[accounts] secret``, else the one generated beside the
    database (see ``lmrouter_accounts.secret``); None when there is none and none can be made."""
    try:
        secret = server_secret(config, create=True)
    except OSError as exc:  # e.g. a read-only directory: BYOK is off, the rest works
        log.warning("cannot keep a generated secret for BYOK keys", error=str(exc))
        return None
    return SecretBox(secret) if secret else None


def process_state(config: Config) -> list[ProcessState]:
    """Each process caches keys in its own memory and learns of changes by polling
    ``accounts_state.revision`` in the store (:mod:`lmrouter_accounts.auth`): shared exactly
    when the store is (on SQLite a worker could keep serving a revoked key it never heard of)."""
    return [
        ProcessState(
            "the API-key cache (revocation, suspension)",
            config.store_multiprocess,
            '[storage] url = "postgresql://…": every process polls its revision',
        )
    ]


class AccountsPlugin:
    api_version = ">=1.5, <2"  # the hook API versions this plugin is written for

    def __init__(self) -> None:
        self.auth: Authenticator | None = None

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, AccountsConfig

    @hookimpl
    def lmrouter_migrations(self) -> tuple[str, list[str]]:
        return schema.NAMESPACE, schema.MIGRATIONS

    @hookimpl
    def lmrouter_config_loaded(self, config: Config) -> None:
        check_stored_keys(config)

    @hookimpl
    def lmrouter_process_state(self, config: Config) -> list[ProcessState]:
        return process_state(config)

    @hookimpl
    async def lmrouter_startup(self, gateway: Gateway) -> None:
        config = gateway.config
        section: AccountsConfig = config.section(SECTION)
        if gateway.store.multiprocess:  # a server database: the config-time check read none
            rows = await gateway.store.fetchall(
                "SELECT user_id, provider, ciphertext FROM byok_keys"
            )
            verify_stored_keys(config, rows, "DELETE FROM byok_keys, in the database")
        box = box_for(config)
        if box is None:
            row = await gateway.store.fetchone("SELECT COUNT(*) FROM byok_keys")
            if row and row[0]:
                log.warning(
                    "BYOK keys are stored but [accounts] secret is not set: requests that "
                    "need them will fail",
                    stored=row[0],
                )
        self.auth = Authenticator(
            gateway.store,
            box=box,
            allow_anonymous_byok=section.allow_anonymous_byok,
            byok_allowed=byok_allowed(config.providers),
        )
        await self.auth.start()

    @hookimpl
    async def lmrouter_shutdown(self, gateway: Gateway) -> None:
        if self.auth is not None:
            await self.auth.stop()
            self.auth = None

    @hookimpl
    def lmrouter_authenticate(
        self, gateway: Gateway, api_key: str, headers: Any
    ) -> Principal | Awaitable[Principal | None] | None:
        if self.auth is None:
            return None
        return self.auth.authenticate(api_key)

    @hookimpl
    def lmrouter_upstream_key(
        self, ctx: RequestContext, route: Route
    ) -> str | Awaitable[str | None] | None:
        if self.auth is None:
            return None
        return self.auth.upstream_key(ctx, route)

    @hookimpl
    def lmrouter_cli(self, subparsers: argparse._SubParsersAction) -> None:
        from lmrouter_accounts import cli

        cli.add_commands(subparsers)
