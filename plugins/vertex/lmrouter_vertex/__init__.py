"""LMRouter provider plugin for Google Vertex AI: Gemini (``type = "vertex"``) and Anthropic's
Claude (``type = "vertex-anthropic"``) on Vertex.

``base_url`` is the regional endpoint (``https://us-east5-aiplatform.googleapis.com``, or
``https://aiplatform.googleapis.com`` for ``location = "global"``); ``project`` and
``location`` name where the models are served. Requests go to
``/v1/projects/{project}/locations/{location}/publishers/{google|anthropic}/models/{model}``:

- Gemini: ``:generateContent`` / ``:streamGenerateContent?alt=sse`` / ``:countTokens``, the
  Gemini wire format, so the google plugin's conversions serve every dialect and Gemini's own
  API passes through.
- Claude: ``:rawPredict`` / ``:streamRawPredict`` with the Messages body minus ``model`` plus
  ``anthropic_version: "vertex-2023-10-16"``, so Messages callers pass through and the
  anthropic plugin's conversions serve the rest.

Auth: a bearer token from google-auth (see :mod:`lmrouter_vertex.auth`), refreshed before it
expires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson

from lmrouter import Provider, ProviderConfig, UpstreamRequest, hookimpl
from lmrouter_anthropic import AnthropicConfig, AnthropicProvider
from lmrouter_google import GoogleProvider
from lmrouter_vertex.auth import GoogleToken

api_version = ">=1.3, <2"  # the hook API versions this plugin is written for

if TYPE_CHECKING:
    from lmrouter import RequestContext, Route

ANTHROPIC_VERSION = "vertex-2023-10-16"


class VertexConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    project: str
    location: str = "us-central1"
    credentials_file: str = ""  # a service-account key (JSON); empty: api_key or ADC

    def own_credentials(self) -> bool:
        return True  # api_key, the credentials file, or Application Default Credentials


class VertexAnthropicConfig(AnthropicConfig, kw_only=True, forbid_unknown_fields=True):
    project: str
    location: str = "us-east5"
    credentials_file: str = ""
    anthropic_version: str = ANTHROPIC_VERSION  # sent in the body, as Vertex wants it

    def own_credentials(self) -> bool:
        return True  # as VertexConfig


def _publisher(base_url: str, config: Any, publisher: str) -> str:
    project = quote(config.project, safe="")
    location = quote(config.location, safe="")
    root = base_url.removesuffix("/v1")
    return f"{root}/v1/projects/{project}/locations/{location}/publishers/{publisher}"


class _Bearer:
    """Vertex wants ``Authorization: Bearer``: a token google-auth keeps fresh, fetched per
    attempt (``open`` is the first async step), or ``api_key`` as a token made elsewhere."""

    token: GoogleToken

    def _auth(self, key: str) -> dict[str, str]:
        # With credentials the token is added per attempt in open(); a BYOK key is a token.
        if self.token.dynamic:
            return {}
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def open(
        self, request: UpstreamRequest, *, stream: bool, budget: float
    ) -> aiohttp.ClientResponse:
        if self.token.dynamic:
            token = await self.token.get()
            request = request._replace(
                headers={**request.headers, "Authorization": f"Bearer {token}"}
            )
        return await super().open(request, stream=stream, budget=budget)  # type: ignore[misc]


class VertexProvider(_Bearer, GoogleProvider):
    type = "vertex"
    Config = VertexConfig  # type: ignore[assignment]

    def __init__(self, name: str, config: VertexConfig) -> None:
        Provider.__init__(self, name, config)
        self.root = _publisher(self.base_url, config, "google")
        self.token = GoogleToken(config.credentials_file, config.api_key)

    def _headers(self, key: str) -> dict[str, str]:
        return {"Content-Type": "application/json", **self._auth(key)}


class VertexAnthropicProvider(_Bearer, AnthropicProvider):
    type = "vertex-anthropic"
    Config = VertexAnthropicConfig  # type: ignore[assignment]  # a narrower config, as intended

    def __init__(self, name: str, config: VertexAnthropicConfig) -> None:
        super().__init__(name, config)
        self.root = _publisher(self.base_url, config, "anthropic")
        self.anthropic_version = config.anthropic_version
        self.token = GoogleToken(config.credentials_file, config.api_key)

    def headers(self, ctx: RequestContext, key: str) -> dict[str, str]:
        headers = {"content-type": "application/json", **self._auth(key)}
        if beta := ctx.headers.get("anthropic-beta"):
            headers["anthropic-beta"] = beta
        return headers

    def _vertex(self, request: UpstreamRequest, model: str, stream: bool) -> UpstreamRequest:
        doc = orjson.loads(request.body)
        doc.pop("model", None)
        doc["anthropic_version"] = self.anthropic_version
        method = "streamRawPredict" if stream else "rawPredict"
        url = f"{self.root}/models/{quote(model, safe='@-._~')}:{method}"
        return request._replace(url=url, body=orjson.dumps(doc))

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        return self._vertex(super().prepare(ctx, route, key), route.model, ctx.stream)

    def build(self, ctx: RequestContext, request: Any, route: Route, key: str) -> UpstreamRequest:
        return self._vertex(super().build(ctx, request, route, key), route.model, ctx.stream)


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"vertex": VertexProvider, "vertex-anthropic": VertexAnthropicProvider}
