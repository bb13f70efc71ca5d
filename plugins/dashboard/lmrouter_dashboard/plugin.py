"""The dashboard plugin's hooks: its config section, tables, routes under ``/dashboard``, and the
request-end hook that keeps the admin page's recent errors.

Sessions and sign-in throttles live in the store, not in a process: every worker and host that
shares the store shares them, so the plugin declares no per-process state
(``lmrouter_process_state``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from starlette.responses import Response
from starlette.routing import Route

from lmrouter import ConfigError, hookimpl
from lmrouter_dashboard import account_pages, admin_pages, auth_pages, money_pages, schema
from lmrouter_dashboard.config import DashboardConfig
from lmrouter_dashboard.recent import RecentErrors
from lmrouter_dashboard.sessions import Sessions, signing_key
from lmrouter_dashboard.throttle import StoredThrottle
from lmrouter_dashboard.web import BASE, Site, route

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from lmrouter import Config, Gateway, Outcome, RequestContext

log = structlog.get_logger("lmrouter.dashboard")

SECTION = "dashboard"
NEEDS = ("accounts", "credits")  # the plugins whose services the pages use
EMAIL_FAILURES = 5  # failed sign-ins per e-mail address before a lock-out
IP_FAILURES = 20  # failed sign-ins per client address before a lock-out


def terms_path(config: Config) -> Path | None:
    settings: DashboardConfig = config.section(SECTION)
    if not settings.terms_file:
        return None
    return config.base_dir / settings.terms_file


class Dashboard:
    api_version = ">=1.3, <2"  # the hook API versions this plugin is written for
    after = ["accounts"]  # its sessions refer to the accounts tables, made first

    def __init__(self) -> None:
        self.site: Site | None = None
        self.errors = RecentErrors()

    def _active(self, gateway: Gateway) -> bool:
        settings: DashboardConfig = gateway.config.section(SECTION)
        return settings.enabled and all(gateway.pm.get_plugin(name) for name in NEEDS)

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, DashboardConfig

    @hookimpl
    def lmrouter_config_loaded(self, config: Config) -> None:
        path = terms_path(config)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"terms file {str(path)!r} not found", path=config.path, key="dashboard.terms_file"
            )

    @hookimpl
    def lmrouter_migrations(self) -> tuple[str, list[str]]:
        return schema.NAMESPACE, schema.MIGRATIONS

    @hookimpl
    async def lmrouter_startup(self, gateway: Gateway) -> None:
        if not self._active(gateway):
            return
        config = gateway.config
        settings: DashboardConfig = config.section(SECTION)
        key = await signing_key(gateway.store, settings.secret, config.section("accounts").secret)
        path = terms_path(config)
        self.site = Site(
            gateway=gateway,
            settings=settings,
            sessions=Sessions(
                gateway.store,
                key,
                hours=settings.session_hours,
                operator_keys=config.core.auth.keys,
                terms_version=settings.terms_version,
            ),
            email_throttle=StoredThrottle(gateway.store, "signin", EMAIL_FAILURES),
            ip_throttle=StoredThrottle(gateway.store, "signin", IP_FAILURES),
            # a fixed allowance per client address and hour; a burst past it waits the hour out
            signup_throttle=StoredThrottle(
                gateway.store,
                "signup",
                settings.signups_per_hour or 2**31,
                window=3600.0,
                base=3600.0,
                cap=3600.0,
            ),
            errors=self.errors,
            terms_text=path.read_text("utf-8") if path is not None else None,
        )

    @hookimpl
    def lmrouter_shutdown(self, gateway: Gateway) -> None:
        self.site = None

    @hookimpl
    def lmrouter_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.errors.record(ctx, outcome)

    @hookimpl
    def lmrouter_routes(self, gateway: Gateway) -> list[BaseRoute]:
        if not self._active(gateway):
            missing = [name for name in NEEDS if gateway.pm.get_plugin(name) is None]
            if missing:
                log.warning("dashboard off: it needs these plugins", missing=missing)
            return []

        def site() -> Site | None:
            return self.site

        post = ("POST",)
        pages = [
            ("", account_pages.home, "signed_in", ("GET",)),
            ("/signup", auth_pages.signup_form, "public", ("GET",)),
            ("/signup", auth_pages.signup, "public", post),
            ("/login", auth_pages.login_form, "public", ("GET",)),
            ("/login", auth_pages.login, "public", post),
            ("/operator", auth_pages.operator_form, "public", ("GET",)),
            ("/operator", auth_pages.operator_login, "public", post),
            ("/logout", auth_pages.logout, "public", post),
            ("/terms", auth_pages.terms, "public", ("GET",)),
            ("/terms", auth_pages.accept_terms, "user", post),
            ("/keys", account_pages.keys, "user", ("GET",)),
            ("/keys", account_pages.create_key, "user", post),
            ("/keys/{key_id}/revoke", account_pages.revoke_key, "user", post),
            ("/byok", account_pages.byok, "user", ("GET",)),
            ("/byok", account_pages.set_byok, "user", post),
            ("/byok/{provider}/remove", account_pages.remove_byok, "user", post),
            ("/account", account_pages.account, "user", ("GET",)),
            ("/account/delete", account_pages.delete_account, "user", post),
            ("/credits", money_pages.credits_page, "user", ("GET",)),
            ("/credits/buy", money_pages.buy, "user", post),
            ("/usage", money_pages.usage, "user", ("GET",)),
            ("/admin", admin_pages.users, "admin", ("GET",)),
            ("/admin/users/{user_id}/{action}", admin_pages.act, "admin", post),
            ("/admin/errors", admin_pages.errors, "admin", ("GET",)),
        ]
        routes: list[BaseRoute] = [
            route(site, path, handler, access=access, methods=methods)  # type: ignore[arg-type]
            for path, handler, access, methods in pages
        ]

        async def css(request: Request) -> Response:
            current = self.site
            if current is None:
                return Response(status_code=503)
            return Response(
                current.css,
                media_type="text/css",
                headers={"Cache-Control": "public, max-age=86400"},
            )

        routes.append(Route(f"{BASE}/static/dashboard.css", css))
        # Last: a mistyped address under /dashboard is a page a browser can show, not JSON.
        routes.append(route(site, "/{missing:path}", account_pages.not_found, access="public"))
        return routes
