"""LMRouter credits: exact prepaid credits in lots, per-request holds, an append-only ledger and
usage records. :mod:`lmrouter_credits.service` is the API for other plugins (Stripe)."""

from lmrouter_credits.plugin import Credits

__all__ = ["Credits"]
