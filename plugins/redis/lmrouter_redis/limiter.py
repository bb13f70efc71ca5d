"""The Redis rate-limit backend (``[ratelimit] backend = "redis"``): the memory backend's limits,
shared by every worker and host, each admission and each correction one Lua script
(:mod:`lmrouter_redis.scripts`) run atomically on Redis's clock.

Scripts are called by their SHA (``EVALSHA``, loaded on ``NOSCRIPT``), and the keys they keep
state in are named after the same SHA: during a rolling deploy that changes the scripts, each
version keeps its own state and none reads state the other wrote in a different shape.

Redis unreachable: at start, :class:`RedisUnavailable` (the router does not start); while
serving, an admission fails closed with a 503 (no request goes through unlimited), and a
correction is kept (up to :data:`MAX_UNSETTLED`) and sent again every :data:`RETRY_EVERY`
seconds until Redis answers, so the slots and tokens it gives back are not lost. The client
reconnects by itself; ``/health`` reports ``redis`` meanwhile (:meth:`RedisBackend.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
import structlog

from lmrouter import RouterError
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
TIMEOUT = 2.0  # seconds: a Redis that does not answer by then counts as unreachable
RETRY_EVERY = 0.5  # seconds between attempts to send the corrections Redis missed
MAX_UNSETTLED = 100_000  # corrections kept while Redis is away (then the oldest go)
UNREACHABLE = (aioredis.RedisError, OSError, asyncio.TimeoutError)

log = structlog.get_logger("lmrouter.redis")


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached."""


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}"


async def ping(client: aioredis.Redis | None, url: str) -> dict[str, str]:
    """``{"redis": "ok"}``, or what is wrong with ``client`` (``url`` without password)."""
    if client is None:
        return {"redis": "not started"}
    try:
        async with asyncio.timeout(TIMEOUT):
            await client.ping()
    except UNREACHABLE as exc:
        return {"redis": f"unavailable: {redact(url)}: {exc or type(exc).__name__}"}
    return {"redis": "ok"}


async def connect(url: str) -> aioredis.Redis:
    """A client for ``url`` that answered a ping, or :class:`RedisUnavailable`."""
    # A blocking pool: past its size a call waits for a connection to come back. The default
    # pool raises "Too many connections" at its 100th concurrent call, which a busy worker
    # reaches (the benchmark did, at 32 connections with admissions and settlements).
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        await client.ping()
    except UNREACHABLE as exc:
        await client.aclose()
        raise RedisUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    return client


def unavailable() -> RouterError:
    return RouterError(
        503,
        "The router cannot check rate limits right now (its Redis is unreachable); try again "
        "shortly.",
        code="unavailable",
        headers={"retry-after": "1"},
    )


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
        self._unsettled: deque[tuple[str, list[int]]] = deque(maxlen=MAX_UNSETTLED)
        self._retrying: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client = await connect(self.url)
        self.calls = AutoPipeline(self.client)

    async def close(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
            self._retrying = None
        if self._unsettled and self.client is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self._resend()  # a last chance for what Redis missed
        if self._unsettled:
            log.warning("Redis unreachable at stop: corrections lost", count=len(self._unsettled))
        if self.calls is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self.calls.close()
            self.calls = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def health(self) -> dict[str, str]:
        """For ``/health``: ``{"redis": "ok"}``, or what is wrong (the URL without password)."""
        return await ping(self.client, self.url)

    def _now(self) -> int:
        return -1 if self._clock is None else self._clock() // _US

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        try:
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
        except UNREACHABLE as exc:
            log.warning("Redis unreachable: admission refused", error=str(exc))
            raise unavailable() from None
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
        args = [
            self._now(),
            limits.rpm,
            limits.tpm,
            decision.reserved,
            used,
            epoch,
            end,
            shift,
            int(decision.slot),
        ]
        redis_key = f"{PREFIX}{{{key}}}"
        try:
            await self._call_settle(redis_key, args)
        except UNREACHABLE as exc:
            # kept, not dropped: a slot never given back would refuse the key for an hour
            log.warning("Redis unreachable: correction kept to send again", error=str(exc))
            self._unsettled.append((redis_key, args))
            if self._retrying is None:
                self._retrying = asyncio.create_task(self._retry(), name="lmrouter-redis-retry")

    async def _call_settle(self, redis_key: str, args: list[int]) -> None:
        assert self.calls is not None, "start() first"
        await self.calls.call(_SETTLE, [redis_key], list(args))

    async def _resend(self) -> None:
        """Send the kept corrections, oldest first; raises (keeping the rest) when Redis is
        still away. Each is sent with the time it is sent at (a refund of tokens that have
        drained meanwhile gives back what is left of them, as a late correction would)."""
        while self._unsettled:
            redis_key, args = self._unsettled[0]
            await self._call_settle(redis_key, [self._now(), *args[1:]])
            self._unsettled.popleft()

    async def _retry(self) -> None:
        try:
            while self._unsettled:
                await asyncio.sleep(RETRY_EVERY)
                with contextlib.suppress(*UNREACHABLE):
                    await self._resend()
        finally:
            self._retrying = None

    @property
    def unsettled(self) -> int:
        """Corrections waiting for Redis to come back."""
        return len(self._unsettled)
