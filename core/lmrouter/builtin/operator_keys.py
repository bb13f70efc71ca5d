"""Operator keys from ``[auth] keys``: always valid, spend no credits, unlock admin endpoints."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from lmrouter.context import Principal
from lmrouter.hookspecs import hookimpl

if TYPE_CHECKING:
    from lmrouter.gateway import Gateway


class OperatorKeys:
    def __init__(self) -> None:
        self._by_digest: dict[bytes, Principal] = {}

    @hookimpl
    def lmrouter_startup(self, gateway: Gateway) -> None:
        self.configure(gateway.config.core.auth.keys)

    def configure(self, keys: list[str]) -> None:
        # Compare digests, not keys, and hash every key whatever its length: a dict lookup on a
        # hash leaks nothing useful by timing (skipping the hash for keys of another length, as
        # this did once, told an attacker the operator key's length).
        self._by_digest = {
            _digest(key): Principal(id=f"operator:{i}", kind="operator", is_admin=True)
            for i, key in enumerate(keys)
            if key.strip()  # an empty entry (unset ${VAR:-}) never authenticates
        }

    @hookimpl(tryfirst=True)
    def lmrouter_authenticate(
        self, gateway: Gateway, api_key: str, headers: Any
    ) -> Principal | None:
        return self._by_digest.get(_digest(api_key))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
