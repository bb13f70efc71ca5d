"""Who is calling a plugin's or an admin endpoint: the same keys and the same
``lmrouter_authenticate`` hook as the model endpoints, first answer wins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmrouter import plugins
from lmrouter.context import Principal
from lmrouter.errors import RouterError, invalid_api_key
from lmrouter.guard import client_address, too_many_failures
from lmrouter.headers import MISSING_KEY, Headers, api_key_from

if TYPE_CHECKING:
    from starlette.requests import Request

    from lmrouter.gateway import Gateway

__all__ = ["is_operator", "require_principal"]


async def require_principal(request: Request) -> Principal:
    """For plugin and admin endpoints: the caller, or a 401 in their dialect (a 429 for an
    address that failed too often, as on the model endpoints)."""
    gateway: Gateway = request.app.state.gateway
    failures = gateway.guard.key_failures
    address = client_address(request.scope)
    wait = failures.retry_after(address)
    if wait:
        raise too_many_failures(wait)
    headers = Headers.from_scope(request.scope)
    key = api_key_from(headers, request.scope.get("query_string", b""))
    principal = None
    if key is not None:
        # first result wins, as on the proxy path: nothing after the first answer is called
        hook = plugins.Hook(gateway.pm, "lmrouter_authenticate")
        principal = await hook.first(gateway, key, headers)
    if principal is None:
        failures.failed(address)
        raise invalid_api_key(MISSING_KEY if key is None else "Invalid API key.")
    return principal


async def is_operator(request: Request) -> bool:
    """Whether the caller sent an admin key. A missing or wrong key is no error here (probes
    call without one), but a wrong one counts towards its address's failures like anywhere."""
    if api_key_from(Headers.from_scope(request.scope), request.scope["query_string"]) is None:
        return False
    try:
        principal = await require_principal(request)
    except RouterError:  # a wrong key, a throttled address, a suspended account: no details
        return False
    return principal.is_admin
