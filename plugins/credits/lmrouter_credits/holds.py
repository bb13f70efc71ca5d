"""Credit holds shared by every router process on a server database (PostgreSQL): the statements
of the multiprocess path. The embedded store never runs these (its holds live in the one
process's memory, :mod:`lmrouter_credits.wallet`).

Per user one ``credit_accounts`` row carries everything an admission decides on: the balance of
the unexpired lots (kept right by every write that changes a lot, in the same transaction), the
earliest expiry among them, and what requests in flight hold. An admission is one statement: a
conditional update of that row (``balance - held >= hold``, nothing expired since the balance
was computed) and the insert of the hold, together (a data-modifying ``WITH``). Concurrent
admissions for one user queue on the row's lock and each re-checks the condition on the row as
the previous one left it, so no two can both take the last of a balance, on any host.

Each hold names its owner (``host:pid:start``) and carries a lease the owner renews; a hold
whose lease ran out (its process died, or lost the database for longer than the lease) is
released by whichever process looks first. A process starting on a host releases at once the
holds of that host's processes that are gone (a restart or a killed worker).

A hold stays until the charge of its request is written: the batched write releases it in the
same transaction, so between the request's end and the write no other process can spend what
the charge will take.
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from lmrouter_credits.clock import to_iso

if TYPE_CHECKING:
    from lmrouter import Tx
    from lmrouter_credits.ledger import Reader

NO_EXPIRY = "9999-12-31T23:59:59.999999Z"  # next_expiry of a user with no unexpired lot
_IN_CHUNK = 500

# The admission: reserve ``hold`` if the row allows it, and record the hold, in one statement.
ADMIT = """WITH reserved AS (
    UPDATE credit_accounts SET held_pico = held_pico + ?
    WHERE user_id = ? AND next_expiry > ? AND balance_pico - held_pico >= ?
    RETURNING user_id
)
INSERT INTO credit_holds (id, user_id, amount_pico, owner, expires_at)
SELECT ?, user_id, ?, ?, ? FROM reserved RETURNING id"""


def owner_id() -> str:
    """``host:pid:start``: the host and process holding credits, and which start of that
    process (a restarted container may get the same pid again)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _parse(owner: str) -> tuple[str, int] | None:
    """``(host, pid)`` of an owner id (split from the end: a host name may hold colons)."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def gone_on_this_host(owners: Iterable[str], me: str) -> list[str]:
    """The owners among ``owners`` that were processes of this host and are no longer running
    (or are this process in an earlier start: same pid, another start token)."""
    host = socket.gethostname()
    gone = []
    for owner in owners:
        if owner == me:
            continue
        parsed = _parse(owner)
        if parsed is None or parsed[0] != host:
            continue
        pid = parsed[1]
        if pid == os.getpid() or not _alive(pid):
            gone.append(owner)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, run by another user
        return True
    return True


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def admit(
    reader: Reader, hold_id: str, user_id: str, amount: int, owner: str, now: int, lease_us: int
) -> bool:
    """The one-statement admission; False when the row refuses (or does not exist yet)."""
    row = await reader.fetchone(
        ADMIT,
        (
            amount,
            user_id,
            to_iso(now),
            amount,
            hold_id,
            amount,
            owner,
            to_iso(now + lease_us),
        ),
    )
    return row is not None


async def refresh(tx: Tx, user_id: str, now: int) -> int:
    """Recompute a user's row from the lots and the holds (making it if missing), inside a
    write transaction; returns what is available (balance minus holds)."""
    await tx.fetchone(
        "SELECT user_id FROM credit_accounts WHERE user_id = ? FOR UPDATE", (user_id,)
    )
    at = to_iso(now)
    lots = await tx.fetchone(
        "SELECT COALESCE(SUM(remaining_pico), 0), MIN(expires_at) FROM credit_lots "
        "WHERE user_id = ? AND expires_at > ? AND remaining_pico > 0",
        (user_id, at),
    )
    held = await tx.fetchone(
        "SELECT COALESCE(SUM(amount_pico), 0) FROM credit_holds WHERE user_id = ?", (user_id,)
    )
    balance = int(lots[0]) if lots else 0
    next_expiry = (lots[1] if lots else None) or NO_EXPIRY
    held_pico = int(held[0]) if held else 0
    await tx.execute(
        "INSERT INTO credit_accounts (user_id, balance_pico, held_pico, next_expiry) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
        "balance_pico = excluded.balance_pico, held_pico = excluded.held_pico, "
        "next_expiry = excluded.next_expiry",
        (user_id, balance, held_pico, next_expiry),
    )
    return balance - held_pico


async def refresh_balances(tx: Tx, user_ids: Sequence[str], now: int) -> None:
    """After lots changed: the balance and next expiry of these users' rows (those that exist)
    computed again from their lots, in the transaction that changed them."""
    at = to_iso(now)
    for chunk in _chunks(sorted(set(user_ids))):
        await tx.execute(
            "UPDATE credit_accounts SET balance_pico = (SELECT COALESCE(SUM(remaining_pico), 0) "
            "FROM credit_lots WHERE credit_lots.user_id = credit_accounts.user_id "
            "AND expires_at > ? AND remaining_pico > 0), "
            "next_expiry = (SELECT COALESCE(MIN(expires_at), ?) FROM credit_lots "
            "WHERE credit_lots.user_id = credit_accounts.user_id AND expires_at > ? "
            f"AND remaining_pico > 0) WHERE user_id IN ({_marks(len(chunk))})",
            (at, NO_EXPIRY, at, *chunk),
        )


async def lock_held(tx: Tx, user_ids: Sequence[str]) -> dict[str, int]:
    """What these users hold in all, their rows locked until the transaction ends (so no
    admission slips in between reading the holds and charging against them)."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(user_ids))):
        rows = await tx.fetchall(
            "SELECT user_id, held_pico FROM credit_accounts "
            f"WHERE user_id IN ({_marks(len(chunk))}) ORDER BY user_id FOR UPDATE",
            chunk,
        )
        found.update((row[0], int(row[1])) for row in rows)
    return found


