"""Token counting for any model: Anthropic's ``POST /v1/messages/count_tokens`` and Gemini's
``POST /v1beta/models/{model}:countTokens``.

The model's first route answers: a provider with a counter of its own counts (Anthropic's
endpoint; Gemini's ``countTokens``), given the request as it came when it speaks the caller's
dialect, else converted through the IR; for the others, or when that counter fails, the router
estimates from the request's size. The response header ``x-lmrouter-token-count`` says which:
``provider`` or ``estimate``. Counting is free upstream, so it spends no credits and takes no
admission hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from lmrouter.auth import require_principal
from lmrouter.context import RequestContext
from lmrouter.dialects import anthropic, gemini
from lmrouter.errors import RouterError, invalid_request, model_not_found
from lmrouter.providers import UpstreamFailure
from lmrouter.usage import estimate_tokens

if TYPE_CHECKING:
    from lmrouter.gateway import Gateway

log = structlog.get_logger("lmrouter.count_tokens")

HEADER = "x-lmrouter-token-count"


async def messages_count_tokens(request: Request) -> Response:
    body = await request.body()
    doc = anthropic._load_object(body)
    model_id = doc.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise invalid_request("model: Field required", "model")
    if not isinstance(doc.get("messages"), list):
        raise invalid_request("messages: Field required", "messages")
    # A count needs no limit (Anthropic's counter refuses one), but the converter wants one.
    tokens, how = await _count(
        request, anthropic.MESSAGES, model_id, body, doc, {"max_tokens": 1, **doc}
    )
    if how == "estimate":
        tokens = estimate_tokens(len(body))
    return _answer({"input_tokens": tokens}, how)


async def gemini_count_tokens(request: Request) -> Response:
    """``{contents}`` or ``{generateContentRequest}``, as Gemini takes either."""
    body = await request.body()
    doc = gemini._load(body)
    inner = doc.get("generateContentRequest") or doc.get("generate_content_request")
    counted = inner if isinstance(inner, dict) else doc
    if not isinstance(counted.get("contents"), list):
        raise invalid_request("contents: at least one content is required.", "contents")
    model_id = request.path_params["model_id"].removeprefix("models/")
    tokens, how = await _count(request, gemini.GENERATE, model_id, body, counted, counted)
    if how == "estimate":
        tokens = estimate_tokens(len(gemini.text_of(body)))
    return _answer({"totalTokens": tokens}, how)


def _answer(payload: dict[str, int], how: str) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json", headers={HEADER: how})


async def _count(
    request: Request,
    dialect: Any,
    model_id: str,
    body: bytes,
    doc: dict[str, Any],
    ir_doc: dict[str, Any],
) -> tuple[int, str]:
    """``doc`` as it came (what a provider of the caller's dialect is given), ``ir_doc`` what
    the converter reads."""
    principal = await require_principal(request)
    gateway: Gateway = request.app.state.gateway
    model = gateway.models.get(model_id)
    if model is None:
        raise model_not_found(model_id)
    route = model.routes[0]
    provider = gateway.providers[route.provider]
    ctx = RequestContext(
        gateway=gateway,
        request_id=request.scope.get("lmrouter.request_id", ""),
        dialect=dialect.name,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        doc=doc,
        model=model,
        principal=principal,
    )
    ctx.route = route
    if dialect.name not in provider.native_dialects and dialect.to_ir is not None:
        # a 400 naming the field, as the request itself would get
        ctx.ir = dialect.to_ir({**ir_doc, "model": model_id})
    tokens = await _provider_count(ctx, provider, route)
    return (0, "estimate") if tokens is None else (tokens, "provider")


async def _provider_count(ctx: RequestContext, provider: Any, route: Any) -> int | None:
    """The provider's own count, or ``None`` when it has none or it failed (the estimate then
    stands in: a caller asking for a count wants a number, not a 502)."""
    key = provider.config.api_key
    upstream = provider.count_tokens(ctx, route, key)
    if upstream is None:
        return None
    try:
        budget = provider.config.connect_timeout * 3
        response = await provider.open(upstream, stream=False, budget=budget)
        try:
            if response.status >= 400:
                failure = await provider.read_error(response, key)
                if not failure.retryable:  # the caller's request is at fault: say so
                    raise RouterError(failure.status, failure.message, code="invalid_request")
                log.info("token count failed", provider=provider.name, error=failure.message)
                return None
            data = await response.read()
        finally:
            response.release()
        count: int = provider.token_count(data)
        return count
    except (UpstreamFailure, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("token count failed", provider=provider.name, error=str(exc))
        return None
