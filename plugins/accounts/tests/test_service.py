"""The accounts service on a real SQLite file and a real PostgreSQL database: users, passwords,
keys, deletion, BYOK."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lmrouter_accounts import service
from lmrouter_accounts.crypto import SecretBox
from lmrouter_accounts.service import AccountsError

SECRET = "a-long-enough-server-secret-for-tests"
# configured providers, name → config: users' own keys only where ``byok = true``
PROVIDERS = {
    "openai": SimpleNamespace(byok=True),
    "anthropic": SimpleNamespace(byok=True),
    "local": SimpleNamespace(byok=False),
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def raw_bytes(path: Path) -> bytes:
    """Everything SQLite keeps on disk for the database: the file and its WAL, if any."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_emails_are_normalised_and_unique(db: Any) -> None:
    async def go() -> None:
        async with db() as store:
            user = await service.create_user(store, "  Alice@Example.COM ")
            assert user.email == "alice@example.com"
            assert re.fullmatch(r"[0-9a-f]{32}", user.id)
            assert user.status == "active" and not user.is_admin and not user.has_password
            with pytest.raises(AccountsError, match="already exists"):
                await service.create_user(store, "alice@EXAMPLE.com")
            found = await service.find_user_by_email(store, "ALICE@example.com ")
            assert found is not None and found.id == user.id
            assert await service.find_user_by_email(store, "bob@example.com") is None
            with pytest.raises(AccountsError, match=r"no user with email bob@example\.com"):
                await service.user_by_email(store, "bob@example.com")
            for bad in ("", "alice", "a b@example.com", "a@b@c", "x" * 250 + "@ex.com"):
                with pytest.raises(AccountsError, match="not an email address"):
                    await service.create_user(store, bad)
            other = await service.create_user(store, "bob@example.com")
            assert other.id != user.id

    run(go())


def test_passwords_are_argon2_hashes(db: Any, read_rows: Any, stored_bytes: Any) -> None:
    async def go() -> None:
        async with db() as store:
            user = await service.create_user(store, "a@example.com", password="correct horse")
            assert user.has_password
            assert await service.verify_password(store, "A@example.com", "correct horse")
            assert await service.verify_password(store, "a@example.com", "wrong horse") is None
            assert await service.verify_password(store, "nobody@example.com", "x" * 9) is None
            with pytest.raises(AccountsError, match="too short"):
                await service.create_user(store, "b@example.com", password="short")
            keyless = await service.create_user(store, "c@example.com")
            assert await service.verify_password(store, "c@example.com", "") is None
            await service.set_password(store, keyless.id, "now it has one")
            assert await service.verify_password(store, "c@example.com", "now it has one")

    run(go())
    stored = read_rows("SELECT password_hash FROM users WHERE email = 'a@example.com'")[0][0]
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored


def test_keys_have_the_documented_shape_and_only_a_hash_is_stored(
    db: Any, read_rows: Any, stored_bytes: Any
) -> None:
    async def go() -> tuple[service.NewKey, service.NewKey]:
        async with db() as store:
            user = await service.create_user(store, "a@example.com")
            first = await service.create_key(store, user.id, name=" laptop ", rpm=60, tpm=0)
            second = await service.create_key(store, user.id)
            listed = {k.id: k for k in await service.list_keys(store, user.id)}
            assert set(listed) == {first.key.id, second.key.id}
            assert listed[first.key.id].limits == {"rpm": 60, "tpm": 0}
            assert listed[second.key.id].limits == {}
            return first, second

    first, second = run(go())
    for new in (first, second):
        assert re.fullmatch(r"sk-lmr-[A-Za-z0-9_-]{32}", new.secret)
        assert new.key.prefix == new.secret[:12]
    assert first.secret != second.secret
    assert first.key.name == "laptop"
    stored = read_rows("SELECT hash, prefix FROM api_keys")
    assert sorted(stored) == sorted(
        (hashlib.sha256(k.secret.encode()).hexdigest(), k.secret[:12]) for k in (first, second)
    )
    raw = stored_bytes()
    assert first.secret.encode() not in raw and second.secret.encode() not in raw


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rpm": -1}, "rpm must be a whole number"),
        ({"max_concurrent": -5}, "max-concurrent must be a whole number"),
        ({"name": "x" * 101}, "too long"),
        ({"name": "line\nbreak"}, "printable"),
    ],
)
def test_bad_key_settings_are_refused(db: Any, kwargs: dict[str, Any], message: str) -> None:
    async def go() -> None:
        async with db() as store:
            user = await service.create_user(store, "a@example.com")
            with pytest.raises(AccountsError, match=message):
                await service.create_key(store, user.id, **kwargs)
            assert await service.list_keys(store, user.id) == []

    run(go())