async def release(tx: Tx, hold_ids: Sequence[str]) -> dict[str, int]:
    """Delete these holds (those still there: a hold reclaimed already is not released twice)
    and take them off their users' rows; returns what was released per user."""
    return await _unhold(tx, await _delete(tx, "id", hold_ids))


async def reclaim(tx: Tx, now: int, owners: Sequence[str] = ()) -> int:
    """Release the holds whose lease ran out, and every hold of ``owners``; returns how many."""
    rows = await tx.fetchall(
        "DELETE FROM credit_holds WHERE expires_at <= ? RETURNING user_id, amount_pico",
        (to_iso(now),),
    )
    rows += await _delete(tx, "owner", owners)
    await _unhold(tx, rows)
    return len(rows)


async def _delete(tx: Tx, column: str, values: Sequence[str]) -> list[Any]:
    """Delete the holds whose ``column`` is one of ``values``: their (user_id, amount) rows."""
    rows: list[Any] = []
    for chunk in _chunks(list(values)):
        rows += await tx.fetchall(
            f"DELETE FROM credit_holds WHERE {column} IN ({_marks(len(chunk))}) "
            "RETURNING user_id, amount_pico",
            chunk,
        )
    return rows


async def _unhold(tx: Tx, rows: list[Any]) -> dict[str, int]:
    """Take deleted holds (user_id, amount) off their users' rows; what was released per user."""
    released: dict[str, int] = defaultdict(int)
    for user_id, amount in rows:
        released[user_id] += int(amount)
    if released:
        await tx.executemany(
            "UPDATE credit_accounts SET held_pico = held_pico - ? WHERE user_id = ?",
            [(amount, user_id) for user_id, amount in sorted(released.items())],
        )
    return released


async def renew(tx: Tx, owner: str, until: int) -> int:
    """Move the lease of every hold of ``owner`` to ``until``; returns how many it has."""
    return await tx.execute(
        "UPDATE credit_holds SET expires_at = ? WHERE owner = ?", (to_iso(until), owner)
    )


async def owners(reader: Reader) -> list[str]:
    return [row[0] for row in await reader.fetchall("SELECT DISTINCT owner FROM credit_holds")]
