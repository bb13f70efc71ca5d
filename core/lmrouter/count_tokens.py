"""``POST /v1/messages/count_tokens``: Anthropic's token counting, for any model.

The model's first route answers: a provider with a counter of its own counts (Anthropic's
endpoint, forwarded; Gemini's ``countTokens`` on the converted request), and for the others, or
when that counter fails, the router estimates from the request's size. The response header
``x-lmrouter-token-count`` says which: ``provider`` or ``estimate``. Counting is free upstream,
so it spends no credits and takes no admission hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from lmrouter.context import RequestContext
from lmrouter.dialects.anthropic import _load_object
from lmrouter.errors import RouterError, invalid_request, model_not_found
from lmrouter.providers import UpstreamFailure
from lmrouter.usage import estimate_tokens

if TYPE_CHECKING:
    from lmrouter.gateway import Gateway

log = structlog.get_logger("lmrouter.count_tokens")

HEADER = "x-lmrouter-token-count"


async def count_tokens(request: Request) -> Response:
    from lmrouter.app import require_principal  # the app module builds the routes

    principal = await require_principal(request)
    gateway: Gateway = request.app.state.gateway
    body = await request.body()
    doc = _load_object(body)
    model_id = doc.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise invalid_request("model: Field required", "model")
    if not isinstance(doc.get("messages"), list):
        raise invalid_request("messages: Field required", "messages")
    model = gateway.models.get(model_id)
    if model is None:
        raise model_not_found(model_id)
    route = model.routes[0]
    provider = gateway.providers[route.provider]
    ctx = RequestContext(
        gateway=gateway,
        request_id=request.scope.get("lmrouter.request_id", ""),
        dialect="anthropic.count_tokens",
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        doc=doc,
        model=model,
        principal=principal,
    )
    ctx.route = route
    tokens = await _provider_count(ctx, provider, route)
    how = "provider"
    if tokens is None:
        tokens, how = estimate_tokens(len(body)), "estimate"
    return Response(
        orjson.dumps({"input_tokens": tokens}),
        media_type="application/json",
        headers={HEADER: how},
    )


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
        return provider.token_count(data)
    except (UpstreamFailure, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("token count failed", provider=provider.name, error=str(exc))
        return None
