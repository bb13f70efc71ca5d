"""Checks for tests of anything that moves credits (this plugin's, and other plugins' such as
``lmrouter-stripe``): read straight from the SQLite file a running server writes."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def ledger_matches_lots(db: Path) -> None:
    """Per user, the ledger sums to what the lots hold (the invariant in :mod:`.schema`)."""
    # One read transaction: a batch the server commits between two queries would skew them.
    with contextlib.closing(sqlite3.connect(db, timeout=10, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        ledger = dict(conn.execute("SELECT user_id, SUM(amount_pico) FROM ledger GROUP BY 1"))
        lots = dict(conn.execute("SELECT user_id, SUM(remaining_pico) FROM credit_lots GROUP BY 1"))
        conn.execute("COMMIT")
    assert ledger == lots, f"ledger {ledger} != lots {lots}"
