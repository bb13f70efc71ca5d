"""LMRouter provider plugin for Azure OpenAI: ``type = "azure"``.

``base_url`` is the resource endpoint (``https://RESOURCE.openai.azure.com``). A route's
``model`` is the *deployment* name. Two URL schemes:

- deployment URLs (the default): ``/openai/deployments/{deployment}/chat/completions
  ?api-version=…`` (``api_version`` in the config);
- the v1 OpenAI-compatible path (``v1 = true``): ``/openai/v1/chat/completions`` with the
  deployment as the body's ``model``, no api-version.

Auth: the ``api-key`` header (``auth = "api-key"``, the default), or a Microsoft Entra ID bearer
token (``auth = "entra"``): fetched with the client-credentials flow when ``tenant_id``,
``client_id`` and ``client_secret`` are set, and refreshed before it expires; otherwise
``api_key`` is taken as a token obtained elsewhere.

Azure OpenAI speaks OpenAI's wire format, so the OpenAI adapter's conversions serve callers
in every other dialect. Azure's additions are mapped: a ``content_filter`` finish reason
becomes the caller's dialect's (Anthropic's ``refusal``, Gemini's ``SAFETY``…); a prompt the
content filter refused (400 ``content_filter``) is the caller's to fix and goes back to them
with Azure's words; 401/403/404 (bad key, unknown deployment) and 429 move to the next route.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import aiohttp
import msgspec

from lmrouter import Provider, UpstreamFailure, UpstreamRequest, hookimpl, ir
from lmrouter_openai import OpenAIConfig, OpenAIProvider

api_version = ">=1.3, <2"  # the hook API versions this plugin is written for

if TYPE_CHECKING:
    from lmrouter import RequestContext, Route

REFRESH_MARGIN = 300.0  # seconds before expiry when an Entra ID token is replaced


class AzureConfig(OpenAIConfig, kw_only=True, forbid_unknown_fields=True):
    api_version: str = "2024-10-21"  # for deployment URLs
    v1: bool = False  # the /openai/v1/ path instead of deployment URLs
    auth: Literal["api-key", "entra"] = "api-key"
    tenant_id: str = ""  # Entra ID client credentials (auth = "entra")
    client_id: str = ""
    client_secret: str = ""
    authority: str = "https://login.microsoftonline.com"
    scope: str = "https://cognitiveservices.azure.com/.default"

    def own_credentials(self) -> bool:
        return bool(self.api_key) or (self.auth == "entra" and bool(self.client_secret))


class _Token(msgspec.Struct):
    access_token: str
    expires_in: int


class EntraToken:
    """A client-credentials token, fetched on first use and replaced ``REFRESH_MARGIN``
    seconds before it expires (one fetch at a time, however many requests wait)."""

    def __init__(self, config: AzureConfig) -> None:
        self.url = f"{config.authority.rstrip('/')}/{quote(config.tenant_id)}/oauth2/v2.0/token"
        self.form = {
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "scope": config.scope,
        }
        self.secret = config.client_secret
        self.token = ""
        self.expires = 0.0
        self.lock = asyncio.Lock()

    async def get(self, session: aiohttp.ClientSession, wait: float) -> str:
        if time.monotonic() < self.expires - REFRESH_MARGIN:
            return self.token
        async with self.lock:
            if time.monotonic() < self.expires - REFRESH_MARGIN:
                return self.token
            try:
                async with session.post(
                    self.url, data=self.form, timeout=aiohttp.ClientTimeout(total=wait)
                ) as response:
                    body = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _token_failure(f"{type(exc).__name__}") from None
            if status != 200:
                raise _token_failure(f"HTTP {status}")
            try:
                token = msgspec.json.decode(body, type=_Token)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise _token_failure("an unreadable answer") from None
            self.token = token.access_token
            self.expires = time.monotonic() + token.expires_in
            return self.token


def _token_failure(why: str) -> UpstreamFailure:
    # Never the client secret: only what went wrong.
    return UpstreamFailure(
        f"Entra ID token request failed: {why}", status=502, retryable=True, upstream_status=None
    )


class AzureProvider(OpenAIProvider):
    type = "azure"
    Config = AzureConfig
    # Responses requests convert to Chat Completions here: deployment URLs have no
    # /responses path this adapter knows.
    native_dialects = frozenset({"openai.chat", "openai.embeddings"})

    def __init__(self, name: str, config: AzureConfig) -> None:
        super().__init__(name, config)
        root = self.base_url.removesuffix("/v1").removesuffix("/openai")
        self.root = root + "/openai"
        self.azure = config
        self.entra = EntraToken(config) if config.auth == "entra" and config.client_id else None
        # Azure wants neither OpenAI-Organization nor OpenAI-Project.
        self.static_headers = {"Content-Type": "application/json"}

    def url(self, dialect: str, deployment: str) -> str:
        path = self.paths[dialect]
        if self.azure.v1:
            return f"{self.root}/v1{path}"
        version = quote(self.azure.api_version)
        return f"{self.root}/deployments/{quote(deployment, safe='')}{path}?api-version={version}"

    def _headers(self, key: str) -> dict[str, str]:
        headers = dict(self.static_headers)
        if self.entra is not None:
            return headers  # the token is added per attempt, in open()
        if key:
            if self.azure.auth == "entra":
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers["api-key"] = key
        return headers

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        request = super().prepare(ctx, route, key)
        return request._replace(url=self.url(ctx.dialect, route.model))

    def build(self, ctx: RequestContext, request: Any, route: Route, key: str) -> UpstreamRequest:
        built = super().build(ctx, request, route, key)
        dialect = "openai.embeddings" if isinstance(request, ir.EmbeddingRequest) else "openai.chat"
        return built._replace(url=self.url(dialect, route.model))

    async def open(
        self, request: UpstreamRequest, *, stream: bool, budget: float
    ) -> aiohttp.ClientResponse:
        if self.entra is not None:
            assert self.session is not None, "provider used before start()"
            token = await self.entra.get(self.session, min(budget, self.config.connect_timeout * 3))
            headers = {**request.headers, "Authorization": f"Bearer {token}"}
            request = request._replace(headers=headers)
        return await super().open(request, stream=stream, budget=budget)


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"azure": AzureProvider}
