"""Key → Principal: the in-memory cache, its invalidation, last_used_at batching and BYOK keys,
on a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lmrouter.config import Route
from lmrouter.context import Principal
from lmrouter.errors import RouterError
from lmrouter_accounts import auth, service
from lmrouter_accounts.auth import Authenticator
from lmrouter_accounts.crypto import SecretBox

SECRET = "a-long-enough-server-secret-for-tests"
# configured providers, name → config: users' own keys only where ``byok = true``
PROVIDERS = {
    "openai": SimpleNamespace(byok=True),
    "anthropic": SimpleNamespace(byok=True),
    "local": SimpleNamespace(byok=False),
}
OWN_KEY = "sk-proj-alices-own-openai-key"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def resolve(answer: Any) -> Any:
    return await answer if inspect.isawaitable(answer) else answer


@dataclass
class Ctx:
    """What upstream_key reads and writes of a RequestContext."""

    principal: Principal
    billable: bool = True
    state: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def started(store: Any, **kwargs: Any) -> AsyncIterator[Authenticator]:
    kwargs.setdefault("byok_allowed", ("openai", "anthropic"))
    authenticator = Authenticator(store, box=SecretBox(SECRET), **kwargs)
    await authenticator.start()
    try:
        yield authenticator
    finally:
        await authenticator.stop()


async def alice(store: Any, **key_args: Any) -> tuple[service.User, service.NewKey]:
    user = await service.create_user(store, "alice@example.com")
    return user, await service.create_key(store, user.id, **key_args)


def test_a_key_is_looked_up_once_then_served_from_memory(db: Any) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            user, new = await alice(store, rpm=60, max_concurrent=2)
            await service.set_byok(
                store, SecretBox(SECRET), user.id, "openai", OWN_KEY, providers=PROVIDERS
            )
            first = authn.authenticate(new.secret)
            assert inspect.isawaitable(first)  # a miss: one database lookup
            principal = await first
            assert principal == Principal(
                id=f"user:{user.id}",
                kind="user",
                user_id=user.id,
                key_id=new.key.id,
                key_prefix=new.secret[:12],
                is_admin=False,
                limits={"rpm": 60, "max_concurrent": 2},
                byok_providers=frozenset({"openai"}),
            )
            for _ in range(100):
                assert authn.authenticate(new.secret) is principal  # no awaitable: memory
            assert authn.lookups == 1

    run(go())


@pytest.mark.parametrize(
    "key", ["", "sk-lmr-", "sk-lmr-tooshort", "sk-lmr-" + "a" * 33, "sk-other-key", "Bearer x"]
)
def test_other_shapes_are_not_ours_and_cost_no_lookup(db: Any, key: str) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            assert authn.authenticate(key) is None
            assert authn.lookups == 0

    run(go())


def test_unknown_keys_are_remembered_briefly_and_boundedly(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_UNKNOWN", 3)
    bad = [f"sk-lmr-{i:032d}" for i in range(5)]

    async def go() -> None:
        async with db() as store, started(store) as authn:
            for key in bad:
                assert await resolve(authn.authenticate(key)) is None
            assert authn.lookups == 5
            assert len(authn.unknown) == 3  # the oldest two were dropped
            assert authn.authenticate(bad[-1]) is None  # remembered: no lookup
            assert authn.lookups == 5
            assert await resolve(authn.authenticate(bad[0])) is None  # forgotten: looked up
            assert authn.lookups == 6
            monkeypatch.setattr(auth, "UNKNOWN_TTL", 0.0)
            assert await resolve(authn.authenticate(bad[1])) is None
            assert await resolve(authn.authenticate(bad[1])) is None  # expired: looked up
            assert authn.lookups == 8

    run(go())


def test_concurrent_first_requests_share_one_lookup(db: Any) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            _, new = await alice(store)
            answers = await asyncio.gather(
                *(resolve(authn.authenticate(new.secret)) for _ in range(50))
            )
            assert all(a is answers[0] and a.key_id == new.key.id for a in answers)
            assert authn.lookups == 1

    run(go())


def test_suspended_is_403_revoked_and_deleted_are_unknown(db: Any) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            user, new = await alice(store)
            spare = await service.create_key(store, user.id)
            assert (await resolve(authn.authenticate(new.secret))).user_id == user.id
            await service.suspend_user(store, user.id)  # in this process: effective at once
            for _ in range(2):  # the lookup, then the cached answer
                with pytest.raises(RouterError) as refused:
                    await resolve(authn.authenticate(new.secret))
                assert (refused.value.status, refused.value.code) == (403, "account_suspended")
            await service.resume_user(store, user.id)
            assert (await resolve(authn.authenticate(new.secret))).key_id == new.key.id
            await service.revoke_key(store, new.key.id)
            assert await resolve(authn.authenticate(new.secret)) is None
            assert (await resolve(authn.authenticate(spare.secret))).key_id == spare.key.id
            await service.delete_user(store, user.id)
            assert await resolve(authn.authenticate(spare.secret)) is None

    run(go())


def test_changes_by_another_process_apply_at_the_next_poll(db: Any, external: Any) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            _, new = await alice(store)
            assert await resolve(authn.authenticate(new.secret)) is not None
            # Changed elsewhere without telling anyone: the cache still answers (it is the cache
            # that serves requests, not the database)…
            await external(f"UPDATE api_keys SET revoked_at = 'now' WHERE id = '{new.key.id}'")
            await asyncio.sleep(auth.POLL_INTERVAL * 2)
            assert authn.authenticate(new.secret) is not None
            # …until the revision says something changed, as every service change does.
            await external("UPDATE accounts_state SET revision = revision + 1")
            # a poll every 0.5 s; the bound only catches a poll that never comes (how fast is
            # not for a test on a busy machine to say)
            deadline = time.monotonic() + 20 * auth.POLL_INTERVAL
            while await resolve(authn.authenticate(new.secret)) is not None:
                assert time.monotonic() < deadline, "the revocation was not noticed"
                await asyncio.sleep(0.01)

    run(go())


class Spy:
    """The store, telling when a query was sent."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.queried = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def fetchall(self, sql: str, params: Any = ()) -> Any:
        self.queried.set()
        return await self.store.fetchall(sql, params)


