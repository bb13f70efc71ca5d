"""The ``[credits]`` table."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from lmrouter import parse_usd


class CreditsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    expire_after_days: int = 365  # a lot expires this long after it was bought or granted
    byok_fee_percent: Decimal = Decimal(0)  # of the list price, charged on BYOK requests
    default_max_output_tokens: int = 4096  # for holds when neither request nor model sets one
    flush_interval: float = 0.05  # seconds between batched writes of charges and usage rows
    signup_grant_usd: Decimal = Decimal(0)  # a lot for each account signed up in the dashboard
    # On a server database: how long a hold outlives its process's last renewal (renewed three
    # times a lease); a host that dies leaves its holds reserved this long at most.
    hold_lease_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.expire_after_days <= 36_500:
            raise ValueError("`expire_after_days` must be between 1 and 36500 (100 years)")
        if not self.byok_fee_percent.is_finite() or self.byok_fee_percent < 0:
            raise ValueError("`byok_fee_percent` must be a number of at least 0")
        if self.default_max_output_tokens < 1:
            raise ValueError("`default_max_output_tokens` must be at least 1")
        if not self.signup_grant_usd.is_finite() or self.signup_grant_usd < 0:
            raise ValueError("`signup_grant_usd` must be a number of at least 0")
        try:
            parse_usd(f"{self.signup_grant_usd:f}")
        except ValueError as exc:
            raise ValueError(f"`signup_grant_usd`: {exc}") from None
        if not 1 <= self.hold_lease_seconds <= 3600:
            raise ValueError("`hold_lease_seconds` must be between 1 and 3600")
        if not 0 < self.flush_interval <= 10:
            raise ValueError("`flush_interval` must be between 0 and 10 seconds")