def test_revoke_is_idempotent_and_scoped_to_the_owner(db: Any) -> None:
    async def go() -> None:
        async with db() as store:
            alice = await service.create_user(store, "alice@example.com")
            bob = await service.create_user(store, "bob@example.com")
            key = (await service.create_key(store, alice.id)).key
            with pytest.raises(AccountsError, match="no key with id"):
                await service.revoke_key(store, key.id, user_id=bob.id)
            assert (await service.get_key(store, key.id)).revoked_at is None  # type: ignore[union-attr]
            revoked = await service.revoke_key(store, key.id, user_id=alice.id)
            assert revoked.revoked_at is not None
            again = await service.revoke_key(store, key.id)
            assert again.revoked_at == revoked.revoked_at
            with pytest.raises(AccountsError, match="no key with id nope"):
                await service.revoke_key(store, "nope")

    run(go())


def test_changes_that_affect_callers_bump_the_revision(
    db: Any, read_rows: Any, stored_bytes: Any
) -> None:
    def revision() -> int:
        return int(read_rows("SELECT revision FROM accounts_state")[0][0])

    async def go() -> list[int]:
        async with db() as store:
            seen = [revision()]
            user = await service.create_user(store, "a@example.com")
            key = (await service.create_key(store, user.id)).key
            seen.append(revision())  # creating users and keys changes no one's access
            for change in (
                service.suspend_user(store, user.id),
                service.resume_user(store, user.id),
                service.revoke_key(store, key.id),
                service.set_byok(
                    store, SecretBox(SECRET), user.id, "openai", "sk-x", providers=PROVIDERS
                ),
                service.remove_byok(store, user.id, "openai"),
                service.set_admin(store, user.id, True),
                service.delete_user(store, user.id),
            ):
                await change
                seen.append(revision())
        return seen

    assert run(go()) == [0, 0, 1, 2, 3, 4, 5, 6, 7]


def test_in_process_subscribers_hear_of_each_change_at_once(db: Any) -> None:
    heard: list[str] = []

    async def go() -> None:
        async with db() as store:
            unsubscribe = service.subscribe(lambda: heard.append("change"))
            try:
                user = await service.create_user(store, "a@example.com")
                assert heard == []
                await service.suspend_user(store, user.id)
                assert heard == ["change"]
                assert not await service.suspend_user(store, user.id)  # no change, no news
                assert heard == ["change"]
            finally:
                unsubscribe()
            await service.resume_user(store, user.id)
            assert heard == ["change"]

    run(go())


def test_delete_erases_personal_data_and_keeps_the_id(
    db: Any, read_rows: Any, stored_bytes: Any
) -> None:
    async def go() -> tuple[str, int]:
        async with db() as store:
            user = await service.create_user(store, "gone@example.com", password="pass word 1")
            await service.create_key(store, user.id, name="alice's laptop")
            await service.create_key(store, user.id)
            old = (await service.create_key(store, user.id)).key
            await service.revoke_key(store, old.id)
            await service.set_byok(
                store, SecretBox(SECRET), user.id, "openai", "sk-own", providers=PROVIDERS
            )
            revoked = await service.delete_user(store, user.id)
            with pytest.raises(AccountsError, match="is deleted"):
                await service.resume_user(store, user.id)
            with pytest.raises(AccountsError, match="is deleted"):
                await service.create_key(store, user.id)
            assert await service.find_user_by_email(store, "gone@example.com") is None
            again = await service.create_user(store, "gone@example.com")  # the email is free
            assert again.id != user.id
            return user.id, revoked

    user_id, revoked = run(go())
    assert revoked == 2
    assert read_rows(
        "SELECT email, password_hash, status, is_admin, deleted_at IS NOT NULL "
        "FROM users WHERE id = ?",
        (user_id,),
    ) == [(None, None, "deleted", 0, 1)]
    assert (
        read_rows(
            "SELECT name, revoked_at IS NOT NULL FROM api_keys WHERE user_id = ?",
            (user_id,),
        )
        == [("", 1)] * 3
    )
    assert read_rows("SELECT COUNT(*) FROM byok_keys WHERE user_id = ?", (user_id,)) == [(0,)]


