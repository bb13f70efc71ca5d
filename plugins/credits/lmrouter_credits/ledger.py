"""Every statement that touches the credits tables, each run inside the caller's transaction.

Portable SQL with ``?`` placeholders. Read-then-write happens only inside a write transaction
(SQLite's ``BEGIN IMMEDIATE`` admits one writer at a time); a server database must run these
functions at a serialisable isolation level or lock the lots it reads (``FOR UPDATE``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import structlog

from lmrouter import format_usd
from lmrouter_credits import holds
from lmrouter_credits.clock import DAY_US, from_iso, to_iso

if TYPE_CHECKING:
    from lmrouter import Tx
    from lmrouter_credits.wallet import LotState

log = structlog.get_logger("lmrouter.credits")


class Reader(Protocol):
    """A store or a transaction: anything that reads."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class Lot(msgspec.Struct, frozen=True):
    id: int
    user_id: str
    source: str  # "grant" or "purchase"
    source_ref: str | None  # e.g. the Stripe Checkout Session id
    note: str | None
    amount_pico: int
    remaining_pico: int
    purchased_at: str
    expires_at: str
    created_at: str


LOT_COLUMNS = (
    "id, user_id, source, source_ref, note, amount_pico, remaining_pico, purchased_at, "
    "expires_at, created_at"
)
_IN_CHUNK = 500  # bound on ``IN (?, …)`` lists; SQLite allows 32766 parameters


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- the revision other processes poll ---------------------------------------------------------


async def bump_revision(tx: Tx) -> None:
    """Tell running servers that lots changed under them (grants, purchases, sweeps)."""
    await tx.execute("UPDATE credits_state SET revision = revision + 1 WHERE id = 1")


async def revision(reader: Reader) -> int:
    row = await reader.fetchone("SELECT revision FROM credits_state WHERE id = 1")
    return int(row[0]) if row else 0


# -- lots ---------------------------------------------------------------------------------------


async def add_lot(
    tx: Tx,
    user_id: str,
    source: str,
    amount_pico: int,
    *,
    purchased_us: int,
    expire_after_days: int,
    now_us: int,
    source_ref: str | None = None,
    note: str | None = None,
) -> tuple[Lot, bool]:
    """A new lot and its ledger row; ``(lot, created)``. With a ``source_ref`` that exists
    already, nothing is written and the existing lot is returned with ``created=False``."""
    if amount_pico <= 0:
        raise ValueError("a lot must hold a positive amount")
    if source not in ("grant", "purchase"):
        raise ValueError(f"unknown lot source {source!r}")
    purchased = to_iso(purchased_us)
    expires = to_iso(purchased_us + expire_after_days * DAY_US)
    created = to_iso(now_us)
    row = await tx.fetchone(
        "INSERT INTO credit_lots (user_id, source, source_ref, note, amount_pico, "
        "remaining_pico, purchased_at, expires_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source_ref) DO NOTHING RETURNING id",
        (user_id, source, source_ref, note, amount_pico, amount_pico, purchased, expires, created),
    )
    if row is None:  # the same purchase again (a replayed webhook): already credited
        existing = await tx.fetchone(
            f"SELECT {LOT_COLUMNS} FROM credit_lots WHERE source_ref = ?", (source_ref,)
        )
        assert existing is not None
        return Lot(*existing), False
    lot_id = int(row[0])
    await tx.execute(
        "INSERT INTO ledger (user_id, kind, amount_pico, lot_id, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, source, amount_pico, lot_id, note, created),
    )
    await holds.refresh_balances(tx, [user_id], now_us)
    await bump_revision(tx)
    lot = Lot(
        lot_id,
        user_id,
        source,
        source_ref,
        note,
        amount_pico,
        amount_pico,
        purchased,
        expires,
        created,
    )
    return lot, True


NOTE_KINDS = frozenset({"refund", "dispute"})


async def add_note(
    tx: Tx, user_id: str, kind: str, note: str, *, lot_id: int | None, now_us: int
) -> None:
    """A ledger row of amount 0: history that moves no money (see ``NOTE_KINDS``)."""
    if kind not in NOTE_KINDS:
        raise ValueError(f"unknown ledger note kind {kind!r}")
    await tx.execute(
        "INSERT INTO ledger (user_id, kind, amount_pico, lot_id, note, created_at) "
        "VALUES (?, ?, 0, ?, ?, ?)",
        (user_id, kind, lot_id, note, to_iso(now_us)),
    )


