"""The ``[ratelimit]`` table: defaults for every key; a key's own limits override them."""

from __future__ import annotations

import msgspec


class RateLimitSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rpm: int = 0  # requests per minute per key; 0 = unlimited
    tpm: int = 0  # tokens (prompt + completion) per minute per key; 0 = unlimited
    max_concurrent: int = 0  # requests running at once per key; 0 = unlimited
    # Share of a minute's allowance a key may use at once; the rest comes at an even pace.
    # 1.0: a 60 rpm key may send 60 requests at once, then one a second. 0.1: 6, then one a
    # second. Applies to rpm and tpm.
    burst: float = 1.0
    # Output tokens reserved for a request that sets no limit when its model has none either.
    default_output_tokens: int = 1024
    # Where the state lives: "memory" (this process; one worker) or a backend plugin's name
    # (entry-point group `lmrouter.ratelimit_backends`, e.g. "redis").
    backend: str = "memory"

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_concurrent", "default_output_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must not be negative (0 means unlimited)")
        if not 0 < self.burst <= 1:
            raise ValueError("`burst` must be more than 0 and at most 1")
