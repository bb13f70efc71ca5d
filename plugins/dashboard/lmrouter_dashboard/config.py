"""The ``[dashboard]`` table (every key documented in config/example.toml)."""

from __future__ import annotations

import re

import msgspec

from lmrouter_accounts import passwords

MIN_SECRET_CHARS = 16
_URL = re.compile(r"^https?://[^/\s]+")


class DashboardConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    # Signs session cookies and CSRF tokens. Empty: derived from [accounts] secret, else made
    # once and kept in the database (so `make run` needs no setup and restarts keep sessions).
    secret: str = ""
    allow_signup: bool = True
    signups_per_hour: int = 10  # accounts one client address may create an hour; 0 = no limit
    session_hours: int = 24 * 14  # a sign-in lasts this long (then the user signs in again)
    min_password_chars: int = 12
    # The operator's terms: a URL, or a text file (relative to the config file) shown at
    # /dashboard/terms. `terms_version` names the version users accept; empty: no terms.
    terms_url: str = ""
    terms_file: str = ""
    terms_version: str = ""
    support_contact: str = ""  # shown on every page: an e-mail address or a URL
    # Where users reach the router, for Stripe's return URLs (default: the request's own).
    public_url: str = ""
    # Behind a reverse proxy: take the client address from the last X-Forwarded-For entry and
    # the scheme from X-Forwarded-Proto (only when the proxy sets them; never otherwise).
    trust_forwarded: bool = False

    def __post_init__(self) -> None:
        if self.secret and len(self.secret) < MIN_SECRET_CHARS:
            raise ValueError(f"`secret` must be at least {MIN_SECRET_CHARS} characters")
        if not 1 <= self.session_hours <= 24 * 366:
            raise ValueError("`session_hours` must be between 1 and 8784 (a year)")
        low, high = passwords.MIN_PASSWORD_CHARS, 128
        if not low <= self.min_password_chars <= high:
            raise ValueError(f"`min_password_chars` must be between {low} and {high}")
        if self.terms_url and self.terms_file:
            raise ValueError("set `terms_url` or `terms_file`, not both")
        if self.terms_url and not _URL.match(self.terms_url):
            raise ValueError("`terms_url` must be an http:// or https:// URL")
        if (self.terms_url or self.terms_file) and not self.terms_version:
            raise ValueError('`terms_version` is needed with terms (e.g. "2025-01-31")')
        if self.terms_version and not (self.terms_url or self.terms_file):
            raise ValueError("`terms_version` needs `terms_url` or `terms_file`")
        if len(self.terms_version) > 64:
            raise ValueError("`terms_version` is at most 64 characters")
        if self.public_url and not _URL.match(self.public_url):
            raise ValueError("`public_url` must be an http:// or https:// URL")
        self.public_url = self.public_url.rstrip("/")
