"""The credits tables. Money columns are BIGINT pico-USD (SQLite stores any integer; a server
database needs 64 bits: a 32-bit column would overflow at about 2 cents). Times are ISO-8601 UTC
text of one fixed width (:mod:`lmrouter_credits.clock`), so comparing them as text is comparing
them as times.

Invariant, per user and at every commit: ``sum(ledger.amount_pico) ==
sum(credit_lots.remaining_pico)``. The ledger is append-only; a lot's ``remaining_pico`` only
goes down (spend, expiry), and every decrease is written with its ledger row in one transaction.
"""

from __future__ import annotations

NAMESPACE = "credits"

MIGRATIONS = [
    # 1: lots, the ledger, usage records, and the revision other processes poll
    """CREATE TABLE credit_lots (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    source TEXT NOT NULL CHECK (source IN ('grant', 'purchase')),
    source_ref TEXT UNIQUE,
    note TEXT,
    amount_pico BIGINT NOT NULL CHECK (amount_pico > 0),
    remaining_pico BIGINT NOT NULL CHECK (remaining_pico >= 0 AND remaining_pico <= amount_pico),
    purchased_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX credit_lots_user ON credit_lots (user_id, expires_at);
CREATE INDEX credit_lots_expiry ON credit_lots (expires_at);
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'purchase', 'spend', 'expiry', 'adjustment')),
    amount_pico BIGINT NOT NULL,
    lot_id INTEGER REFERENCES credit_lots (id),
    request_id TEXT,
    note TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX ledger_user ON ledger (user_id, created_at);
CREATE INDEX ledger_lot ON ledger (lot_id);
CREATE TABLE usage (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    user_id TEXT REFERENCES users (id),
    key_id TEXT,
    principal TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    route_model TEXT,
    dialect TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    estimated INTEGER NOT NULL DEFAULT 0,
    cost_pico BIGINT NOT NULL DEFAULT 0,
    charged_pico BIGINT NOT NULL DEFAULT 0,
    written_off_pico BIGINT NOT NULL DEFAULT 0,
    billable INTEGER NOT NULL,
    first_byte_ms REAL,
    total_ms REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX usage_user ON usage (user_id, created_at);
CREATE INDEX usage_key ON usage (key_id, created_at);
CREATE INDEX usage_created ON usage (created_at);
CREATE INDEX usage_request ON usage (request_id);
CREATE TABLE credits_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO credits_state (id, revision) VALUES (1, 0)""",
    # 2: history rows for what happened to a purchase outside the router (a card payment
    # refunded or disputed at Stripe): amount 0, because purchases are final and the credits
    # stay; SQLite cannot alter a CHECK, so the table is rebuilt with its rows and indexes
    """CREATE TABLE ledger_v2 (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'purchase', 'spend', 'expiry', 'adjustment',
        'refund', 'dispute')),
    amount_pico BIGINT NOT NULL CHECK (kind NOT IN ('refund', 'dispute') OR amount_pico = 0),
    lot_id INTEGER REFERENCES credit_lots (id),
    request_id TEXT,
    note TEXT,
    created_at TEXT NOT NULL
);
INSERT INTO ledger_v2 (id, user_id, kind, amount_pico, lot_id, request_id, note, created_at)
    SELECT id, user_id, kind, amount_pico, lot_id, request_id, note, created_at FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
CREATE INDEX ledger_user ON ledger (user_id, created_at);
CREATE INDEX ledger_lot ON ledger (lot_id)""",
    # 3: the dashboard's usage filters: a user's records of one model, newest first
    "CREATE INDEX usage_user_model ON usage (user_id, model, created_at)",
    # 4: where a record's usage came from: the provider's report, the router's estimate, or
    # the hold (a client that left before the provider reported usage pays the most it could
    # have cost)
    "ALTER TABLE usage ADD COLUMN usage_source TEXT NOT NULL DEFAULT 'provider'",
    # 5: credit holds shared by every process on a server database (PostgreSQL): per user, the
    # unexpired balance (kept with the lots, so one row decides an admission) and what requests
    # in flight hold; each hold with its owner (host:pid:start) and a lease its owner renews.
    # Unused on the embedded store, where holds live in the one process's memory.
    """CREATE TABLE credit_accounts (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    balance_pico BIGINT NOT NULL,
    held_pico BIGINT NOT NULL CHECK (held_pico >= 0),
    next_expiry TEXT NOT NULL
);
CREATE TABLE credit_holds (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    amount_pico BIGINT NOT NULL CHECK (amount_pico >= 0),
    owner TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX credit_holds_owner ON credit_holds (owner);
CREATE INDEX credit_holds_expiry ON credit_holds (expires_at)""",
]