async def lots_of(reader: Reader, user_id: str) -> list[Lot]:
    """All of a user's lots, spent and expired ones too, earliest expiry first."""
    rows = await reader.fetchall(
        f"SELECT {LOT_COLUMNS} FROM credit_lots WHERE user_id = ? ORDER BY expires_at, id",
        (user_id,),
    )
    return [Lot(*row) for row in rows]


async def balance(reader: Reader, user_id: str, at_us: int) -> int:
    """What the user can spend at ``at_us``: the remainder of their unexpired lots."""
    row = await reader.fetchone(
        "SELECT COALESCE(SUM(remaining_pico), 0) FROM credit_lots "
        "WHERE user_id = ? AND expires_at > ?",
        (user_id, to_iso(at_us)),
    )
    return int(row[0]) if row else 0


async def balances(reader: Reader, user_ids: Sequence[str], at_us: int) -> dict[str, int]:
    """:func:`balance` of several users in a few queries (users with nothing are left out)."""
    found: dict[str, int] = {}
    for chunk in _chunks(list(user_ids)):
        rows = await reader.fetchall(
            "SELECT user_id, SUM(remaining_pico) FROM credit_lots WHERE expires_at > ? "
            f"AND remaining_pico > 0 AND user_id IN ({_marks(len(chunk))}) GROUP BY user_id",
            (to_iso(at_us), *chunk),
        )
        found.update((row[0], int(row[1])) for row in rows)
    return found


async def live_lots(reader: Reader, user_ids: Sequence[str]) -> dict[str, list[LotState]]:
    """For wallets: every lot with something remaining, expired or not (the wallet drops the
    expired ones itself, after replaying charges made while they were still valid)."""
    found: dict[str, list[LotState]] = defaultdict(list)
    for chunk in _chunks(list(user_ids)):
        rows = await reader.fetchall(
            "SELECT user_id, id, expires_at, remaining_pico FROM credit_lots "
            f"WHERE remaining_pico > 0 AND user_id IN ({_marks(len(chunk))})",
            chunk,
        )
        for user_id, lot_id, expires_at, remaining in rows:
            found[user_id].append([from_iso(expires_at), int(lot_id), int(remaining)])
    return found


class Expired(msgspec.Struct, frozen=True):
    lot_id: int
    user_id: str
    amount_pico: int  # the unspent remainder that expired
    expires_at: str


