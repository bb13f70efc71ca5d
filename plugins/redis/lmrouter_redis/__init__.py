"""LMRouter plugin: Redis for what several workers and hosts must decide together.

``[redis] url = "redis://HOST:PORT/N"``. Provides the rate-limit backend ``[ratelimit] backend =
"redis"`` (:mod:`lmrouter_redis.limiter`): the memory backend's GCRA limits, each decision one
Lua script on Redis's clock (:mod:`lmrouter_redis.scripts`).
"""

from lmrouter_redis.limiter import RedisBackend
from lmrouter_redis.plugin import RedisPlugin

__all__ = ["RedisBackend", "RedisPlugin"]
