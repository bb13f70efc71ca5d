"""LMRouter Stripe plugin: users top up prepaid credits through Stripe Checkout; a verified
webhook credits each paid session once. :mod:`lmrouter_stripe.checkout` is the API for other
plugins; :mod:`lmrouter_stripe.testing` is a fake Stripe for tests."""

from lmrouter_stripe.plugin import StripePlugin

__all__ = ["StripePlugin"]
