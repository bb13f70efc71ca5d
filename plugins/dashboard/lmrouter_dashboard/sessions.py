"""Sign-in sessions, kept server-side so that signing out, suspension and account deletion end
them at once.

The cookie holds a random token and its HMAC (``token.signature``); the database holds only the
token's SHA-256, so a copy of the database signs nobody in. Every page load looks the session up
with its user's current status in one indexed query: a user suspended or deleted elsewhere (the
CLI, another worker) is signed out on their next click. An operator-key session stores an HMAC
of the operator key under the server's signing key (a plain hash of it would let a copy of the
database test guesses offline) and ends when that key leaves ``[auth] keys``.

CSRF tokens are HMACs too: of the session token for signed-in forms, and of a random
pre-session cookie for the sign-in and sign-up forms. Nothing to store, nothing to expire apart
from the session itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

import msgspec

from lmrouter_credits import clock

if TYPE_CHECKING:
    from lmrouter import Store

HOUR_US = 3_600_000_000
_DERIVE = b"lmrouter-dashboard-v1"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def signing_key(store: Store, own: str, accounts_secret: str) -> bytes:
    """``[dashboard] secret``, else one derived from ``[accounts] secret``, else a random one made
    once and kept in the database (every worker and every restart then agree)."""
    for secret in (own, accounts_secret):
        if secret:
            return hmac.new(secret.encode(), _DERIVE, hashlib.sha256).digest()
    await store.execute(
        "INSERT INTO dashboard_state (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
        (secrets.token_urlsafe(32),),
    )
    row = await store.fetchone("SELECT secret FROM dashboard_state WHERE id = 1")
    assert row is not None
    return hmac.new(row[0].encode(), _DERIVE, hashlib.sha256).digest()


class Session(msgspec.Struct, frozen=True):
    token: str
    user_id: str | None  # None: an operator signed in with an operator key
    email: str | None
    is_admin: bool
    terms_ok: bool = True  # accepted the terms' current version (or there are none)


_LOOKUP = """SELECT s.user_id, s.operator, s.expires_at, u.status, u.email, u.is_admin,
       t.accepted_at
FROM dashboard_sessions s
LEFT JOIN users u ON u.id = s.user_id
LEFT JOIN dashboard_terms t ON t.user_id = s.user_id AND t.version = ?
WHERE s.token_hash = ?"""


class Sessions:
    def __init__(
        self,
        store: Store,
        key: bytes,
        *,
        hours: int,
        operator_keys: list[str],
        terms_version: str = "",
    ) -> None:
        self.store = store
        self.key = key
        self.hours = hours
        self.operator_digests = frozenset(self.operator_id(k) for k in operator_keys if k.strip())
        self.terms_version = terms_version

    # -- signing ----------------------------------------------------------------------------

    def sign(self, purpose: str, value: str) -> str:
        mac = hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def operator_id(self, operator_key: str) -> str:
        """What an operator-key session stores of its key: keyed, so it proves nothing offline."""
        return self.sign("operator", operator_key)

    def cookie(self, token: str) -> str:
        return f"{token}.{self.sign('cookie', token)}"

    def token_of(self, cookie: str | None) -> str | None:
        """The token in a cookie whose signature holds, else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        token, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self.sign("cookie", token)):
            return None
        return token

    def csrf(self, token: str) -> str:
        """The CSRF token of a session (or, with a pre-session cookie's value, of a sign-in
        form)."""
        return self.sign("csrf", token)

    def csrf_ok(self, token: str | None, sent: str | None) -> bool:
        return bool(token and sent) and hmac.compare_digest(sent, self.csrf(token))  # type: ignore[arg-type,type-var]

    # -- sessions ---------------------------------------------------------------------------

    async def start(self, *, user_id: str | None = None, operator: str | None = None) -> str:
        """A new session for a user, or for an operator key (given as its :meth:`operator_id`)."""
        token = secrets.token_urlsafe(32)
        now = clock.now_us()
        async with self.store.transaction() as tx:
            # Expired sessions leave as new ones arrive: no sweeper task needed.
            await tx.execute(
                "DELETE FROM dashboard_sessions WHERE expires_at <= ?", (clock.to_iso(now),)
            )
            await tx.execute(
                "INSERT INTO dashboard_sessions (token_hash, user_id, operator, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?)",
                (
                    digest(token),
                    user_id,
                    operator,
                    clock.to_iso(now),
                    clock.to_iso(now + self.hours * HOUR_US),
                ),
            )
        return token

    async def find(self, token: str | None) -> Session | None:
        if token is None:
            return None
        row = await self.store.fetchone(_LOOKUP, (self.terms_version, digest(token)))
        if row is None:
            return None
        user_id, operator, expires_at, status, email, is_admin, accepted = row
        if expires_at <= clock.to_iso(clock.now_us()):
            await self.end(token)
            return None
        if operator is not None:
            if operator not in self.operator_digests:  # the key left [auth] keys
                await self.end(token)
                return None
            return Session(token, None, None, True)
        if status != "active":  # suspended or deleted since
            await self.end_user(user_id)
            return None
        terms_ok = not self.terms_version or accepted is not None
        return Session(token, user_id, email, bool(is_admin), terms_ok)

    async def end(self, token: str) -> None:
        await self.store.execute(
            "DELETE FROM dashboard_sessions WHERE token_hash = ?", (digest(token),)
        )

    async def end_user(self, user_id: str) -> None:
        """Sign a user out everywhere."""
        await self.store.execute("DELETE FROM dashboard_sessions WHERE user_id = ?", (user_id,))
