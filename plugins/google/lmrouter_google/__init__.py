"""LMRouter provider plugin for Google Gemini (the Generative Language API).

```toml
[providers.google]
type = "google"
base_url = "https://generativelanguage.googleapis.com"
api_key = "${GEMINI_API_KEY:-}"          # sent as x-goog-api-key
# api_version = "v1beta"                 # path segment; also taken from a base_url ending in it
```

Gemini speaks none of the router's dialects, so every request is converted through the internal
representation (``converts = {"chat", "embeddings"}``): chat to ``models/{model}:generateContent``
or ``:streamGenerateContent?alt=sse`` (see :mod:`lmrouter_google.chat`), embeddings to
``:batchEmbedContents`` (see :mod:`lmrouter_google.embed`).

Usage: prompt = ``promptTokenCount`` + ``toolUsePromptTokenCount``; completion =
``candidatesTokenCount`` + ``thoughtsTokenCount`` (Gemini counts thoughts apart from candidates
and bills them as output); cached = ``cachedContentTokenCount``; reasoning =
``thoughtsTokenCount``.

Errors: ``{"error": {"code", "message", "status"}}`` bodies reach the caller as
``"STATUS: message"``. Gemini answers a wrong API key with 400 ``API_KEY_INVALID`` and an
unbilled project or unsupported region with 400 ``FAILED_PRECONDITION``; those are our side's
faults, not the caller's, so they fall back to the next route like a 401 would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from lmrouter import hookimpl, ir
from lmrouter.providers import (
    Provider,
    ProviderConfig,
    UpstreamRequest,
)
from lmrouter_google import chat, embed, wire

if TYPE_CHECKING:
    from lmrouter.config import Route
    from lmrouter.context import RequestContext

__all__ = ["GoogleConfig", "GoogleProvider"]

_VERSIONS = ("v1beta", "v1", "v1alpha")


class GoogleConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    api_version: str = "v1beta"


class GoogleProvider(Provider):
    type = "google"
    Config = GoogleConfig
    converts = frozenset({"chat", "embeddings"})
    user_keys = True  # the key given is the only credential sent

    def __init__(self, name: str, config: GoogleConfig) -> None:
        super().__init__(name, config)
        last = self.base_url.rsplit("/", 1)[-1]
        self.root = self.base_url if last in _VERSIONS else f"{self.base_url}/{config.api_version}"

    def url(self, model: str, method: str) -> str:
        model = model.removeprefix("models/")
        return f"{self.root}/models/{quote(model, safe='-._~')}:{method}"

    def build(self, ctx: RequestContext, request: Any, route: Route, key: str) -> UpstreamRequest:
        if isinstance(request, ir.EmbeddingRequest):
            model = route.model.removeprefix("models/")
            body = embed.build(request, model)
            url = self.url(model, "batchEmbedContents")
        else:
            body = chat.build(request)
            method = "streamGenerateContent?alt=sse" if ctx.stream else "generateContent"
            url = self.url(route.model, method)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["x-goog-api-key"] = key
        return UpstreamRequest(url, headers, orjson.dumps(body))

    def parse(self, ctx: RequestContext, request: Any, body: bytes) -> Any:
        model = _upstream_model(ctx, request)
        if isinstance(request, ir.EmbeddingRequest):
            return embed.parse(request, model, body)
        return chat.parse(body, model)

    def stream_parser(self, ctx: RequestContext, request: Any) -> chat.StreamParser:
        return chat.StreamParser(_upstream_model(ctx, request))

    def error_message(self, status: int, body: bytes) -> str:
        error = wire.decode_error(body)
        if error is not None and error.message:
            return error.describe()
        return super().error_message(status, body)

    def callers_fault(self, status: int, body: bytes) -> bool:
        return super().callers_fault(status, body) and not _ours(body)


def _upstream_model(ctx: RequestContext, request: Any) -> str:
    """The route's model name (this attempt's), for answers where Gemini does not name it."""
    return ctx.route.model.removeprefix("models/") if ctx.route else request.model


def _ours(body: bytes) -> bool:
    """A 400 that is about our side, not the caller's request: a rejected API key, or
    ``FAILED_PRECONDITION`` (the key's project has no billing, or the API is not offered where
    the router runs). Another route may well work."""
    error = wire.decode_error(body)
    if error is None:
        return False
    reasons = {d.get("reason") for d in error.details if isinstance(d, dict)}
    return (
        "API_KEY_INVALID" in reasons
        or "API key not valid" in error.message
        or error.status == "FAILED_PRECONDITION"
    )


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"google": GoogleProvider}
