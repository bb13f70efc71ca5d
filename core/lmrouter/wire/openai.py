"""OpenAI's Chat Completions wire format, shared by the inbound ``openai.chat`` dialect and the
openai provider plugin: the usage object (with the names compatible servers use)."""

from __future__ import annotations

import msgspec

from lmrouter.usage import Usage

__all__ = ["WireUsage"]


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek's name for cached prompt tokens

    def normalize(self) -> Usage:
        prompt = self.prompt_tokens_details
        cached = (prompt.cached_tokens if prompt else None) or self.prompt_cache_hit_tokens or 0
        written = (prompt.cache_write_tokens if prompt else None) or 0
        completion = self.completion_tokens_details
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=(completion.reasoning_tokens if completion else None) or 0,
        )
