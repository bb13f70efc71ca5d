"""Password rules for sign-up: length, not composition (NIST SP 800-63B). A minimum length
(``[dashboard] min_password_chars``, 12 by default), a maximum of 256, and no password that is
the e-mail address, one character repeated, or on a short list of the most common ones."""

from __future__ import annotations

from functools import cache
from importlib import resources

MAX_PASSWORD_CHARS = 256


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def problem(password: str, email: str, *, min_chars: int) -> str | None:
    """Why ``password`` is refused, in words for the person choosing it; None when it is fine."""
    if len(password) < min_chars:
        return f"Use at least {min_chars} characters (a few words make a good password)."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Use at most {MAX_PASSWORD_CHARS} characters."
    lowered = password.strip().lower()
    address = email.strip().lower()
    if lowered in (address, address.partition("@")[0]):
        return "Your password must not be your e-mail address."
    if len(set(lowered)) == 1:
        return "Your password must not be one character repeated."
    if lowered in common_passwords():
        return "That password is one of the most common ones; choose another."
    return None
