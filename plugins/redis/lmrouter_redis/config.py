"""The ``[redis]`` table."""

from __future__ import annotations

import msgspec

SECTION = "redis"


class RedisSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # redis://HOST:PORT/N, rediss:// for TLS, redis://:PASSWORD@HOST:PORT/N
    url: str = "redis://127.0.0.1:6379/0"

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("`url` must start with redis://, rediss:// or unix://")
