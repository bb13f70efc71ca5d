"""The Redis rate-limit backend (``[ratelimit] backend = "redis"``): the memory backend's limits,
shared by every worker and host, each admission and each correction one Lua script
(:mod:`lmrouter_redis.scripts`) run atomically on Redis's clock.

Scripts are called by their SHA (``EVALSHA``, loaded on ``NOSCRIPT``), and the keys they keep
state in are named after the same SHA: during a rolling deploy that changes the scripts, each
version keeps its own state and none reads state the other wrote in a different shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from lmrouter_ratelimit.backend import Decision, Limits
from lmrouter_redis.config import SECTION, RedisSection
from lmrouter_redis.pipeline import AutoPipeline, Script
from lmrouter_redis.scripts import ADMIT, SETTLE

if TYPE_CHECKING:
    from lmrouter import Gateway

VERSION = hashlib.sha1((ADMIT + SETTLE).encode()).hexdigest()[:12]
POOL_SIZE = 64  # connections per process; each call holds one for one round trip
POOL_WAIT_S = 5.0  # a call waiting longer for a connection fails (as unreachable Redis does)
PREFIX = f"lmrouter:rl:{VERSION}:"
_REFUSED = (None, "requests", "tokens", "concurrency")
_US = 1000  # nanoseconds a microsecond
_ADMIT, _SETTLE = Script(ADMIT), Script(SETTLE)


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached."""


class RedisBackend:
    """Limit state in Redis: exact across workers and hosts."""

    shared = True

    def __init__(
        self,
        gateway: Gateway | None = None,
        *,
        url: str | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if url is None:
            if gateway is None:
                raise ValueError("RedisBackend needs a gateway or a url")
            section: RedisSection = gateway.config.section(SECTION)
            url = section.url
        self.url = url
        # Tests only: nanoseconds from this clock instead of Redis's TIME.
        self._clock = clock
        self.client: aioredis.Redis | None = None
        self.calls: AutoPipeline | None = None

    async def start(self) -> None:
        # A blocking pool: past its size a call waits for a connection to come back. The default
        # pool raises "Too many connections" at its 100th concurrent call, which a busy worker
        # reaches (the benchmark did, at 32 connections with admissions and settlements).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S
        )
        self.client = aioredis.Redis.from_pool(pool)
        try:
            await self.client.ping()
        except (aioredis.RedisError, OSError) as exc:
            await self.client.aclose()
            self.client = None
            raise RedisUnavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
        self.calls = AutoPipeline(self.client)

    async def close(self) -> None:
        if self.calls is not None:
            await self.calls.close()
            self.calls = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def _now(self) -> int:
        return -1 if self._clock is None else self._clock() // _US

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        assert self.calls is not None, "start() first"
        answer = await self.calls.call(
            _ADMIT,
            [f"{PREFIX}{{{key}}}"],
            [
                self._now(),
                limits.rpm,
                limits.rpm_burst,
                limits.tpm,
                limits.tpm_burst,
                limits.max_concurrent,
                tokens,
            ],
        )
        allowed, r_left, r_reset, t_left, t_reset, reserved, epoch, end, shift, slot = answer[:10]
        refused, wait_us, requested = answer[10:]
        requests = (limits.rpm, r_left, r_reset * _US) if limits.rpm else None
        token_quota = (limits.tpm, t_left, t_reset * _US) if limits.tpm else None
        if not allowed:
            return Decision(
                False,
                requests,
                token_quota,
                refused_by=_REFUSED[refused],
                retry_after_ns=wait_us * _US,
                requested=requested,
            )
        mark = (epoch, end, shift) if end >= 0 else None
        return Decision(True, requests, token_quota, reserved, mark, bool(slot))

    async def settle(self, key: str, limits: Limits, decision: Decision, used: int) -> None:
        epoch, end, shift = decision.mark if decision.mark is not None else (0, -1, 0)
        assert self.calls is not None, "start() first"
        await self.calls.call(
            _SETTLE,
            [f"{PREFIX}{{{key}}}"],
            [
                self._now(),
                limits.rpm,
                limits.tpm,
                decision.reserved,
                used,
                epoch,
                end,
                shift,
                int(decision.slot),
            ],
        )
