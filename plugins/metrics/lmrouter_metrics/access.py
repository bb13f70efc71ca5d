"""Who may read ``/metrics``: an operator key, or (without a key) a request from this machine.

A key that is sent is always judged: a wrong one gets 401 and a user's key 403, even from
loopback. Behind a reverse proxy on the same host every request comes from loopback, so such a
setup should turn ``[metrics] allow_loopback`` off (or not route ``/metrics`` through the proxy).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from lmrouter import RouterError, invalid_api_key

if TYPE_CHECKING:
    from lmrouter import Principal


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a unix socket path, or no address at all
        return False


def has_key(headers: dict[str, str] | object) -> bool:
    get = headers.get  # type: ignore[union-attr]
    return bool(get("authorization") or get("x-api-key"))


def check(principal: Principal | None, client_host: str | None, allow_loopback: bool) -> None:
    """Raise the error to answer with, or return when the caller may read the metrics.
    ``principal`` is None when no key was sent (one that was sent is authenticated first)."""
    if principal is None:
        if allow_loopback and is_loopback(client_host):
            return
        hint = " (or a request from this machine)" if allow_loopback else ""
        raise invalid_api_key(f"The metrics need an operator key{hint}.")
    if not principal.is_admin:
        raise RouterError(403, "The metrics need an operator key.", code="permission_denied")
