"""The hooks: the ``[redis]`` table, the shared counters the core counts invalid keys with
(``lmrouter_counters``), and Redis's state for ``/health``. The rate-limit backend itself is
found through the ``lmrouter.ratelimit_backends`` entry point (``[ratelimit] backend =
"redis"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmrouter import ConfigError, hookimpl
from lmrouter_redis.config import SECTION, RedisSection
from lmrouter_redis.counters import RedisCounters

if TYPE_CHECKING:
    from lmrouter import Config, Gateway


class RedisPlugin:
    api_version = ">=1.5, <2"  # the hook API versions this plugin is written for

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, RedisSection

    @hookimpl
    def lmrouter_config_loaded(self, config: Config) -> None:
        limits = config.sections.get("ratelimit")
        if getattr(limits, "backend", None) == "redis" and not config.section(SECTION).url:
            raise ConfigError(
                '[ratelimit] backend = "redis" needs the Redis to use: set [redis] url = '
                '"redis://HOST:6379/0"',
                path=config.path,
                key="redis.url",
            )

    @hookimpl
    def lmrouter_counters(self, config: Config) -> RedisCounters | None:
        url = config.section(SECTION).url
        return RedisCounters(url) if url else None

    @hookimpl
    async def lmrouter_health(self, gateway: Gateway) -> dict[str, str]:
        counters = gateway.counters
        if isinstance(counters, RedisCounters):
            return await counters.health()
        return {}
