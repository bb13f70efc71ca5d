"""Who is calling: API key → Principal, from memory on the hot path, from the database once.

A key's answer (its Principal, or "suspended", or "no such key") is cached by the key's SHA-256.
Everything cached is dropped when accounts change: at once for changes made in this process
(:func:`lmrouter_accounts.service.subscribe`), within :data:`POLL_INTERVAL` for changes made by
another process (the CLI bumps ``accounts_state.revision``; :meth:`Authenticator.start` polls it).
So revoking a key or suspending a user takes effect within half a second, on every worker and
every host that shares the store. The store is the one channel: nothing to lose in transit, no
second service to keep up (a pub/sub message sent while a subscriber reconnects is gone, so a
poll would be needed beside it anyway). It costs each process two single-row reads a second.

Fail closed: a cached answer is trusted only while the revision was read within
:data:`STALE_AFTER`. Past that (the store is away), a request with a cached key reads the
revision itself, and gets a 503 when the store does not answer: a key revoked during the outage
is never served from a stale cache. The poller keeps trying, and the first read that succeeds
puts everything back.

Cached Principals are shared by every request of their key: hooks must not change them (per-
request data belongs on ``ctx.state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from lmrouter import BatchWriter, Principal, RouterError
from lmrouter_accounts import keys, service
from lmrouter_accounts.crypto import BoxError, SecretBox

if TYPE_CHECKING:
    from collections.abc import Awaitable, Collection, Container

    from lmrouter import RequestContext, Route, Row, Store, Tx

log = structlog.get_logger("lmrouter.accounts")

POLL_INTERVAL = 0.5  # seconds: how stale another process's change may be here
STALE_AFTER = 1.0  # seconds without a revision read before cached answers need a fresh one
READ_TIMEOUT = 2.0  # seconds a revision read may take before the store counts as away
MAX_KNOWN = 100_000  # cached keys that exist (a Principal each: a few hundred bytes)
MAX_UNKNOWN = 10_000  # cached "no such key" answers, so one bad key repeated costs one query
UNKNOWN_TTL = 60.0  # seconds a "no such key" answer is trusted
LAST_USED_INTERVAL = 1.0  # seconds between last_used_at writes (one per key at most)
BYOK_PREFIX = "BYOK:"

_SUSPENDED = object()  # the cached answer for a key whose user is suspended

_LOOKUP = """SELECT k.id, k.user_id, k.prefix, k.rpm, k.tpm, k.max_concurrent, k.revoked_at,
       u.status, u.is_admin, b.provider