@pytest.mark.sqlite_only  # SQLite's secure_delete; PostgreSQL's free space is VACUUM's
def test_delete_leaves_no_trace_of_personal_data_on_disk(db: Any, db_path: Path) -> None:
    # SQLite keeps a deleted or overwritten value in free space unless told to zero it
    async def go() -> None:
        async with db() as store:
            user = await service.create_user(store, "erase-me@example.com", password="p" * 12)
            await service.create_key(store, user.id, name="erase-me laptop")
            await service.create_user(store, "stays@example.com")
            await store.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the data reaches the file
            await service.delete_user(store, user.id)

    run(go())
    on_disk = raw_bytes(db_path)
    assert b"stays@example.com" in on_disk  # the check can see what is there
    assert b"erase-me" not in on_disk


def test_byok_is_stored_encrypted_and_bound_to_user_and_provider(
    db: Any, read_rows: Any, stored_bytes: Any
) -> None:
    box = SecretBox(SECRET)
    provider_key = "sk-proj-users-very-own-key-1234567890"

    async def go() -> str:
        async with db() as store:
            user = await service.create_user(store, "a@example.com")
            with pytest.raises(AccountsError, match="secret is not set"):
                await service.set_byok(store, None, user.id, "openai", "k", providers=PROVIDERS)
            with pytest.raises(AccountsError, match="configured providers: anthropic, local, open"):
                await service.set_byok(store, box, user.id, "groq", "k", providers=PROVIDERS)
            # configured, but the operator did not open it to users' keys (byok = false)
            with pytest.raises(AccountsError, match="provider 'local' does not accept"):
                await service.set_byok(store, box, user.id, "local", "k", providers=PROVIDERS)
            for bad, message in (
                ("", "empty"),
                ("two words", "one line"),
                ("sk-lmr-" + "a" * 32, "LMRouter key"),
            ):
                with pytest.raises(AccountsError, match=message):
                    await service.set_byok(store, box, user.id, "openai", bad, providers=PROVIDERS)
            await service.set_byok(store, box, user.id, "openai", "old", providers=PROVIDERS)
            await service.set_byok(
                store, box, user.id, "openai", f" {provider_key}\n", providers=PROVIDERS
            )
            assert await service.byok_providers(store, user.id) == ["openai"]
            with pytest.raises(AccountsError, match="no BYOK key stored for provider 'anthropic'"):
                await service.remove_byok(store, user.id, "anthropic")
            return user.id

    user_id = run(go())
    [(ciphertext,)] = read_rows("SELECT ciphertext FROM byok_keys WHERE user_id = ?", (user_id,))
    assert box.decrypt(ciphertext, user_id, "openai") == provider_key
    raw = stored_bytes()
    assert provider_key.encode() not in raw

    async def remove() -> None:
        async with db() as store:
            await service.remove_byok(store, user_id, "openai")
            assert await service.byok_providers(store, user_id) == []

    run(remove())


def test_users_are_listed_by_a_search_matched_as_typed(db: Any) -> None:
    async def go() -> None:
        async with db() as store:
            for email in ("ann@example.com", "an_n@example.com", "bob@corp.example", "x%y@z.io"):
                await service.create_user(store, email)
            gone = await service.create_user(store, "gone@example.com")
            await service.delete_user(store, gone.id)

            def emails(users: list[service.User]) -> list[str | None]:
                return [u.email for u in users]

            found = await service.list_users(store, email_contains="AN")
            assert sorted(emails(found)) == ["an_n@example.com", "ann@example.com"]  # type: ignore[type-var]
            # LIKE's wildcards are plain characters here
            assert emails(await service.list_users(store, email_contains="n_n")) == [
                "an_n@example.com"
            ]
            assert emails(await service.list_users(store, email_contains="%")) == ["x%y@z.io"]
            assert len(await service.list_users(store)) == 5
            live = await service.list_users(store, include_deleted=False)
            assert len(live) == 4 and all(u.status == "active" for u in live)
            assert len(await service.list_users(store, limit=3)) == 3

    run(go())
