"""The dashboard's own tables: sign-in sessions (only a hash of each token), accepted terms, the
generated signing secret and sign-in throttles. Reads ``users`` (owned by the accounts plugin),
never writes it."""

from __future__ import annotations

NAMESPACE = "dashboard"

MIGRATIONS = [
    # 1: sessions, terms acceptances, the generated secret
    """CREATE TABLE dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT,
    operator TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    CHECK ((user_id IS NULL) <> (operator IS NULL))
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
CREATE TABLE dashboard_terms (
    user_id TEXT NOT NULL,
    version TEXT NOT NULL,
    accepted_at TEXT NOT NULL,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE dashboard_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret TEXT NOT NULL
)""",
    # 2: sign-in throttles, shared by every worker and host (lmrouter_dashboard.throttle)
    """CREATE TABLE dashboard_throttles (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_at REAL NOT NULL,
    locked_until REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX dashboard_throttles_expiry ON dashboard_throttles (expires_at)""",
]
