"""The accounts service: every change to users, API keys and BYOK keys, in one place.

The CLI and the dashboard call these functions; the router itself only reads. A change that
affects who may call (a status, a revoked key, a BYOK key) bumps ``accounts_state.revision`` in
the same transaction, so routers in other processes notice within half a second, and tells the
subscribers in this process (:func:`subscribe`) at once.

Functions take the open :class:`lmrouter.storage.Store` (``gateway.store`` in a server,
``lmrouter.storage.opened(...)`` in a command) and raise :class:`AccountsError` with a message
fit to show to the person who asked.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from lmrouter_accounts import keys, passwords

if TYPE_CHECKING:
    from lmrouter import PluginManager, Row, Store, Tx
    from lmrouter_accounts.crypto import SecretBox

__all__ = [
    "AccountsError",
    "ApiKey",
    "NewKey",
    "User",
    "byok_allowed",
    "byok_providers",
    "check_byok_target",
    "create_key",
    "create_user",
    "delete_user",
    "find_user_by_email",
    "get_key",
    "get_user",
    "list_keys",
    "list_users",
    "normalize_email",
    "remove_byok",
    "resume_user",
    "revoke_key",
    "set_admin",
    "set_byok",
    "set_password",
    "subscribe",
    "suspend_user",
    "user_by_email",
    "verify_password",
]


class AccountsError(Exception):
    """A change the service refuses: unknown user, duplicate email, bad input."""


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str | None  # None once deleted
    status: str  # active | suspended | deleted
    is_admin: bool
    created_at: str
    deleted_at: str | None
    has_password: bool
    active_keys: int = 0  # filled in by list_users


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as stored: never the secret, only its visible ``prefix``."""

    id: str
    user_id: str
    prefix: str
    name: str
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    @property
    def limits(self) -> dict[str, int]:
        return {
            name: value
            for name, value in (
                ("rpm", self.rpm),
                ("tpm", self.tpm),
                ("max_concurrent", self.max_concurrent),
            )
            if value is not None
        }


class NewKey(msgspec.Struct, frozen=True):
    key: ApiKey
    secret: str  # shown once, never stored


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- change notification ------------------------------------------------------------------------

_subscribers: list[Callable[[], None]] = []

_BUMP = "UPDATE accounts_state SET revision = revision + 1 WHERE id = 1"


