"""The ``[stripe]`` table. Another plugin (the dashboard) reads it with
``gateway.config.section("stripe")`` or :func:`lmrouter_stripe.checkout.settings`."""

from __future__ import annotations

from decimal import Decimal

import msgspec

SECTION = "stripe"


class StripeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret_key: str = ""  # sk_live_… / sk_test_…; empty: buying credits is off
    webhook_secret: str = ""  # whsec_… of the webhook endpoint; empty: webhooks are refused
    api_base: str = "https://api.stripe.com"  # tests and staging: a Stripe-compatible server
    min_usd: Decimal = Decimal(5)  # the smallest top-up (credit, before the fee)
    max_usd: Decimal = Decimal(1000)  # the largest top-up
    fee_percent: Decimal = Decimal("4.8")  # processing fee: percent of the credit …
    fee_fixed_usd: Decimal = Decimal("0.35")  # … plus this, rounded up to whole cents
    suspend_on_dispute: bool = True  # a card dispute (chargeback) suspends the account
    webhook_tolerance: int = 300  # seconds a signed delivery stays valid (replay window)

    def __post_init__(self) -> None:
        for name in ("min_usd", "max_usd", "fee_percent", "fee_fixed_usd"):
            value: Decimal = getattr(self, name)
            if not value.is_finite() or value < 0:
                raise ValueError(f"`{name}` must be a number of at least 0")
            if name != "fee_percent" and value != value.quantize(Decimal("0.01")):
                raise ValueError(f"`{name}` must be whole cents (at most 2 decimal places)")
        if not Decimal("0.01") <= self.min_usd <= self.max_usd:
            raise ValueError("`min_usd` must be at least 0.01 and at most `max_usd`")
        if self.max_usd > 999_999:  # Stripe's limit for one Checkout payment in USD
            raise ValueError("`max_usd` must be at most 999999 (Stripe's limit)")
        if self.fee_percent >= 100:
            raise ValueError("`fee_percent` must be below 100")
        if not self.api_base.startswith(("https://", "http://")):
            raise ValueError("`api_base` must be an http(s) URL")
        if not 1 <= self.webhook_tolerance <= 86_400:
            raise ValueError("`webhook_tolerance` must be between 1 and 86400 seconds")

    @property
    def checkout_enabled(self) -> bool:
        return bool(self.secret_key)

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.webhook_secret)
