"""The ``[accounts]`` config table."""

from __future__ import annotations

import msgspec

MIN_SECRET_CHARS = 16


class AccountsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[accounts]``.

    ``secret``: the server secret that encrypts stored BYOK provider keys (AES-GCM under a key
    derived from it). Empty: one is made on first use and kept beside the database
    (``lmrouter_accounts.secret``). A secret that does not open the stored keys stops the
    server at start.

    ``allow_anonymous_byok``: accept ``BYOK:<provider key>`` as an API key from anyone, without
    an account. Such requests go upstream with that key and spend no credits.
    """

    secret: str = ""
    allow_anonymous_byok: bool = False

    def __post_init__(self) -> None:
        if self.secret and len(self.secret) < MIN_SECRET_CHARS:
            # msgspec reports this as a validation error at `accounts.secret`
            raise ValueError(
                f"`secret` must be at least {MIN_SECRET_CHARS} characters "
                "(e.g. `openssl rand -base64 32`)"
            )