def subscribe(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after every committed change that affects authentication made in this
    process. Returns the function that unsubscribes."""
    _subscribers.append(callback)
    return lambda: _subscribers.remove(callback)


def _notify() -> None:
    for callback in _subscribers[:]:  # a callback may unsubscribe
        callback()


# -- users --------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAX_EMAIL = 254  # RFC 5321's limit on a forward path
_USER = "id, email, status, is_admin, created_at, deleted_at, password_hash IS NOT NULL"


def normalize_email(email: str) -> str:
    """Emails compare without case or surrounding whitespace: ``Alice@Example.com `` is
    ``alice@example.com``."""
    normal = email.strip().lower()
    if len(normal) > _MAX_EMAIL or not _EMAIL.match(normal):
        raise AccountsError(f"not an email address: {email.strip()!r}")
    return normal


def _user(row: Row, active_keys: int = 0) -> User:
    return User(
        id=row[0],
        email=row[1],
        status=row[2],
        is_admin=bool(row[3]),
        created_at=row[4],
        deleted_at=row[5],
        has_password=bool(row[6]),
        active_keys=active_keys,
    )


async def _hashed(password: str | None) -> str | None:
    if password is None:
        return None
    if len(password) < passwords.MIN_PASSWORD_CHARS:
        raise AccountsError(
            f"the password is too short (at least {passwords.MIN_PASSWORD_CHARS} characters)"
        )
    if len(password) > passwords.MAX_PASSWORD_CHARS:
        raise AccountsError(
            f"the password is too long (at most {passwords.MAX_PASSWORD_CHARS} characters)"
        )
    # Argon2 is slow on purpose: keep the event loop free while it runs.
    return await asyncio.to_thread(passwords.hash_password, password)


async def create_user(
    store: Store, email: str, *, password: str | None = None, is_admin: bool = False
) -> User:
    """A new active user with a random id. Without a password the user signs in with keys only."""
    email = normalize_email(email)
    password_hash = await _hashed(password)
    user_id = uuid.uuid4().hex
    async with store.transaction() as tx:
        if await tx.fetchone("SELECT 1 FROM users WHERE email = ?", (email,)):
            raise AccountsError(f"a user with email {email} already exists")
        await tx.execute(
            "INSERT INTO users (id, email, password_hash, status, is_admin, created_at) "
            "VALUES (?, ?, ?, 'active', ?, ?)",
            (user_id, email, password_hash, int(is_admin), now()),
        )
        row = await tx.fetchone(f"SELECT {_USER} FROM users WHERE id = ?", (user_id,))
    assert row is not None
    return _user(row)


async def find_user_by_email(store: Store, email: str) -> User | None:
    """The user with this email (deleted users have none), or None."""
    try:
        email = normalize_email(email)
    except AccountsError:
        return None
    row = await store.fetchone(f"SELECT {_USER} FROM users WHERE email = ?", (email,))
    return _user(row) if row else None


async def user_by_email(store: Store, email: str) -> User:
    """Like :func:`find_user_by_email`, but an unknown email is an :class:`AccountsError`."""
    user = await find_user_by_email(store, email)
    if user is None:
        raise AccountsError(f"no user with email {email.strip()}")
    return user


async def get_user(store: Store, user_id: str) -> User | None:
    row = await store.fetchone(f"SELECT {_USER} FROM users WHERE id = ?", (user_id,))
    return _user(row) if row else None


async def list_users(
    store: Store,
    *,
    include_deleted: bool = True,
    email_contains: str | None = None,
    limit: int | None = None,
) -> list[User]:
    """Users, oldest first, with the number of keys that still work; only those whose email
    contains ``email_contains`` (without case) when given, and at most ``limit``."""
    where: list[str] = [] if include_deleted else ["u.status <> 'deleted'"]
    params: list[Any] = []
    if email_contains:
        # LIKE with its wildcards escaped: the text is matched as typed
        pattern = re.sub(r"([\\%_])", r"\\\1", email_contains.strip().lower())
        where.append("u.email LIKE ? ESCAPE '\\'")
        params.append(f"%{pattern}%")
    sql = (
        "SELECT u.id, u.email, u.status, u.is_admin, u.created_at, u.deleted_at, "
        "u.password_hash IS NOT NULL, "
        "(SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL) "
        "FROM users u"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY u.created_at, u.id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = await store.fetchall(sql, params)
    return [_user(row, active_keys=int(row[7])) for row in rows]


async def verify_password(store: Store, email: str, password: str) -> User | None:
    """The user when ``password`` is theirs (whatever their status: the caller decides what a
    suspended user may see), else None. Upgrades the stored hash when the defaults got
    stronger."""
    try:
        email = normalize_email(email)
    except AccountsError:
        return None
    row = await store.fetchone(
        f"SELECT {_USER}, password_hash FROM users WHERE email = ?", (email,)
    )
    if row is None or row[7] is None:
        return None
    stored: str = row[7]
    if not await asyncio.to_thread(passwords.verify_password, stored, password):
        return None
    if passwords.needs_rehash(stored):
        fresh = await asyncio.to_thread(passwords.hash_password, password)
        await store.execute("UPDATE users SET password_hash = ? WHERE id = ?", (fresh, row[0]))
    return _user(row)


async def _live_user(tx: Tx, user_id: str) -> tuple[str, str | None]:
    row = await tx.fetchone("SELECT status, email FROM users WHERE id = ?", (user_id,))
    if row is None:
        raise AccountsError(f"no user with id {user_id}")
    if row[0] == "deleted":
        raise AccountsError(f"user {user_id} is deleted")
    return row[0], row[1]


async def set_password(store: Store, user_id: str, password: str | None) -> None:
    """Set, change or (``None``) remove a user's password."""
    password_hash = await _hashed(password)
    async with store.transaction() as tx:
        await _live_user(tx, user_id)
        await tx.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
        )


async def _set_status(store: Store, user_id: str, status: str) -> bool:
    async with store.transaction() as tx:
        current, _ = await _live_user(tx, user_id)
        if current == status:
            return False
        await tx.execute("UPDATE users SET status = ? WHERE id = ?", (status, user_id))
        await tx.execute(_BUMP)
    _notify()
    return True


async def suspend_user(store: Store, user_id: str) -> bool:
    """Refuse every key of the user with 403 ``account_suspended`` until resumed. False when
    the user was suspended already."""
    return await _set_status(store, user_id, "suspended")


