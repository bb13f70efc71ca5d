"""Token usage in one shape, whatever the provider reported."""

from __future__ import annotations

import msgspec


class Usage(msgspec.Struct, kw_only=True):
    """``cached_tokens`` and ``cache_write_tokens`` are parts of ``prompt_tokens``;
    ``reasoning_tokens`` is part of ``completion_tokens``. ``estimated`` marks counts the router
    made up from what it saw (a stream cut before the provider reported usage)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_tokens(chars: int) -> int:
    """A deliberately generous estimate (about 4 characters a token) for holds and cut streams."""
    return (chars + 3) // 4
