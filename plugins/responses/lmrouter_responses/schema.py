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

# Conversations (the Conversations API, and ``conversation`` on ``POST /v1/responses``): kept
# here for every route. ``position`` orders a conversation's items (appended, never moved).
MIGRATIONS.append(
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        user_id TEXT,
        metadata TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX conversations_expiry ON conversations (expires_at);
    CREATE INDEX conversations_user ON conversations (user_id);
    CREATE TABLE conversation_items (
        conversation_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        id TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (conversation_id, position)
    );
    CREATE INDEX conversation_items_id ON conversation_items (conversation_id, id);
    """
)