async def resume_user(store: Store, user_id: str) -> bool:
    """Undo :func:`suspend_user`. False when the user was active already."""
    return await _set_status(store, user_id, "active")


async def set_admin(store: Store, user_id: str, is_admin: bool) -> None:
    async with store.transaction() as tx:
        await _live_user(tx, user_id)
        await tx.execute("UPDATE users SET is_admin = ? WHERE id = ?", (int(is_admin), user_id))
        await tx.execute(_BUMP)
    _notify()


async def delete_user(store: Store, user_id: str, pm: PluginManager | None = None) -> int:
    """Delete a user: every key revoked at once, personal data erased (email, password hash,
    key names, BYOK keys). The row stays with its random id, so ledger and usage records that
    point at it remain, anonymous. Then other plugins erase their own data for the user
    (``lmrouter_user_deleted``, when ``pm`` is given). Returns how many keys were revoked."""
    at = now()
    async with store.transaction() as tx:
        await _live_user(tx, user_id)
        revoked = await tx.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (at, user_id),
        )
        await tx.execute("UPDATE api_keys SET name = '' WHERE user_id = ?", (user_id,))
        await tx.execute("DELETE FROM byok_keys WHERE user_id = ?", (user_id,))
        await tx.execute(
            "UPDATE users SET email = NULL, password_hash = NULL, is_admin = 0, "
            "status = 'deleted', deleted_at = ? WHERE id = ?",
            (at, user_id),
        )
        await tx.execute(_BUMP)
    _notify()
    if pm is not None:
        for pending in pm.hook.lmrouter_user_deleted(store=store, user_id=user_id):
            if inspect.isawaitable(pending):
                await pending
    return revoked


# -- API keys -----------------------------------------------------------------------------------

_KEY = "id, user_id, prefix, name, rpm, tpm, max_concurrent, created_at, last_used_at, revoked_at"
_MAX_KEY_NAME = 100


def _key(row: Row) -> ApiKey:
    return ApiKey(
        id=row[0],
        user_id=row[1],
        prefix=row[2],
        name=row[3],
        rpm=row[4],
        tpm=row[5],
        max_concurrent=row[6],
        created_at=row[7],
        last_used_at=row[8],
        revoked_at=row[9],
    )


def _limit(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise AccountsError(f"{name} must be a whole number ≥ 0 (0: unlimited), got {value!r}")
    return value


def _key_name(name: str) -> str:
    name = name.strip()
    if len(name) > _MAX_KEY_NAME:
        raise AccountsError(f"the key name is too long (at most {_MAX_KEY_NAME} characters)")
    if any(not ch.isprintable() for ch in name):
        raise AccountsError("the key name must be printable text")
    return name


async def create_key(
    store: Store,
    user_id: str,
    *,
    name: str = "",
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrent: int | None = None,
) -> NewKey:
    """A new API key for the user. ``rpm``/``tpm``/``max_concurrent`` override the
    ``[ratelimit]`` defaults for this key (0: unlimited). The secret is in the answer only."""
    name = _key_name(name)
    limits = (_limit("rpm", rpm), _limit("tpm", tpm), _limit("max-concurrent", max_concurrent))
    secret = keys.new_key()
    key_id = uuid.uuid4().hex
    async with store.transaction() as tx:
        await _live_user(tx, user_id)
        await tx.execute(
            "INSERT INTO api_keys (id, user_id, hash, prefix, name, rpm, tpm, max_concurrent, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key_id,
                user_id,
                keys.digest(secret),
                keys.visible_prefix(secret),
                name,
                *limits,
                now(),
            ),
        )
        row = await tx.fetchone(f"SELECT {_KEY} FROM api_keys WHERE id = ?", (key_id,))
    assert row is not None
    return NewKey(_key(row), secret)


async def list_keys(store: Store, user_id: str) -> list[ApiKey]:
    """The user's keys, revoked ones included, oldest first."""
    rows = await store.fetchall(
        f"SELECT {_KEY} FROM api_keys WHERE user_id = ? ORDER BY created_at, id", (user_id,)
    )
    return [_key(row) for row in rows]


async def get_key(store: Store, key_id: str) -> ApiKey | None:
    row = await store.fetchone(f"SELECT {_KEY} FROM api_keys WHERE id = ?", (key_id,))
    return _key(row) if row else None


