"""LMRouter provider plugin for Anthropic-compatible endpoints (the ``…/anthropic`` APIs some
vendors offer beside their own): ``type = "anthropic-compat"``.

Callers of the Messages API reach the upstream as they are; the router reads usage, finish
reasons and errors from the Messages wire format itself. The example of "Writing a provider
plugin" (docs/writing-a-provider-plugin.md), tested with the conformance kit.
"""

from __future__ import annotations

import json
from typing import Any

from lmrouter import hookimpl
from lmrouter.providers import Provider, ProviderConfig, UpstreamRequest


class AnthropicCompatConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    version: str = "2023-06-01"  # the anthropic-version header
    credit_error: str = "credit balance"  # a 400 with this text is our account's problem


class AnthropicCompatProvider(Provider):
    type = "anthropic-compat"
    Config = AnthropicCompatConfig
    native_dialects = frozenset({"anthropic.messages"})

    def __init__(self, name: str, config: AnthropicCompatConfig) -> None:
        super().__init__(name, config)
        self.url = self.base_url.removesuffix("/v1") + "/v1/messages"
        self.version = config.version
        self.credit_error = config.credit_error.encode()

    def prepare(self, ctx: Any, route: Any, key: str) -> UpstreamRequest:
        body = ctx.body  # forwarded byte for byte unless the model name changes
        if ctx.doc.get("model") != route.model:
            body = json.dumps({**ctx.doc, "model": route.model}).encode()
        headers = {"content-type": "application/json", "anthropic-version": self.version}
        if key:
            headers["x-api-key"] = key
        if beta := ctx.headers.get("anthropic-beta"):
            headers["anthropic-beta"] = beta
        return UpstreamRequest(self.url, headers, body)

    def callers_fault(self, status: int, body: bytes) -> bool:
        # An empty account answers 400: not the caller's mistake, so try the next route.
        if status == 400 and self.credit_error in body:
            return False
        return super().callers_fault(status, body)


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"anthropic-compat": AnthropicCompatProvider}
