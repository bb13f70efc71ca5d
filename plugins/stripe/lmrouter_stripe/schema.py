"""The Stripe plugin's tables. Times are the credits plugin's fixed-width ISO-8601 UTC text.

``stripe_sessions``: every Checkout Session made here, completed by its webhook with the
PaymentIntent (how a later refund or dispute of the charge finds its user) and the credited lot.
``stripe_events``: every event handled, keyed by the event id: a replayed event finds its row and
changes nothing. The row is written in the transaction that credits, so a crash leaves both or
neither. ``outcome`` ``unmatched`` marks a refund or dispute that arrived before its payment; it
is applied when the payment is credited."""

from __future__ import annotations

NAMESPACE = "stripe"

MIGRATIONS = [
    """CREATE TABLE stripe_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    credit_pico BIGINT NOT NULL,
    fee_cents BIGINT NOT NULL,
    amount_total_cents BIGINT NOT NULL,
    payment_intent TEXT,
    lot_id INTEGER REFERENCES credit_lots (id),
    created_at TEXT NOT NULL,
    paid_at TEXT
);
CREATE INDEX stripe_sessions_user ON stripe_sessions (user_id, created_at);
CREATE INDEX stripe_sessions_payment_intent ON stripe_sessions (payment_intent);
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    object_id TEXT,
    payment_intent TEXT,
    outcome TEXT NOT NULL,
    created_at TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX stripe_events_unmatched ON stripe_events (payment_intent, outcome)""",
]
