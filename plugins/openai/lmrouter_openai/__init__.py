"""LMRouter provider plugin for OpenAI and every OpenAI-compatible API.

``type = "openai"`` works for api.openai.com and for vendors that speak the same Chat Completions
wire format (Groq, Together, DeepSeek, Mistral, xAI, Fireworks, OpenRouter, vLLM, Ollama…): set
``base_url`` to the vendor's ``…/v1`` address. Requests pass through byte-for-byte apart from the
model name, for chat streams ``stream_options.include_usage`` (so every stream can be metered),
and the output limit: one the request did not set is added (the limit its credit hold assumed),
in the field ``max_tokens_field`` names. ``/v1/responses`` passes through too (``responses =
false`` converts it to Chat Completions instead, for servers without the Responses API).

Callers in other dialects (Anthropic Messages, Gemini) reach these models through the internal
representation: see :mod:`lmrouter_openai.chat` for what is converted and how.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec
import orjson

from lmrouter import (
    Provider,
    ProviderConfig,
    UpstreamFailure,
    UpstreamRequest,
    capabilities,
    hookimpl,
    ir,
)
from lmrouter.wire.openai import WireUsage
from lmrouter_openai.chat import (
    ChatStreamParser,
    parse_completion,
    reasoning_default,
    request_body,
)

api_version = ">=1.7, <2"  # hook API versions this plugin is written for (1.7: CannotServe)

if TYPE_CHECKING:
    from lmrouter import RequestContext, Route


class OpenAIConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    organization: str = ""  # OpenAI-Organization header
    project: str = ""  # OpenAI-Project header
    stream_usage: bool = True  # ask for usage in streams; turn off for a server that rejects it
    # Where a request's output limit goes (converted, or passed through with the other name or
    # none): OpenAI's current name, or the deprecated one for compatible servers that only know
    # ``max_tokens``.
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    # Forward /v1/responses as it is (OpenAI, and servers that implement the Responses API).
    # Off: Responses requests are converted to Chat Completions, as for other providers.
    responses: bool = True


_JSON_ONLY = {"Content-Type": "application/json"}
_OTHER_FIELD = {"max_completion_tokens": "max_tokens", "max_tokens": "max_completion_tokens"}
_LIMIT_FIELD = {"openai.responses": "max_output_tokens"}  # embeddings have none


class OpenAIProvider(Provider):
    type = "openai"
    Config = OpenAIConfig
    native_dialects = frozenset({"openai.chat", "openai.embeddings", "openai.responses"})
    converts = frozenset({"chat", "embeddings"})
    user_keys = True  # the key given is the only credential sent
    paths: ClassVar[dict[str, str]] = {
        "openai.chat": "/chat/completions",
        "openai.embeddings": "/embeddings",
        "openai.responses": "/responses",
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
        self.max_tokens_field = config.max_tokens_field
        if not config.responses:
            self.native_dialects = self.native_dialects - {"openai.responses"}

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        doc = ctx.doc
        body = ctx.body
        changes = doc.get("model") != route.model
        # Chat streams carry usage only when asked; Responses streams always do.
        usage = ctx.stream and self.stream_usage and ctx.dialect == "openai.chat"
        if usage:
            options = doc.get("stream_options")
            changes = changes or not (isinstance(options, dict) and options.get("include_usage"))
        chat = ctx.dialect == "openai.chat"
        # The output limit that was held goes upstream in this server's own field: added when
        # the request set none, moved when it used the name this server ignores.
        field = _LIMIT_FIELD.get(ctx.dialect) if not chat else self.max_tokens_field
        limit_off = field is not None and doc.get(field) is None and ctx.output_limit
        if changes or limit_off:
            doc = {**doc, "model": route.model}
            if usage:
                doc["stream_options"] = {**(doc.get("stream_options") or {}), "include_usage": True}
            if limit_off and field is not None:
                other = doc.pop(_OTHER_FIELD[field], None) if chat else None
                doc[field] = other or ctx.output_limit
            body = orjson.dumps(doc)
        return UpstreamRequest(self.urls[ctx.dialect], self._headers(key), body)

    def build(self, ctx: RequestContext, request: Any, route: Route, key: str) -> UpstreamRequest:
        if isinstance(request, ir.EmbeddingRequest):
            doc: dict[str, Any] = {"model": route.model, "input": request.inputs}
            if request.dimensions:
                doc["dimensions"] = request.dimensions
            url = self.urls["openai.embeddings"]
            return UpstreamRequest(url, self._headers(key), orjson.dumps(doc))
        request = capabilities.fit(ctx, request, reasoning=reasoning_default(route.model))
        body = request_body(
            request,
            route.model,
            stream_usage=self.stream_usage,
            max_tokens_field=self.max_tokens_field,
        )
        return UpstreamRequest(self.urls["openai.chat"], self._headers(key), orjson.dumps(body))

    def parse(self, ctx: RequestContext, request: Any, body: bytes) -> Any:
        if isinstance(request, ir.EmbeddingRequest):
            return parse_embeddings(body, ctx.route.model if ctx.route else request.model)
        return parse_completion(body)

    def stream_parser(self, ctx: RequestContext, request: ir.ChatRequest) -> ChatStreamParser:
        return ChatStreamParser(request.n)

    def _headers(self, key: str) -> dict[str, str]:
        # The operator's organization and project go only with the operator's key: with a
        # user's own key (BYOK) they would name an account that is not the user's.
        headers = dict(self.static_headers if key == self.config.api_key else _JSON_ONLY)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers


class _Embedding(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Embeddings(msgspec.Struct):
    data: list[_Embedding]
    usage: WireUsage | None = None


def parse_embeddings(body: bytes, model: str) -> ir.EmbeddingResponse:
    """An ``/embeddings`` answer (float vectors: the request asked for no other encoding)."""
    try:
        answer = msgspec.json.decode(body, type=_Embeddings)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamFailure(
            "the embeddings answer could not be read", status=502, retryable=True,
            upstream_status=200,
        ) from None  # fmt: skip
    vectors = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
    usage = answer.usage.normalize() if answer.usage else None
    return ir.EmbeddingResponse(model=model, vectors=vectors, usage=usage)


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"openai": OpenAIProvider}
