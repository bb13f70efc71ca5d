"""The ``[redis]`` table."""

from __future__ import annotations

import msgspec

SECTION = "redis"


class RedisSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # redis://HOST:PORT/N, rediss:// for TLS, redis://:PASSWORD@HOST:PORT/N. Empty (the
    # default): no Redis; the plugin then offers nothing, whatever is installed.
    url: str = ""

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("`url` must start with redis://, rediss:// or unix://")
