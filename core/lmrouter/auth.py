"""Who is calling a plugin's or an admin endpoint: the same keys and the same
``lmrouter_authenticate`` hook as the model endpoints, first answer wins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmrouter import plugins
from lmrouter.context import Principal
from lmrouter.errors import invalid_api_key
from lmrouter.proxy import Headers, api_key_from

if TYPE_CHECKING:
    from starlette.requests import Request

    from lmrouter.gateway import Gateway

__all__ = ["require_principal"]


async def require_principal(request: Request) -> Principal:
    """For plugin and admin endpoints: the caller, or a 401 in their dialect."""
    gateway: Gateway = request.app.state.gateway
    headers = Headers.from_scope(request.scope)
    key = api_key_from(headers, request.scope["query_string"])
    if key is None:
        raise invalid_api_key(
            "Missing API key: send it as `Authorization: Bearer …` or `x-api-key`."
        )
    # first result wins, as on the proxy path: nothing after the first answer is called
    principal = await plugins.Hook(gateway.pm, "lmrouter_authenticate").first(gateway, key, headers)
    if principal is None:
        raise invalid_api_key()
    return principal