FROM api_keys k
JOIN users u ON u.id = k.user_id
LEFT JOIN byok_keys b ON b.user_id = k.user_id
WHERE k.hash = ?"""


def suspended() -> RouterError:
    return RouterError(
        403,
        "This account is suspended. Contact the operator of this router.",
        code="account_suspended",
    )


def unavailable() -> RouterError:
    return RouterError(
        503,
        "The router cannot check API keys right now (its database is unreachable); try again "
        "shortly.",
        code="unavailable",
        headers={"retry-after": "1"},
    )


def _answer(rows: list[Row], byok_allowed: Container[str]) -> Principal | object | None:
    """What one key's rows say: a Principal, ``_SUSPENDED``, or None (revoked, deleted, none).
    Stored keys count only for providers that allow them (``byok = true``)."""
    if not rows:
        return None
    key_id, user_id, prefix, rpm, tpm, max_concurrent, revoked_at, status, is_admin, _ = rows[0]
    if revoked_at is not None or status == "deleted":
        return None
    if status != "active":
        return _SUSPENDED
    limits = {
        name: value
        for name, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrent", max_concurrent))
        if value is not None
    }
    return Principal(
        id=f"user:{user_id}",
        kind="user",
        user_id=user_id,
        key_id=key_id,
        key_prefix=prefix,
        is_admin=bool(is_admin),
        limits=limits,
        byok_providers=frozenset(row[9] for row in rows if row[9] in byok_allowed),
    )


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        box: SecretBox | None,
        allow_anonymous_byok: bool = False,
        byok_allowed: Collection[str] = (),
    ) -> None:
        self.store = store
        self.box = box
        self.allow_anonymous_byok = allow_anonymous_byok
        # the providers configured with ``byok = true``: a user's key for any other is not used
        self.byok_allowed = frozenset(byok_allowed)
        self.known: dict[str, Principal | object] = {}  # key digest → Principal or _SUSPENDED
        self.unknown: dict[str, float] = {}  # key digest → when the answer expires
        self.byok: dict[tuple[str, str], str] = {}  # (user id, provider) → decrypted key
        self.generation = 0  # bumped by invalidate(): lookups from before it are not cached
        self.revision: int | None = None  # accounts_state.revision last seen
        self.fresh_at = 0.0  # when (monotonic) the revision was last read
        self._reading: asyncio.Future[None] | None = None  # the revision read under way
        self._away = False  # the last revision read failed (logged once per outage)
        self.lookups = 0  # database lookups made (for tests and metrics)
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._last_used: dict[str, float] = {}  # key id → last use (epoch seconds)
        self._queued: set[str] = set()  # key ids with a last_used_at write pending
        self._writer = BatchWriter(store, interval=LAST_USED_INTERVAL)
        self._poller: asyncio.Task[None] | None = None
        self._unsubscribe = service.subscribe(self.invalidate)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.revision = await self._read_revision()
        self._writer.start()
        self._poller = asyncio.create_task(self._poll(), name="lmrouter-accounts-poll")

    async def stop(self) -> None:
        self._unsubscribe()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self._writer.stop()  # last_used_at of the final requests

    async def _read_revision(self) -> int | None:
        row = await self.store.fetchone("SELECT revision FROM accounts_state WHERE id = 1")
        self.fresh_at = time.monotonic()
        return row[0] if row else None

    async def refresh(self) -> None:
        """Read the revision now; forget every cached answer when it moved. Raises when the
        store does not answer."""
        try:
            async with asyncio.timeout(READ_TIMEOUT):  # a partition hangs rather than fails
                revision = await self._read_revision()
        except Exception as exc:
            if not self._away:
                self._away = True
                log.warning("cannot read accounts_state.revision; will retry", error=str(exc))
            raise
        if self._away:
            self._away = False
            log.info("accounts_state.revision readable again")
        if revision != self.revision:
            self.revision = revision
            self.invalidate()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            with contextlib.suppress(Exception):
                await self._refreshed()

    def _refreshed(self) -> asyncio.Future[None]:
        """One revision read at a time, whoever asks (the poller, requests with stale answers)."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self.refresh())
            self._reading.add_done_callback(self._read_done)
        return self._reading

    def _read_done(self, future: asyncio.Future[None]) -> None:
        self._reading = None
        if not future.cancelled():
            future.exception()  # retrieved: the callers that care re-raise it themselves

    def invalidate(self) -> None:
        """Forget every cached answer and decrypted key: the next request reads afresh."""
        self.generation += 1
        self.known.clear()
        self.unknown.clear()
        self.byok.clear()
        self._inflight.clear()  # requests from now on must not join a lookup from before

    # -- authenticate -------------------------------------------------------------------------

    def authenticate(self, api_key: str) -> Principal | Awaitable[Principal | None] | None:
        """A Principal from the cache, or an awaitable that looks the key up once; None for a
        key that is not one of ours."""
        if api_key.startswith(keys.KEY_PREFIX):
            if not keys.looks_like_key(api_key):
                return None
            digest = hashlib.sha256(api_key.encode()).hexdigest()
            answer = self.known.get(digest)
            if answer is not None:
                if time.monotonic() - self.fresh_at > STALE_AFTER:
                    return self._after_refresh(api_key)
                return self._principal(answer)
            expires = self.unknown.get(digest)
            if expires is not None:
                if expires > time.monotonic():
                    return None
                del self.unknown[digest]
            return self._lookup(digest)
        if api_key.startswith(BYOK_PREFIX) and self.allow_anonymous_byok:
            provider_key = api_key[len(BYOK_PREFIX) :].strip()
            if not provider_key:
                return None
            return Principal(id="byok:anonymous", kind="byok", extra={"byok_key": provider_key})
        return None

    async def _after_refresh(self, api_key: str) -> Principal | None:
        """The cache is older than STALE_AFTER: read the revision before trusting it."""
        try:
            await asyncio.shield(self._refreshed())
        except Exception:
            raise unavailable() from None
        answer = self.authenticate(api_key)
        if answer is None or isinstance(answer, Principal):
            return answer
        return await answer

    def _principal(self, answer: Principal | object) -> Principal:
        if answer is _SUSPENDED:
            raise suspended()
        assert isinstance(answer, Principal)
        self._touch(answer.key_id)  # type: ignore[arg-type]
        return answer

    async def _lookup(self, digest: str) -> Principal | None:
        # One query per key however many requests arrive with it at once.
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._load(digest))
            self._inflight[digest] = pending
            pending.add_done_callback(partial(self._landed, digest))
        answer = await asyncio.shield(pending)  # one caller's cancellation spares the others
        return None if answer is None else self._principal(answer)

    def _landed(self, digest: str, future: asyncio.Future[Any]) -> None:
        if self._inflight.get(digest) is future:
            del self._inflight[digest]

    async def _load(self, digest: str) -> Principal | object | None:
        generation = self.generation
        self.lookups += 1
        try:
            rows = await self.store.fetchall(_LOOKUP, (digest,))
        except Exception as exc:
            log.warning("API key lookup failed", error=str(exc))
            raise unavailable() from None
        answer = _answer(rows, self.byok_allowed)
        if generation == self.generation:  # nothing changed while we read
            if answer is None:
                _bounded(self.unknown, MAX_UNKNOWN)
                self.unknown[digest] = time.monotonic() + UNKNOWN_TTL
            else:
                _bounded(self.known, MAX_KNOWN)
                self.known[digest] = answer
        return answer

    # -- last_used_at, off the request path ---------------------------------------------------

    def _touch(self, key_id: str) -> None:
        self._last_used[key_id] = time.time()
        if key_id not in self._queued:  # one pending write per key, however many requests
            self._queued.add(key_id)
            self._writer.add(partial(self._write_last_used, key_id))

    async def _write_last_used(self, key_id: str, tx: Tx) -> None:
        self._queued.discard(key_id)
        at = self._last_used.pop(key_id, None)  # the next use adds it again
        if at is not None:
            stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
            await tx.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (stamp, key_id))

    async def flush(self) -> None:
        """Write pending last_used_at values now."""
        await self._writer.flush()

    # -- BYOK ---------------------------------------------------------------------------------

    def upstream_key(self, ctx: RequestContext, route: Route) -> str | Awaitable[str | None] | None:
        principal = ctx.principal
        if principal.kind == "byok":
            if route.provider not in self.byok_allowed:
                # Anonymous callers have no credits: the operator's key is never theirs to use.
                raise RouterError(
                    403,
                    f"Provider {route.provider!r} does not accept callers' own keys.",
                    code="byok_not_allowed",
                )
            provider_key = principal.extra.get("byok_key")
            if provider_key:
                ctx.billable = False
            return provider_key
        providers = principal.byok_providers
        if providers is None or principal.user_id is None:
            return None  # not one of our principals
        if route.provider not in providers:
            # A fallback route without the user's own key: back to paying with credits.
            ctx.billable = True
            return None
        cached = self.byok.get((principal.user_id, route.provider))
        if cached is not None:
            ctx.billable = False
            return cached
        return self._load_byok(ctx, principal.user_id, route.provider)

    async def _load_byok(self, ctx: RequestContext, user_id: str, provider: str) -> str | None:
        generation = self.generation
        row = await self.store.fetchone(
            "SELECT ciphertext FROM byok_keys WHERE user_id = ? AND provider = ?",
            (user_id, provider),
        )
        if row is None:  # removed a moment ago: the user pays with credits again
            ctx.billable = True
            return None
        if self.box is None:
            log.error("a BYOK key is stored but [accounts] secret is not set", provider=provider)
            raise _unreadable(provider)
        try:
            provider_key = self.box.decrypt(row[0], user_id, provider)
        except BoxError as exc:
            log.error("a stored BYOK key does not decrypt", provider=provider, reason=str(exc))
            raise _unreadable(provider) from None
        if generation == self.generation:
            _bounded(self.byok, MAX_KNOWN)
            self.byok[(user_id, provider)] = provider_key
        ctx.billable = False
        return provider_key


def _unreadable(provider: str) -> RouterError:
    return RouterError(
        500,
        f"Your stored key for provider {provider!r} cannot be used: the router's secret changed "
        "or the stored key was damaged. Store the key again.",
        code="byok_key_unreadable",
    )


def _bounded(cache: dict[Any, Any], limit: int) -> None:
    """Make room for one entry: drop the oldest (dicts keep insertion order)."""
    while len(cache) >= limit:
        del cache[next(iter(cache))]
