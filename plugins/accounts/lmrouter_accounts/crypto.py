"""Encryption of stored BYOK provider keys.

AES-256-GCM under a key derived from ``[accounts] secret`` with HKDF-SHA256. Each key gets a
random 96-bit nonce; the owner's user id and the provider name are the associated data, so a
ciphertext copied to another user or provider row fails to decrypt instead of being used there.
Stored as base64 of ``nonce || ciphertext+tag``.
"""

from __future__ import annotations

import base64
import binascii
import os

_NONCE_BYTES = 12
_INFO = b"lmrouter-accounts byok v1"  # binds the derived key to this one purpose


class BoxError(Exception):
    """A ciphertext that does not decrypt: tampered, moved to another row, or another secret."""


class SecretBox:
    def __init__(self, secret: str) -> None:
        # Imported here: OpenSSL's bindings weigh about 7 MB in every worker, and a router
        # without ``[accounts] secret`` never makes a box.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if not secret:
            raise ValueError("empty secret")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, user_id: str, provider: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _associated(user_id, provider))
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, user_id: str, provider: str) -> str:
        try:
            raw = base64.b64decode(stored, validate=True)
        except (binascii.Error, ValueError):
            raise BoxError("not base64") from None
        if len(raw) <= _NONCE_BYTES + 16:
            raise BoxError("too short")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        from cryptography.exceptions import InvalidTag

        try:
            plaintext = self._aead.decrypt(nonce, sealed, _associated(user_id, provider))
        except InvalidTag:
            raise BoxError("authentication failed") from None
        return plaintext.decode()


def _associated(user_id: str, provider: str) -> bytes:
    return f"{user_id}\x00{provider}".encode()