async def expire(tx: Tx, as_of_us: int, now_us: int) -> list[Expired]:
    """Expire every lot whose expiry is at or before ``as_of_us``: an ``expiry`` ledger row for
    exactly its unspent remainder, and the remainder set to zero."""
    rows = await tx.fetchall(
        "SELECT id, user_id, remaining_pico, expires_at FROM credit_lots "
        "WHERE expires_at <= ? AND remaining_pico > 0 ORDER BY id",
        (to_iso(as_of_us),),
    )
    expired = [Expired(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]
    if not expired:
        return expired
    created = to_iso(now_us)
    await tx.executemany(
        "UPDATE credit_lots SET remaining_pico = remaining_pico - ? WHERE id = ?",
        [(e.amount_pico, e.lot_id) for e in expired],
    )
    await tx.executemany(
        "INSERT INTO ledger (user_id, kind, amount_pico, lot_id, note, created_at) "
        "VALUES (?, 'expiry', ?, ?, ?, ?)",
        [
            (e.user_id, -e.amount_pico, e.lot_id, f"expired {e.expires_at}", created)
            for e in expired
        ],
    )
    await holds.refresh_balances(tx, [e.user_id for e in expired], now_us)
    await bump_revision(tx)
    return expired


# -- settling requests --------------------------------------------------------------------------

USAGE_COLUMNS = (
    "id",
    "request_id",
    "user_id",
    "key_id",
    "principal",
    "model",
    "provider",
    "route_model",
    "dialect",
    "attempts",
    "status",
    "http_status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "estimated",
    "cost_pico",
    "charged_pico",
    "written_off_pico",
    "billable",
    "first_byte_ms",
    "total_ms",
    "usage_source",
    "created_at",
)
FIELDS = len(USAGE_COLUMNS) - 4  # what a Settlement carries: not id, charged, written off, at
_INSERT_USAGE = (
    f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES ({_marks(len(USAGE_COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)


class Settlement:
    """How one request ended, for the batched write: the usage record, and the charge to draw
    from the user's lots. Built on the request path, so it is a bare slotted object."""

    __slots__ = (
        "at_us",
        "charge",
        "fields",
        "hold_id",
        "seq",
        "usage_id",
        "user_id",
        "waived",
        "wallet",
    )

    def __init__(
        self,
        usage_id: str,
        user_id: str | None,
        charge: int,
        waived: int,
        at_us: int,
        fields: tuple[Any, ...],
        wallet: Any = None,
        seq: int = 0,
        hold_id: str | None = None,
    ) -> None:
        self.usage_id = usage_id
        self.user_id = user_id
        self.charge = charge  # what to draw from the lots
        self.waived = waived  # what the user owed beyond their balance (written off)
        self.at_us = at_us
        # the usage columns from request_id to cost_pico, then billable, first_byte_ms,
        # total_ms and usage_source (see USAGE_COLUMNS): all but what the write itself decides
        assert len(fields) == FIELDS, fields
        self.fields = fields
        self.wallet = wallet
        self.seq = seq
        self.hold_id = hold_id  # a shared hold (server database) that the write releases


async def write_settlements(
    tx: Tx, items: Sequence[Settlement], *, rerun: bool = True, shared: bool = False
) -> None:
    """Draw each charge from its user's lots (unexpired at the request's end, earliest expiry
    first; one ``spend`` ledger row per lot touched) and insert the usage records. A handful of
    statements per batch, however many requests it holds. When ``rerun`` (the batch may have
    been written before: run again after a commit that reported failure), records already
    written are skipped, charge and all; a batch's first run (usage ids are new) skips the
    look.

    ``shared`` (holds in the database, :mod:`lmrouter_credits.holds`): the settlements' holds
    are released here, and each charge is capped to what the lots hold beyond the other
    requests' holds, as the in-memory wallet caps it on the embedded store."""
    if not items:
        return
    present: set[str] = set()
    ids = [s.usage_id for s in items] if rerun else []
    for chunk in _chunks(ids):
        rows = await tx.fetchall(f"SELECT id FROM usage WHERE id IN ({_marks(len(chunk))})", chunk)
        present.update(row[0] for row in rows)
    todo = [s for s in items if s.usage_id not in present] if present else list(items)
    payers = sorted({s.user_id for s in todo if s.charge > 0 and s.user_id is not None})
    others: dict[str, int] = {}  # per user: what other requests hold (shared holds only)
    if shared:
        users = {s.user_id for s in todo if s.hold_id is not None and s.user_id is not None}
        locked = await holds.lock_held(tx, sorted(users | set(payers)))
        released = await holds.release(tx, [s.hold_id for s in items if s.hold_id is not None])
        others = {user: held - released.get(user, 0) for user, held in locked.items()}
    lots: dict[str, list[list[Any]]] = defaultdict(list)
    for chunk in _chunks(payers):
        rows = await tx.fetchall(
            "SELECT user_id, id, expires_at, remaining_pico FROM credit_lots "
            f"WHERE remaining_pico > 0 AND user_id IN ({_marks(len(chunk))}) "
            "ORDER BY user_id, expires_at, id",
            chunk,
        )
        for user_id, lot_id, expires_at, remaining in rows:
            lots[user_id].append([expires_at, int(lot_id), int(remaining)])
    taken: dict[int, int] = defaultdict(int)
    spends: list[tuple[Any, ...]] = []
    usage_rows: list[tuple[Any, ...]] = []
    for s in todo:
        at = to_iso(s.at_us)
        left = s.charge
        if left and s.user_id is not None:
            request_id = s.fields[0]
            user_lots = lots.get(s.user_id, ())
            if shared:  # never into what other requests hold
                free = sum(lot[2] for lot in user_lots if lot[0] > at)
                left = min(left, max(free - others.get(s.user_id, 0), 0))
            short = s.charge - left
            for lot in user_lots:
                if left == 0:
                    break
                if lot[0] <= at or lot[2] == 0:
                    continue
                take = min(lot[2], left)
                lot[2] -= take
                left -= take
                taken[lot[1]] += take
                spends.append((s.user_id, -take, lot[1], request_id, at))
            left += short
        f = s.fields
        if left:
            # Shared holds: where a cost above its hold is decided. In memory: the lots held
            # less than the worker thought (spent elsewhere meanwhile).
            log.warning(
                "credits written off",
                request_id=f[0],
                user_id=s.user_id,
                model=f[4],
                provider=f[5],
                usage_source=f[-1],
                owed_usd=format_usd(s.charge + s.waived),
                charged_usd=format_usd(s.charge - left),
                written_off_usd=format_usd(left),
                when="written",
            )
        usage_rows.append(
            (
                s.usage_id,
                *f[:17],  # request_id … estimated
                f[17],  # cost_pico
                s.charge - left,  # charged: what the lots really gave
                s.waived + left,  # written off: owed beyond what there was
                *f[18:],  # billable, first_byte_ms, total_ms, usage_source
                at,
            )
        )
    if taken:
        await tx.executemany(
            "UPDATE credit_lots SET remaining_pico = remaining_pico - ? WHERE id = ?",
            [(amount, lot_id) for lot_id, amount in taken.items()],
        )
        await tx.executemany(
            "INSERT INTO ledger (user_id, kind, amount_pico, lot_id, request_id, created_at) "
            "VALUES (?, 'spend', ?, ?, ?, ?)",
            spends,
        )
    if shared and payers:
        await holds.refresh_balances(tx, payers, max(s.at_us for s in todo))
    await tx.executemany(_INSERT_USAGE, usage_rows)


# -- usage records ------------------------------------------------------------------------------


class UsageQuery(msgspec.Struct, kw_only=True):
    user_id: str | None = None  # None: everyone's (operators only)
    start: str | None = None  # ISO, inclusive
    end: str | None = None  # ISO, exclusive
    model: str | None = None
    key_id: str | None = None
    after: tuple[str, str] | None = None  # (created_at, id) of the last row already seen
    limit: int = 100


def _filters(query: UsageQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, op, value in (
        ("user_id", "=", query.user_id),
        ("created_at", ">=", query.start),
        ("created_at", "<", query.end),
        ("model", "=", query.model),
        ("key_id", "=", query.key_id),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    return where, params


async def usage_rows(reader: Reader, query: UsageQuery) -> list[dict[str, Any]]:
    """Newest first; at most ``limit + 1`` rows (the extra one says there are more)."""
    where, params = _filters(query)
    if query.after is not None:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [query.after[0], query.after[0], query.after[1]]
    sql = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(query.limit + 1)
    rows = await reader.fetchall(sql, params)
    return [dict(zip(USAGE_COLUMNS, row, strict=True)) for row in rows]


class DailyUsage(msgspec.Struct, frozen=True):
    """One model's use on one UTC day."""

    day: str  # YYYY-MM-DD
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_pico: int
    charged_pico: int


async def daily_usage(reader: Reader, query: UsageQuery) -> list[DailyUsage]:
    """Sums per UTC day and model over the records ``query`` selects (``after`` and ``limit``
    are ignored), oldest day first. Times are fixed-width ISO text, so the day is a prefix."""
    where, params = _filters(query)
    sql = (
        "SELECT substr(created_at, 1, 10) AS day, model, COUNT(*), SUM(prompt_tokens), "
        "SUM(completion_tokens), SUM(cost_pico), SUM(charged_pico) FROM usage"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " GROUP BY day, model ORDER BY day, model"
    rows = await reader.fetchall(sql, params)
    return [DailyUsage(r[0], r[1], *(int(v) for v in r[2:])) for r in rows]


async def user_id_for_email(reader: Reader, email: str) -> str | None:
    """The id of the account with this e-mail address (deleted accounts don't count). The
    accounts plugin keeps addresses trimmed and in lower case."""
    row = await reader.fetchone(
        "SELECT id FROM users WHERE email = ? AND status != 'deleted'", (email.strip().lower(),)
    )
    return row[0] if row else None


async def email_of(reader: Reader, user_id: str) -> str | None:
    row = await reader.fetchone("SELECT email FROM users WHERE id = ?", (user_id,))
    return row[0] if row else None
