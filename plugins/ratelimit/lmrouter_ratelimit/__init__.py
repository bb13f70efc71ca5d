"""LMRouter plugin: per-key rate limits — requests, tokens and concurrent requests.

- **Requests per minute** with GCRA: a bucket that refills continuously, so there is no double
  burst at a window's edge (:mod:`lmrouter_ratelimit.gcra`).
- **Tokens per minute**: a request reserves its estimate (prompt + output limit) at admission and
  is corrected to the real count when it ends.
- **Concurrent requests**: a slot per running request, freed exactly once when it ends, also when
  the client disconnects.

State sits behind :class:`~lmrouter_ratelimit.backend.LimiterBackend`; the in-memory backend is
exact for one process. See the README for what several workers need.
"""

from lmrouter_ratelimit.backend import Decision, LimiterBackend, Limits, MemoryBackend, Quota
from lmrouter_ratelimit.plugin import RateLimitPlugin

__all__ = ["Decision", "LimiterBackend", "Limits", "MemoryBackend", "Quota", "RateLimitPlugin"]
