"""OpenAI adapters broken on purpose, each in one way a real adapter could be: the conformance
kit must catch every one (tests/test_conformance_kit.py). Importable by name, so that the
router the kit starts can load them."""

from __future__ import annotations

from typing import Any

import msgspec

from lmrouter import ir
from lmrouter.providers import UpstreamFailure
from lmrouter_openai import OpenAIProvider


class _NoUsageParser:
    """Forgets the usage the last chunk carries."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def feed(self, chunk: bytes) -> list[Any]:
        return [e for e in self.inner.feed(chunk) if not isinstance(e, ir.UsageUpdate)]

    def close(self) -> list[Any]:
        return [e for e in self.inner.close() if not isinstance(e, ir.UsageUpdate)]


class DropsStreamUsage(OpenAIProvider):
    def stream_parser(self, ctx: Any, request: Any) -> Any:
        return _NoUsageParser(super().stream_parser(ctx, request))


class BlamesCallerFor429(OpenAIProvider):
    def callers_fault(self, status: int, body: bytes) -> bool:
        return status in (400, 413, 422, 429)


class LeaksKey(OpenAIProvider):
    async def read_error(self, response: Any, key: str) -> UpstreamFailure:
        failure = await super().read_error(response, key)
        failure.message = f"{failure.message} (sent with {key})"
        return failure


class IgnoresIdleTimeout(OpenAIProvider):
    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, msgspec.structs.replace(config, idle_timeout=3600.0))
