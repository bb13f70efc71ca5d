"""LMRouter provider plugin for OpenAI and every OpenAI-compatible API.

``type = "openai"`` works for api.openai.com and for vendors that speak the same Chat Completions
wire format (Groq, Together, DeepSeek, Mistral, xAI, Fireworks, OpenRouter, vLLM, Ollama…): set
``base_url`` to the vendor's ``…/v1`` address. Requests pass through byte-for-byte apart from the
model name and, for streams, ``stream_options.include_usage`` (so every stream can be metered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import orjson
from lmrouter import hookimpl
from lmrouter.providers import Provider, ProviderConfig, UpstreamRequest

if TYPE_CHECKING:
    from lmrouter.config import Route
    from lmrouter.context import RequestContext


class OpenAIConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    organization: str = ""  # OpenAI-Organization header
    project: str = ""  # OpenAI-Project header
    stream_usage: bool = True  # ask for usage in streams; turn off for a server that rejects it


class OpenAIProvider(Provider):
    type = "openai"
    Config = OpenAIConfig
    native_dialects = frozenset({"openai.chat", "openai.embeddings"})
    paths: ClassVar[dict[str, str]] = {
        "openai.chat": "/chat/completions",
        "openai.embeddings": "/embeddings",
    }

    def __init__(self, name: str, config: OpenAIConfig) -> None:
        super().__init__(name, config)
        self.urls = {dialect: self.base_url + path for dialect, path in self.paths.items()}
        self.static_headers = {"Content-Type": "application/json"}
        if config.organization:
            self.static_headers["OpenAI-Organization"] = config.organization
        if config.project:
            self.static_headers["OpenAI-Project"] = config.project
        self.stream_usage = config.stream_usage

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        doc = ctx.doc
        body = ctx.body
        changes = doc.get("model") != route.model
        if ctx.stream and self.stream_usage:
            options = doc.get("stream_options")
            changes = changes or not (isinstance(options, dict) and options.get("include_usage"))
        if changes:
            doc = {**doc, "model": route.model}
            if ctx.stream and self.stream_usage:
                doc["stream_options"] = {**(doc.get("stream_options") or {}), "include_usage": True}
            body = orjson.dumps(doc)
        headers = dict(self.static_headers)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return UpstreamRequest(self.urls[ctx.dialect], headers, body)


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"openai": OpenAIProvider}
