"""The ``[accounts]`` config table."""

from __future__ import annotations

import msgspec

MIN_SECRET_CHARS = 16


class AccountsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[accounts]``.

    ``secret``: the server secret that encrypts stored BYOK provider keys (AES-GCM under a key
    derived from it). Empty means BYOK keys cannot be stored or used. Generate one with
    ``openssl rand -base64 32`` and keep it in the environment (``"${LMROUTER_SECRET:-}"``);
    changing it makes the stored BYOK keys unreadable (users set them again).

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