async def revoke_key(store: Store, key_id: str, *, user_id: str | None = None) -> ApiKey:
    """Revoke a key for good (idempotent). With ``user_id``, only that user's own key: another
    user's key id is reported as unknown, as it would be to a stranger."""
    async with store.transaction() as tx:
        row = await tx.fetchone(f"SELECT {_KEY} FROM api_keys WHERE id = ?", (key_id,))
        if row is None or (user_id is not None and row[1] != user_id):
            raise AccountsError(f"no key with id {key_id}")
        key = _key(row)
        if key.revoked_at is not None:
            return key
        at = now()
        await tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (at, key_id))
        await tx.execute(_BUMP)
    _notify()
    return msgspec.structs.replace(key, revoked_at=at)


# -- BYOK ---------------------------------------------------------------------------------------

_MAX_PROVIDER_KEY = 4096


def _provider_key(key: str) -> str:
    key = key.strip()
    if not key:
        raise AccountsError("the provider key is empty")
    if len(key) > _MAX_PROVIDER_KEY or any(ch.isspace() or not ch.isprintable() for ch in key):
        raise AccountsError("that does not look like a provider key (one line, no spaces)")
    if key.startswith(keys.KEY_PREFIX):
        raise AccountsError("that is an LMRouter key, not the provider's own key")
    return key


async def set_byok(
    store: Store,
    box: SecretBox | None,
    user_id: str,
    provider: str,
    key: str,
    *,
    providers: Mapping[str, Any],
) -> None:
    """Store (or replace) the user's own key for ``provider``, encrypted with the server secret.
    Requests of the user routed to that provider then use it and spend no credits."""
    box = check_byok_target(box, provider, providers=providers)
    key = _provider_key(key)
    async with store.transaction() as tx:
        await _live_user(tx, user_id)
        ciphertext = box.encrypt(key, user_id, provider)
        await tx.execute(
            "DELETE FROM byok_keys WHERE user_id = ? AND provider = ?", (user_id, provider)
        )
        await tx.execute(
            "INSERT INTO byok_keys (user_id, provider, ciphertext, created_at) VALUES (?, ?, ?, ?)",
            (user_id, provider, ciphertext, now()),
        )
        await tx.execute(_BUMP)
    _notify()


def byok_allowed(providers: Mapping[str, Any]) -> list[str]:
    """The providers (name → config) that accept users' own keys: ``byok = true``."""
    return sorted(name for name, config in providers.items() if getattr(config, "byok", False))


def check_byok_target(
    box: SecretBox | None, provider: str, *, providers: Mapping[str, Any]
) -> SecretBox:
    """The checks :func:`set_byok` makes before it looks at the key: a secret to encrypt with,
    and a configured provider that accepts users' keys (callers that prompt for the key check
    first). ``providers``: the configured providers, name → config."""
    if box is None:
        raise AccountsError(
            "[accounts] secret is not set: BYOK keys are stored encrypted with it "
            '(e.g. secret = "${LMROUTER_SECRET:-}" and export LMROUTER_SECRET=$(openssl rand '
            "-base64 32))"
        )
    if provider not in providers:
        known = ", ".join(sorted(providers)) or "none"
        raise AccountsError(f"unknown provider {provider!r}; configured providers: {known}")
    allowed = byok_allowed(providers)
    if provider not in allowed:
        raise AccountsError(
            f"provider {provider!r} does not accept users' own keys (the operator allows them "
            f"with byok = true in [providers.{provider}]); providers that do: "
            f"{', '.join(allowed) or 'none'}"
        )
    return box


async def remove_byok(store: Store, user_id: str, provider: str) -> None:
    async with store.transaction() as tx:
        await _live_user(tx, user_id)
        removed = await tx.execute(
            "DELETE FROM byok_keys WHERE user_id = ? AND provider = ?", (user_id, provider)
        )
        if not removed:
            raise AccountsError(f"no BYOK key stored for provider {provider!r}")
        await tx.execute(_BUMP)
    _notify()


async def byok_providers(store: Store, user_id: str) -> list[str]:
    """The providers the user has stored a key for (never the keys)."""
    rows: Sequence[Any] = await store.fetchall(
        "SELECT provider FROM byok_keys WHERE user_id = ? ORDER BY provider", (user_id,)
    )
    return [row[0] for row in rows]