def test_a_lookup_that_straddles_a_change_is_not_cached(db: Any) -> None:
    async def go() -> None:
        async with db() as store, started(spy := Spy(store)) as authn:
            _, new = await alice(store)
            spy.queried.clear()
            lookup = asyncio.ensure_future(resolve(authn.authenticate(new.secret)))
            await spy.queried.wait()  # the query is on its way
            authn.invalidate()
            assert (await lookup).key_id == new.key.id  # its caller gets the answer it read…
            assert authn.known == {}  # …but it is not kept: it may predate the change
            # A request that arrives after the change must not join a lookup from before it.
            spy.queried.clear()
            before = asyncio.ensure_future(resolve(authn.authenticate(new.secret)))
            await spy.queried.wait()
            authn.invalidate()
            after = asyncio.ensure_future(resolve(authn.authenticate(new.secret)))
            await asyncio.gather(before, after)
            assert authn.lookups == 3

    run(go())


def test_last_used_is_written_off_the_request_path_once_per_key(db: Any, db_path: Path) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            user, new = await alice(store)
            other = await service.create_key(store, user.id)
            for _ in range(200):
                await resolve(authn.authenticate(new.secret))
                await resolve(authn.authenticate(other.secret))
            assert authn._writer.pending == 2  # one write per key, however many requests
            assert [k.last_used_at for k in await service.list_keys(store, user.id)] == [None] * 2
            await authn.flush()
            used = [k.last_used_at for k in await service.list_keys(store, user.id)]
            assert all(used) and used[0].startswith(service.now()[:10])
            assert authn._writer.pending == 0
            assert authn._last_used == {}, "written times are forgotten: memory follows traffic"

    run(go())


