"""Checks for tests of anything that moves credits (this plugin's, and other plugins' such as
``lmrouter-stripe``): read straight from the database a running server writes (a SQLite file,
or PostgreSQL)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

_BOTH = """SELECT 'ledger', user_id, SUM(amount_pico) FROM ledger GROUP BY user_id
UNION ALL SELECT 'lots', user_id, SUM(remaining_pico) FROM credit_lots GROUP BY user_id"""


def ledger_matches_lots(db: Path | str) -> None:
    """Per user, the ledger sums to what the lots hold (the invariant in :mod:`.schema`). ``db``:
    a SQLite file, or a server database's URL."""
    if isinstance(db, str) and not db.startswith("sqlite:"):
        from lmrouter.testing.operator import query

        sums: dict[str, dict[str, int]] = {"ledger": {}, "lots": {}}
        for table, user, total in query(db, _BOTH):  # one statement: one snapshot
            sums[table][user] = total
        assert sums["ledger"] == sums["lots"], f"ledger {sums['ledger']} != lots {sums['lots']}"
        return
    # One read transaction: a batch the server commits between two queries would skew them.
    with contextlib.closing(sqlite3.connect(db, timeout=10, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        ledger = dict(conn.execute("SELECT user_id, SUM(amount_pico) FROM ledger GROUP BY 1"))
        lots = dict(conn.execute("SELECT user_id, SUM(remaining_pico) FROM credit_lots GROUP BY 1"))
        conn.execute("COMMIT")
    assert ledger == lots, f"ledger {ledger} != lots {lots}"
