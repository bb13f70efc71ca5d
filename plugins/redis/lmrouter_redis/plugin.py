"""The hooks: the ``[redis]`` table. The rate-limit backend itself is found through the
``lmrouter.ratelimit_backends`` entry point (``[ratelimit] backend = "redis"``)."""

from __future__ import annotations

from lmrouter import hookimpl
from lmrouter_redis.config import SECTION, RedisSection


class RedisPlugin:
    api_version = ">=1.3, <2"  # the hook API versions this plugin is written for

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, RedisSection
