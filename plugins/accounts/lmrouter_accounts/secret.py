"""The server secret that encrypts stored BYOK keys: from ``[accounts] secret``, else kept in a
file beside the database, made on first use. And the check, at start, that it still opens the
keys stored under it.

A secret that has to be exported before every start is a trap: forgotten once, every user with a
stored key got a 500 that told them to store it again. Kept beside the database (mode 0600) it
travels with the data it protects; a set or changed ``[accounts] secret`` that does not open the
stored keys stops the server at start with an error for the operator.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmrouter import ConfigError
from lmrouter_accounts.crypto import BoxError, SecretBox

if TYPE_CHECKING:
    from lmrouter import Config

_MEMORY: dict[str, str] = {}  # secrets of in-memory databases: they live as long as the process
_READ: dict[Path, str] = {}  # files already read: box_for runs on dashboard requests too


def database_file(config: Config) -> Path | None:
    """The SQLite file of ``[storage] url``, or None (in memory, or another store)."""
    scheme, _, rest = config.core.storage.url.partition("://")
    if scheme != "sqlite" or rest == ":memory:":
        return None
    path = Path(rest[1:] if rest.startswith("/") else rest)
    return path if path.is_absolute() else config.base_dir / path


def secret_file(config: Config) -> Path | None:
    """Where the generated secret lives: ``<database>.secret``, or ``lmrouter.secret`` beside
    the config for a store that is not a file."""
    if config.core.storage.url == "sqlite://:memory:":
        return None
    db = database_file(config)
    return Path(f"{db}.secret") if db else config.base_dir / "lmrouter.secret"


def server_secret(config: Config, *, create: bool) -> str:
    """``[accounts] secret`` when set; else the generated one (made now when ``create``);
    else ``""``."""
    configured: str = config.section("accounts").secret
    if configured:
        return configured
    path = secret_file(config)
    if path is None:
        return _MEMORY.setdefault(config.core.storage.url, secrets.token_urlsafe(32))
    if path in _READ:
        return _READ[path]
    with contextlib.suppress(FileNotFoundError):
        return _READ.setdefault(path, path.read_text(encoding="ascii").strip())
    if not create:
        return ""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of two processes starting at once, one writes and the other reads
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _READ.setdefault(path, path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return _READ.setdefault(path, path.read_text(encoding="ascii").strip())


def check_stored_keys(config: Config) -> None:
    """Refuse to start when the stored BYOK keys do not open with the secret in effect: the
    operator changed or forgot it, and every user with a stored key would get errors."""
    db = database_file(config)
    if db is None or not db.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT user_id, provider, ciphertext FROM byok_keys").fetchall()
    except sqlite3.Error:  # no such table yet (a new database): nothing stored
        return
    verify_stored_keys(config, rows, f"sqlite3 {db} 'DELETE FROM byok_keys'")


def verify_stored_keys(config: Config, rows: list[tuple[Any, ...]], delete: str) -> None:
    """Refuse when ``rows`` (user_id, provider, ciphertext of each stored BYOK key) do not open
    with the secret in effect; ``delete`` is the command that drops them, for the message."""
    if not rows:
        return
    configured = bool(config.section("accounts").secret)
    secret = server_secret(config, create=False)
    where = "[accounts] secret" if configured else f"the secret in {secret_file(config)}"
    fix = (
        "Start it with the secret they were stored with (e.g. export LMROUTER_SECRET=… again, "
        "or unset it when they were stored without one). If that secret is lost, the keys are "
        f"too: delete them ({delete}) and users store theirs again."
    )
    if not secret:
        raise ConfigError(
            f"{len(rows)} stored BYOK keys need the secret they were encrypted with, and none is "
            f"set. {fix}",
            path=config.path,
            key="accounts.secret",
        )
    box = SecretBox(secret)
    failing = 0
    for user_id, provider, ciphertext in rows:
        try:
            box.decrypt(ciphertext, user_id, provider)
        except BoxError:
            failing += 1
    if failing:
        raise ConfigError(
            f"{failing} of {len(rows)} stored BYOK keys do not open with {where}: it is not the "
            f"secret they were stored with. {fix}",
            path=config.path,
            key="accounts.secret",
        )
