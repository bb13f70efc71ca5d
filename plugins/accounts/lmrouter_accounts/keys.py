"""The shape of user API keys: ``sk-lmr-`` and 32 URL-safe random characters.

Only the SHA-256 of a key is stored: a key is 192 random bits, so a fast hash is as good as a slow
one against guessing, and it lets every request find its key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-lmr-"
_RANDOM_BYTES = 24  # → 32 URL-safe base64 characters
KEY_LENGTH = len(KEY_PREFIX) + 32
VISIBLE_CHARS = 12  # what lists show: `sk-lmr-AbC12`, enough to tell keys apart


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def digest(key: str) -> str:
    """The stored form of a key (``api_keys.hash``)."""
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_CHARS]


def looks_like_key(key: str) -> bool:
    """Cheap shape check, so malformed keys never reach the database."""
    return len(key) == KEY_LENGTH and key.startswith(KEY_PREFIX)
