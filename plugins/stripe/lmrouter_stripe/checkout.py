"""Buying credits: the price of a top-up (:func:`quote`) and its Stripe Checkout Session
(:func:`create_checkout`). Public API for other plugins (the dashboard's "buy credits" page):

    from lmrouter_stripe.checkout import CheckoutError, create_checkout, quote, settings

    q = quote(settings(gateway), Decimal("20"))        # q.credit_usd, q.fee_usd, q.total_usd
    checkout = await create_checkout(gateway, user_id, Decimal("20"), success_url, cancel_url)
    # redirect the browser to checkout.url; the webhook credits the user once Stripe is paid

The user pays the credit and a processing fee (``fee_percent`` of the credit plus
``fee_fixed_usd``, rounded *up* to whole cents so the operator never pays for a top-up); the fee
is its own line item on Stripe's page. The session's metadata carries the user id and the
credit, which the webhook credits (never the fee).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import msgspec
import stripe
import structlog

from lmrouter_credits import clock
from lmrouter_stripe import client
from lmrouter_stripe.config import SECTION, StripeConfig

if TYPE_CHECKING:
    from lmrouter import Gateway

__all__ = ["Checkout", "CheckoutError", "Quote", "create_checkout", "quote", "settings"]

log = structlog.get_logger("lmrouter.stripe")

CENT = Decimal("0.01")
PICO_PER_CENT = 10**10
META_USER = "lmrouter_user_id"
META_CREDIT = "lmrouter_credit_usd"
_EXACT = Context(prec=60)  # wide enough that no product here is ever rounded
MAX_URL = 2048


class CheckoutError(Exception):
    """A top-up that cannot be made; ``message`` can be shown to the user as it is."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, if any
        self.status = status  # 400 the caller's mistake, 503 not configured, 502 Stripe failed


class Quote(msgspec.Struct, frozen=True):
    """What a top-up costs, in USD with two decimals: ``total_usd = credit_usd + fee_usd``."""

    credit_usd: Decimal
    fee_usd: Decimal
    total_usd: Decimal

    @property
    def credit_cents(self) -> int:
        return int(self.credit_usd.scaleb(2))

    @property
    def fee_cents(self) -> int:
        return int(self.fee_usd.scaleb(2))

    @property
    def total_cents(self) -> int:
        return int(self.total_usd.scaleb(2))

    @property
    def credit_pico(self) -> int:
        return self.credit_cents * PICO_PER_CENT


class Checkout(msgspec.Struct, frozen=True):
    """A Checkout Session to send the user to: ``url`` is Stripe's payment page."""

    id: str
    url: str
    quote: Quote


def settings(gateway: Gateway) -> StripeConfig:
    """The ``[stripe]`` settings (the same as ``gateway.config.section("stripe")``)."""
    return gateway.config.section(SECTION)


def limits(config: StripeConfig) -> str:
    return f"between {config.min_usd:.2f} and {config.max_usd:.2f} USD"


def quote(config: StripeConfig, amount_usd: Decimal | int | str) -> Quote:
    """The credit, fee and total for a top-up of ``amount_usd`` of credit. Raises
    :class:`CheckoutError` (``param="amount_usd"``) when the amount is not whole cents or lies
    outside ``[min_usd, max_usd]``."""
    try:
        amount = Decimal(amount_usd)
    except (InvalidOperation, TypeError, ValueError):
        raise CheckoutError(
            "`amount_usd` must be a number of US dollars", param="amount_usd"
        ) from None
    if not amount.is_finite():
        raise CheckoutError("`amount_usd` must be a number of US dollars", param="amount_usd")
    if not config.min_usd <= amount <= config.max_usd:
        raise CheckoutError(
            f"`amount_usd` must be {limits(config)} (got {amount})", param="amount_usd"
        )
    if amount != amount.quantize(CENT, context=_EXACT):
        raise CheckoutError(
            "`amount_usd` must be whole cents (2 decimal places)", param="amount_usd"
        )
    credit = amount.quantize(CENT, context=_EXACT)
    fee = _EXACT.add(_EXACT.multiply(credit, config.fee_percent.scaleb(-2)), config.fee_fixed_usd)
    fee = fee.quantize(CENT, rounding=ROUND_CEILING, context=_EXACT)
    return Quote(credit, fee, _EXACT.add(credit, fee))


def _url(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise CheckoutError(f"`{name}` must be an http(s) URL", param=name)
    if len(value) > MAX_URL:
        raise CheckoutError(f"`{name}` must be at most {MAX_URL} characters", param=name)
    return value


def session_params(
    config: StripeConfig, user_id: str, q: Quote, success_url: str, cancel_url: str
) -> dict[str, Any]:
    """The ``POST /v1/checkout/sessions`` parameters of a top-up."""
    metadata = {META_USER: user_id, META_CREDIT: str(q.credit_usd)}
    items: list[dict[str, Any]] = [_item("LMRouter credits", q.credit_cents)]
    if q.fee_cents:  # Stripe refuses a line item of 0
        items.append(_item("Processing fee", q.fee_cents))
    return {
        "mode": "payment",
        "line_items": items,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": user_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},  # on the charge side too
    }


def _item(name: str, cents: int) -> dict[str, Any]:
    return {
        "price_data": {"currency": "usd", "unit_amount": cents, "product_data": {"name": name}},
        "quantity": 1,
    }


async def create_checkout(
    gateway: Gateway,
    user_id: str,
    amount_usd: Decimal,
    success_url: str,
    cancel_url: str,
) -> Checkout:
    """Create the Checkout Session of a top-up of ``amount_usd`` credit for ``user_id``. Raises
    :class:`CheckoutError` for a bad amount or URL, when Stripe is not configured (503) and when
    Stripe refuses or cannot be reached (502)."""
    config = settings(gateway)
    if not config.checkout_enabled:
        raise CheckoutError(
            "Buying credits is not available: the operator has not configured Stripe.",
            status=503,
        )
    q = quote(config, amount_usd)
    params = session_params(
        config, user_id, q, _url(success_url, "success_url"), _url(cancel_url, "cancel_url")
    )
    api = client.client_for(gateway, config)
    try:
        session = await api.v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]
    except stripe.InvalidRequestError as exc:
        log.warning("stripe refused a checkout", error=exc.user_message, param=exc.param)
        raise CheckoutError(
            f"The payment provider refused the checkout: {exc.user_message}", status=502
        ) from None
    except stripe.StripeError as exc:
        # e.g. a wrong [stripe] secret_key: the details are for the operator's log only
        log.error("stripe checkout failed", error=type(exc).__name__, message=exc.user_message)
        raise CheckoutError(
            "The payment provider could not be reached; please try again later.", status=502
        ) from None
    await gateway.store.execute(
        "INSERT INTO stripe_sessions (id, user_id, credit_pico, fee_cents, amount_total_cents, "
        "payment_intent, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (
            session.id,
            user_id,
            q.credit_pico,
            q.fee_cents,
            q.total_cents,
            _id(getattr(session, "payment_intent", None)),
            clock.to_iso(clock.now_us()),
        ),
    )
    log.info("checkout created", session=session.id, user=user_id, credit_usd=str(q.credit_usd))
    return Checkout(session.id, session.url or "", q)  # a new session always has its url


def _id(value: Any) -> str | None:
    """An id, whether Stripe sent it as a string or an expanded object."""
    if value is None or isinstance(value, str):
        return value
    return value.get("id")
