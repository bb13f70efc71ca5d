"""Fixed-window counters in Redis (:class:`lmrouter.sharing.Counters`), for what the core counts
across every process: invalid API keys per client address. One script per event: ``INCR``, the
expiry set with the first, and the time left, together."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from lmrouter_redis.limiter import connect, ping

PREFIX = "lmrouter:count:"

ADD = r"""
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])  -- a key that lost its expiry must not live forever
  left = tonumber(ARGV[1])
end
return {n, left}
"""


class RedisCounters:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client: aioredis.Redis | None = None
        self._add: Any = None

    async def start(self) -> None:
        self.client = await connect(self.url)
        self._add = self.client.register_script(ADD)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def add(self, key: str, window: float) -> tuple[int, float]:
        count, left_ms = await self._add(keys=[PREFIX + key], args=[max(1, int(window * 1000))])
        return int(count), int(left_ms) / 1000

    async def health(self) -> dict[str, str]:
        """For ``/health``: ``{"redis": "ok"}``, or what is wrong (the URL without password)."""
        return await ping(self.client, self.url)
