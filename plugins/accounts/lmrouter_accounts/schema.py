"""The accounts tables. Other plugins may read ``users`` (``id``, ``email``, ``status``) and
``api_keys`` (``id``, ``user_id``); only this plugin writes them."""

from __future__ import annotations

NAMESPACE = "accounts"

MIGRATIONS = [
    # 1: users, API keys (only a hash of each secret), BYOK provider keys (encrypted)
    """CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE,
    password_hash TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    rpm INTEGER,
    tpm INTEGER,
    max_concurrent INTEGER,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE TABLE byok_keys (
    user_id TEXT NOT NULL REFERENCES users (id),
    provider TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, provider)
);
CREATE TABLE accounts_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO accounts_state (id, revision) VALUES (1, 0)""",
]
