"""One async Stripe API client per running gateway: the official library's async methods on
aiohttp (``stripe.AIOHTTPClient``), so a call to Stripe never blocks the event loop."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import stripe

if TYPE_CHECKING:
    from lmrouter_stripe.config import StripeConfig

# Keyed by the gateway, so a plugin that calls create_checkout() needs nothing but the gateway.
_clients: weakref.WeakKeyDictionary[Any, tuple[stripe.StripeClient, stripe.AIOHTTPClient]] = (
    weakref.WeakKeyDictionary()
)


def client_for(gateway: Any, settings: StripeConfig) -> stripe.StripeClient:
    found = _clients.get(gateway)
    if found is None:
        http = stripe.AIOHTTPClient(timeout=30)
        client = stripe.StripeClient(
            settings.secret_key,
            base_addresses={"api": settings.api_base.rstrip("/")},
            http_client=http,
            max_network_retries=2,  # the library sends an Idempotency-Key: a retry is safe
        )
        found = _clients[gateway] = (client, http)
    return found[0]


async def close(gateway: Any) -> None:
    found = _clients.pop(gateway, None)
    if found is not None:
        await found[1].close_async()
