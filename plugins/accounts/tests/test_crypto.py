"""BYOK encryption: round trip, and every kind of tampering is detected, never decrypted."""

from __future__ import annotations

import base64

import pytest

from lmrouter_accounts.crypto import BoxError, SecretBox

SECRET = "a-long-enough-server-secret-for-tests"
KEY = "sk-ant-api03-some-provider-key"


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    box = SecretBox(SECRET)
    first = box.encrypt(KEY, "user1", "anthropic")
    second = box.encrypt(KEY, "user1", "anthropic")
    assert first != second  # random nonce: equal keys do not look equal at rest
    assert KEY not in first and KEY.encode() not in base64.b64decode(first)
    assert len(base64.b64decode(first)) == 12 + len(KEY) + 16  # nonce, ciphertext, tag
    assert box.decrypt(first, "user1", "anthropic") == KEY
    assert SecretBox(SECRET).decrypt(second, "user1", "anthropic") == KEY  # derived, not stored


def flip(stored: str, index: int) -> str:
    raw = bytearray(base64.b64decode(stored))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1])  # nonce, ciphertext, tag
def test_any_flipped_bit_is_detected(index: int) -> None:
    box = SecretBox(SECRET)
    stored = box.encrypt(KEY, "user1", "openai")
    with pytest.raises(BoxError):
        box.decrypt(flip(stored, index), "user1", "openai")


def test_a_ciphertext_moved_to_another_user_or_provider_does_not_decrypt() -> None:
    box = SecretBox(SECRET)
    stored = box.encrypt(KEY, "user1", "openai")
    for user, provider in (("user2", "openai"), ("user1", "groq"), ("user1\x00openai", "")):
        with pytest.raises(BoxError, match="authentication failed"):
            box.decrypt(stored, user, provider)


def test_another_secret_cannot_read_it() -> None:
    stored = SecretBox(SECRET).encrypt(KEY, "user1", "openai")
    with pytest.raises(BoxError):
        SecretBox(SECRET + "!").decrypt(stored, "user1", "openai")


@pytest.mark.parametrize("stored", ["", "not base64 at all!", base64.b64encode(b"x" * 28).decode()])
def test_garbage_is_an_error_not_a_crash(stored: str) -> None:
    with pytest.raises(BoxError):
        SecretBox(SECRET).decrypt(stored, "user1", "openai")


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        SecretBox("")
