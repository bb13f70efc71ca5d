"""LMRouter provider plugin for AWS Bedrock: ``type = "bedrock"``, the Converse and
ConverseStream APIs (``POST /model/{modelId}/converse`` and ``/converse-stream`` on
``https://bedrock-runtime.{region}.amazonaws.com``, or ``base_url``).

Converse is model-agnostic, so one adapter serves Claude, Llama, Mistral, Nova and the rest;
a route's ``model`` is a Bedrock model id, inference profile id or ARN. Every caller dialect
converts through the IR (:mod:`lmrouter_bedrock.converse`); streams are AWS's binary event
stream, decoded by botocore (:mod:`lmrouter_bedrock.stream`).

Auth, per attempt: a key given to the adapter (``api_key``, or a user's own under ``byok``) is
a Bedrock API key, sent as ``Authorization: Bearer``; without one, requests are signed with
SigV4 (:mod:`lmrouter_bedrock.auth`) using ``access_key_id`` / ``secret_access_key`` /
``session_token`` or the AWS credential chain. Secrets are never logged nor echoed: error
messages are redacted of every key and secret the adapter holds.

Errors: ``ValidationException`` (400) is the caller's (answered at once), except the ones that
name this route's own setup (an invalid model id, a model without on-demand throughput);
``AccessDeniedException`` 403, ``ResourceNotFoundException`` 404, ``ThrottlingException`` 429,
``ModelNotReadyException`` / ``ServiceUnavailableException`` 503, ``ModelTimeoutException``
408, ``ModelErrorException`` 424 and 5xx move on to the next route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import msgspec
import orjson
from botocore.credentials import Credentials

from lmrouter import (
    Provider,
    ProviderConfig,
    UpstreamFailure,
    UpstreamRequest,
    capabilities,
    hookimpl,
    ir,
    structured,
)
from lmrouter_bedrock.auth import Signer, default_region
from lmrouter_bedrock.converse import (
    chat_response,
    converse_request,
    count_tokens_request,
    decode_response,
)
from lmrouter_bedrock.stream import ConverseStreamParser

api_version = ">=1.3, <2"  # the hook API versions this plugin is written for

if TYPE_CHECKING:
    from lmrouter import RequestContext, Route

HOSTED: frozenset[str] = frozenset()  # no hosted tools through Converse
# 400s that are about this route's setup, not the caller's request: the next route is tried.
ROUTE_PROBLEMS = (
    b"model identifier is invalid",
    b"on-demand throughput",
    b"inference profile",
    b"don't have access to the model",
)


class BedrockConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    # ``{region}`` is replaced by the region (a FIPS endpoint: bedrock-runtime-fips.{region}…)
    base_url: str = "https://bedrock-runtime.{region}.amazonaws.com"
    region: str = ""  # default: the AWS chain's (AWS_REGION …), else us-east-1
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    profile: str = ""  # a profile of the shared AWS config files, for the credential chain

    def own_credentials(self) -> bool:
        return True  # without keys here, the AWS credential chain's (checked at start)


class BedrockProvider(Provider):
    type = "bedrock"
    Config = BedrockConfig
    converts = frozenset({"chat"})
    # A key given to the adapter is a Bedrock API key and then the only credential sent.
    user_keys = True

    def __init__(self, name: str, config: BedrockConfig) -> None:
        region = config.region or default_region(config.profile)
        if "{region}" in config.base_url:
            config = msgspec.structs.replace(
                config, base_url=config.base_url.replace("{region}", region)
            )
        super().__init__(name, config)
        static = None
        if config.access_key_id or config.secret_access_key:
            static = Credentials(
                config.access_key_id, config.secret_access_key, config.session_token or None
            )
        self.signer = Signer(region, static, config.profile)
        self.bedrock = config
        self._urls: dict[tuple[str, str], str] = {}

    # -- URLs and headers ---------------------------------------------------------------------

    def url(self, model: str, operation: str) -> str:
        """``{base}/model/{id}/{operation}``. The id is escaped as aiohttp sends it (``:``
        stays, ``/`` in an ARN becomes ``%2F``), so that the signed path is the sent one."""
        url = self._urls.get((model, operation))
        if url is None:
            url = f"{self.base_url}/model/{quote(model, safe=':@')}/{operation}"
            self._urls[(model, operation)] = url
        return url

    def _headers(self, key: str, stream: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if stream:
            headers["Accept"] = "application/vnd.amazon.eventstream"
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.bedrock.secret_access_key, self.bedrock.session_token, *self.signer.secrets)

    # -- requests -----------------------------------------------------------------------------

    def build(
        self, ctx: RequestContext, request: ir.ChatRequest, route: Route, key: str
    ) -> UpstreamRequest:
        request = capabilities.fit(ctx, request, hosted=HOSTED)
        if request.response_format is not None:
            request = structured.as_tool_request(request)
        body = converse_request(request, route.model)
        operation = "converse-stream" if request.stream else "converse"
        return UpstreamRequest(
            self.url(route.model, operation),
            self._headers(key, request.stream),
            orjson.dumps(body),
        )

    def count_tokens(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest | None:
        """Bedrock's CountTokens, for the models that have it (Claude); the others are
        estimated by the router."""
        if ctx.ir is None or "anthropic." not in route.model:
            return None
        body = count_tokens_request(ctx.ir, route.model)
        url = self.url(route.model, "count-tokens")
        return UpstreamRequest(url, self._headers(key, False), orjson.dumps(body))

    def token_count(self, body: bytes) -> int:
        count = orjson.loads(body).get("inputTokens")
        if type(count) is not int:
            raise ValueError("no inputTokens in the count")
        return count

    async def open(
        self, request: UpstreamRequest, *, stream: bool, budget: float
    ) -> aiohttp.ClientResponse:
        if "Authorization" not in request.headers:  # no API key: SigV4, signed just now
            headers = await self.signer.sign(request.url, request.headers, request.body)
            request = request._replace(headers=headers)
        return await super().open(request, stream=stream, budget=budget)

    # -- answers ------------------------------------------------------------------------------

    def parse(self, ctx: RequestContext, request: ir.ChatRequest, body: bytes) -> ir.ChatResponse:
        try:
            answer = decode_response(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamFailure(
                f"{self.name}: unreadable answer ({exc})",
                status=502,
                retryable=True,
                upstream_status=200,
            ) from None
        response = chat_response(answer, _answer_id(ctx), _model(ctx))
        fmt = request.response_format if request is not None else None
        if fmt is not None:
            response = structured.from_tool_answer(response, fmt)
        return response

    def stream_parser(self, ctx: RequestContext, request: ir.ChatRequest) -> Any:
        parser = ConverseStreamParser(_answer_id(ctx), _model(ctx), self.secrets)
        fmt = request.response_format if request is not None else None
        if fmt is not None:
            return structured.ToolAnswerStream(parser, fmt)
        return parser

    # -- errors -------------------------------------------------------------------------------

    def error_message(self, status: int, body: bytes) -> str:
        """Bedrock's ``{"message"}`` (or the gateway's ``{"Message"}``), with every secret of
        this adapter taken out first (a message cut short may hold the start of one)."""
        for secret in self.secrets:
            if secret:
                body = body.replace(secret.encode(), b"***")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            message = doc.get("message") or doc.get("Message")
            if isinstance(message, str):
                return message
        return super().error_message(status, body)

    def callers_fault(self, status: int, body: bytes) -> bool:
        if status == 400 and any(problem in body for problem in ROUTE_PROBLEMS):
            return False
        return super().callers_fault(status, body)


def _answer_id(ctx: RequestContext) -> str:
    # Converse answers carry no id of their own: the router's request id stands for it.
    return f"msg_bdrk_{getattr(ctx, 'request_id', '')}"


def _model(ctx: RequestContext) -> str:
    """The upstream model of the route being tried."""
    route = getattr(ctx, "route", None)
    return route.model if route is not None else ""


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"bedrock": BedrockProvider}
