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

from lmrouter import (
    CannotServe,
    Provider,
    ProviderConfig,
    UpstreamRequest,
    capabilities,
    hookimpl,
    ir,
    structured,
)
from lmrouter.wire import gemini as wire
from lmrouter_google import chat, embed

api_version = ">=1.7, <2"  # hook API versions this plugin is written for (1.7: CannotServe)

if TYPE_CHECKING:
    from lmrouter import RequestContext, Route

__all__ = ["GoogleConfig", "GoogleProvider"]

_VERSIONS = ("v1beta", "v1", "v1alpha")


class GoogleConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    api_version: str = "v1beta"


class GoogleProvider(Provider):
    type = "google"
    Config = GoogleConfig
    converts = frozenset({"chat", "embeddings"})
    native_dialects = frozenset({"gemini.generate"})  # Gemini's own API, forwarded as it is
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
            # Gemini 2.x runs Google Search grounding only without function calling or a
            # JSON answer: otherwise a web search is left out like any other hosted tool.
            alone = not request.tools and request.response_format is None
            request = capabilities.fit(
                ctx,
                request,
                reasoning=chat.reasoning_default(route.model),
                hosted=frozenset({"web_search"}) if alone else frozenset(),
            )
            if answers_by_tool(request):
                if ctx.stream and request.n > 1:  # the tool-answer stream reads one candidate
                    raise CannotServe(
                        "candidateCount: a streamed JSON answer alongside function tools has one "
                        "candidate on Gemini; ask for 1, or without streaming.",
                        "n",
                    )
                request = structured.as_tool_request(request)
            body = chat.build(request, route.model)
            method = "streamGenerateContent?alt=sse" if ctx.stream else "generateContent"
            url = self.url(route.model, method)
        return UpstreamRequest(url, self._headers(key), orjson.dumps(body))

    def parse(self, ctx: RequestContext, request: Any, body: bytes) -> Any:
        model = _upstream_model(ctx, request)
        if isinstance(request, ir.EmbeddingRequest):
            return embed.parse(request, model, body)
        answer = chat.parse(body, model)
        if request.response_format is not None and answers_by_tool(request):
            answer = structured.from_tool_answer(answer, request.response_format)
        return answer

    def stream_parser(self, ctx: RequestContext, request: Any) -> Any:
        parser = chat.StreamParser(_upstream_model(ctx, request), request.n)
        if request.response_format is not None and answers_by_tool(request):
            return structured.ToolAnswerStream(parser, request.response_format)
        return parser

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        """Gemini's own request as it came, but for the output limit its credit hold assumed:
        added when the request set none (so the provider cannot generate more)."""
        method = "streamGenerateContent?alt=sse" if ctx.stream else "generateContent"
        body = ctx.body
        config = ctx.doc.get("generationConfig") or ctx.doc.get("generation_config") or {}
        if ctx.output_limit and not {"maxOutputTokens", "max_output_tokens"} & config.keys():
            doc = {k: v for k, v in ctx.doc.items() if k not in ("model", "stream")}
            doc.pop("generation_config", None)
            doc["generationConfig"] = {**config, "maxOutputTokens": ctx.output_limit}
            body = orjson.dumps(doc)
        return UpstreamRequest(self.url(route.model, method), self._headers(key), body)

    def count_tokens(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        """Gemini's ``countTokens``: a Gemini request as it came, any other as it would be
        converted for ``generateContent``."""
        model = route.model.removeprefix("models/")
        if ctx.dialect in self.native_dialects:
            return UpstreamRequest(self.url(model, "countTokens"), self._headers(key), ctx.body)
        assert isinstance(ctx.ir, ir.ChatRequest)
        inner = chat.build(ctx.ir)
        inner.pop("generationConfig", None)  # only what is input counts
        body = {"generateContentRequest": {"model": f"models/{model}", **inner}}
        return UpstreamRequest(
            self.url(model, "countTokens"), self._headers(key), orjson.dumps(body)
        )

    def token_count(self, body: bytes) -> int:
        count = orjson.loads(body).get("totalTokens", 0)  # proto3 JSON leaves out a zero
        if type(count) is not int:
            raise ValueError("no totalTokens in the count")
        return count

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["x-goog-api-key"] = key
        return headers

    def error_message(self, status: int, body: bytes) -> str:
        error = wire.decode_error(body)
        if error is not None and error.message:
            return error.describe()
        return super().error_message(status, body)

    def callers_fault(self, status: int, body: bytes) -> bool:
        return super().callers_fault(status, body) and not _ours(body)


def answers_by_tool(request: ir.ChatRequest) -> bool:
    """Gemini takes a response schema (``responseJsonSchema``) but not together with function
    calling (2.x models answer 400 "Function calling with a response mime type:
    'application/json' is unsupported"): with tools in play, the answer comes through a forced
    function instead (:mod:`lmrouter.structured`)."""
    return request.response_format is not None and bool(request.tools)


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
