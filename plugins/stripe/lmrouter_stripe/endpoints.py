"""``POST /v1/billing/checkout`` (a user starts a top-up) and ``POST /v1/billing/stripe/webhook``
(Stripe reports payments). Errors are OpenAI-style bodies, like every other endpoint's."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
import stripe
import structlog
from starlette.responses import JSONResponse
from starlette.routing import Route

from lmrouter import RouterError, invalid_request, require_principal
from lmrouter_stripe import checkout
from lmrouter_stripe.events import BadEvent, decode_event

if TYPE_CHECKING:
    from starlette.requests import Request

    from lmrouter_stripe.events import Processor

log = structlog.get_logger("lmrouter.stripe")

MAX_BODY = 1024 * 1024  # Stripe events are far smaller


class CheckoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount_usd: Decimal  # a JSON number or a decimal string, read exactly
    success_url: str
    cancel_url: str


class Endpoints:
    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin  # its processor exists once the server has started

    def routes(self) -> list[Route]:
        return [
            Route("/v1/billing/checkout", self.checkout, methods=["POST"]),
            Route("/v1/billing/stripe/webhook", self.webhook, methods=["POST"]),
        ]

    def _processor(self) -> Processor:
        processor: Processor | None = self.plugin.processor
        if processor is None:
            raise RouterError(
                503,
                "Buying credits is not available: it needs the accounts and credits plugins.",
                code="billing_not_configured",
            )
        return processor

    async def checkout(self, request: Request) -> JSONResponse:
        self._processor()
        principal = await require_principal(request)
        if principal.kind != "user" or principal.user_id is None:
            raise RouterError(
                403,
                "Only a user's API key can buy credits: operator and BYOK keys have no "
                "account to credit.",
                code="no_account",
            )
        body = await _body(request)
        try:
            wanted = msgspec.json.decode(body, type=CheckoutRequest)
        except msgspec.ValidationError as exc:
            raise invalid_request(f"Invalid body: {exc}", param=_field(exc)) from None
        except msgspec.DecodeError:
            raise invalid_request("The body must be a JSON object.") from None
        try:
            made = await checkout.create_checkout(
                request.app.state.gateway,
                principal.user_id,
                wanted.amount_usd,
                wanted.success_url,
                wanted.cancel_url,
            )
        except checkout.CheckoutError as exc:
            code = {400: "invalid_request", 503: "billing_not_configured"}.get(
                exc.status, "payment_provider_error"
            )
            raise RouterError(exc.status, exc.message, code=code, param=exc.param) from None
        q = made.quote
        return JSONResponse(
            {
                "id": made.id,
                "url": made.url,
                "credit_usd": str(q.credit_usd),
                "fee_usd": str(q.fee_usd),
                "total_usd": str(q.total_usd),
            }
        )

    async def webhook(self, request: Request) -> JSONResponse:
        processor = self._processor()
        config = processor.config
        if not config.webhook_enabled:
            raise RouterError(
                503,
                "Stripe webhooks are not configured ([stripe] webhook_secret is empty).",
                code="billing_not_configured",
            )
        body = await _body(request)
        try:
            # the official library's check: HMAC-SHA256 of "t.body", and t within the tolerance
            stripe.WebhookSignature.verify_header(
                body,
                request.headers.get("stripe-signature"),
                config.webhook_secret,
                config.webhook_tolerance,
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            log.warning("stripe webhook with a bad signature refused")
            raise invalid_request(
                "Invalid Stripe-Signature (wrong secret, altered body or stale timestamp).",
                param="Stripe-Signature",
            ) from None
        try:
            event = decode_event(body)
            outcome = await processor.process(event)
        except BadEvent as exc:
            raise invalid_request(str(exc)) from None
        log.info("stripe event", event_id=event.id, type=event.type, outcome=outcome)
        return JSONResponse({"received": True, "outcome": outcome})


async def _body(request: Request) -> bytes:
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > MAX_BODY:
        raise RouterError(413, f"Request body exceeds {MAX_BODY} bytes.", code="request_too_large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise RouterError(
                413, f"Request body exceeds {MAX_BODY} bytes.", code="request_too_large"
            )
    return body


def _field(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    for name in CheckoutRequest.__struct_fields__:
        if f"`{name}`" in text or f"`$.{name}`" in text:
            return name
    return None
