"""The plugin's table. A row says who may see a response and where it lives: kept upstream
(``upstream = 1``: an OpenAI route stored it; the row names the provider and whether the
caller's own key made it) or here (``input`` and ``response`` as JSON; ``previous_id`` chains
a conversation, rebuilt by walking it back)."""

NAMESPACE = "responses"

MIGRATIONS = [
    """
    CREATE TABLE stored_responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        user_id TEXT,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        upstream INTEGER NOT NULL,
        byok INTEGER NOT NULL,
        previous_id TEXT,
        input TEXT,
        response TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX stored_responses_expiry ON stored_responses (expires_at);
    CREATE INDEX stored_responses_user ON stored_responses (user_id);
    """,
]