def test_cached_byok_keys_are_bounded(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_KNOWN", 2)

    async def go() -> None:
        async with db() as store, started(store) as authn:
            for n in range(5):
                user = await service.create_user(store, f"u{n}@example.com")
                new = await service.create_key(store, user.id)
                await service.set_byok(
                    store, SecretBox(SECRET), user.id, "openai", OWN_KEY, providers=PROVIDERS
                )
                principal = await resolve(authn.authenticate(new.secret))
                ctx = Ctx(principal)
                route = Route(provider="openai", model="m")
                assert await resolve(authn.upstream_key(ctx, route)) == OWN_KEY  # type: ignore[arg-type]
                assert len(authn.byok) <= 2 and len(authn.known) <= 2
            assert (user.id, "openai") in authn.byok, "the newest stays, the oldest go"

    run(go())


def test_byok_key_is_decrypted_once_and_makes_the_request_unbillable(db: Any) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            user, new = await alice(store)
            await service.set_byok(
                store, SecretBox(SECRET), user.id, "openai", OWN_KEY, providers=PROVIDERS
            )
            principal = await resolve(authn.authenticate(new.secret))
            ctx = Ctx(principal)
            answer = authn.upstream_key(ctx, Route(provider="openai", model="m"))  # type: ignore[arg-type]
            assert inspect.isawaitable(answer)
            assert await answer == OWN_KEY and ctx.billable is False
            ctx = Ctx(principal)
            assert authn.upstream_key(ctx, Route(provider="openai", model="m")) == OWN_KEY  # type: ignore[arg-type]
            assert ctx.billable is False
            # A fallback to a provider without the user's key pays with credits again.
            assert authn.upstream_key(ctx, Route(provider="anthropic", model="m")) is None  # type: ignore[arg-type]
            assert ctx.billable is True
            await service.remove_byok(store, user.id, "openai")
            assert authn.byok == {}
            principal = await resolve(authn.authenticate(new.secret))
            assert principal.byok_providers == frozenset()
            ctx = Ctx(principal)
            assert authn.upstream_key(ctx, Route(provider="openai", model="m")) is None  # type: ignore[arg-type]
            assert ctx.billable is True

    run(go())


def test_a_damaged_byok_key_is_an_error_that_names_no_key(db: Any, external: Any) -> None:
    async def go() -> RouterError:
        async with db() as store, started(store) as authn:
            user, new = await alice(store)
            await service.set_byok(
                store, SecretBox(SECRET), user.id, "openai", OWN_KEY, providers=PROVIDERS
            )
            await external("UPDATE byok_keys SET ciphertext = 'AAAA' || substr(ciphertext, 5)")
            principal = await resolve(authn.authenticate(new.secret))
            ctx = Ctx(principal)
            with pytest.raises(RouterError) as refused:
                await resolve(authn.upstream_key(ctx, Route(provider="openai", model="m")))  # type: ignore[arg-type]
            return refused.value

    err = run(go())
    assert (err.status, err.code) == (500, "byok_key_unreadable")
    assert OWN_KEY not in err.message


@pytest.mark.parametrize("allowed", [True, False])
def test_anonymous_byok_only_when_allowed(db: Any, allowed: bool) -> None:
    async def go() -> None:
        async with db() as store, started(store, allow_anonymous_byok=allowed) as authn:
            principal = authn.authenticate(f"BYOK:{OWN_KEY}")
            if not allowed:
                assert principal is None
                return
            assert principal == Principal(
                id="byok:anonymous", kind="byok", extra={"byok_key": OWN_KEY}
            )
            assert authn.authenticate("BYOK:  ") is None
            ctx = Ctx(principal)
            assert authn.upstream_key(ctx, Route(provider="anthropic", model="m")) == OWN_KEY  # type: ignore[arg-type]
            assert ctx.billable is False

    run(go())


def test_an_unreachable_database_is_a_503_not_a_crash(db: Any) -> None:
    async def go() -> RouterError:
        async with db() as store, started(store) as authn:
            _, new = await alice(store)
            await store.close()
            with pytest.raises(RouterError) as refused:
                await resolve(authn.authenticate(new.secret))
            assert new.secret not in refused.value.message
            assert authn.known == {} and authn.unknown == {}  # nothing learnt from a failure
            return refused.value

    err = run(go())
    assert (err.status, err.code) == (503, "unavailable")


def test_admin_flag_reaches_the_principal_at_once(db: Any) -> None:
    async def go() -> None:
        async with db() as store, started(store) as authn:
            user, new = await alice(store)
            assert (await resolve(authn.authenticate(new.secret))).is_admin is False
            await service.set_admin(store, user.id, True)
            assert (await resolve(authn.authenticate(new.secret))).is_admin is True

    run(go())
