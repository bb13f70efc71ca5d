"""Credits for code outside the request path: the CLI, the HTTP endpoints, and other plugins
(the Stripe plugin calls :func:`add_purchase` when a Checkout Session is paid).

Every change runs in one transaction with its ledger rows and bumps ``credits_state.revision``,
which running servers poll (every 0.5 s) to reload the balances they keep in memory, so a grant
made with the CLI is spendable at once without a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from lmrouter import format_usd
from lmrouter_credits import clock, ledger
from lmrouter_credits.ledger import (
    DailyUsage,
    Expired,
    Lot,
    Reader,
    UsageQuery,
    daily_usage,
    usage_rows,
)

if TYPE_CHECKING:
    from lmrouter import Store, Tx

__all__ = [
    "DailyUsage",
    "Expired",
    "Lot",
    "UsageQuery",
    "add_purchase",
    "add_purchase_in",
    "balance",
    "balances",
    "daily_usage",
    "grant",
    "lot_json",
    "lots",
    "note_in",
    "subscribe",
    "summary",
    "sweep",
    "transaction",
    "usage_rows",
    "user_id_for_email",
]

DEFAULT_EXPIRE_AFTER_DAYS = 365

_subscribers: list[Callable[[], None]] = []


def subscribe(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after every committed change to lots made in this process (a server
    reloads its balances at once instead of at its next poll). Returns the unsubscriber."""
    _subscribers.append(callback)
    return lambda: _subscribers.remove(callback)


def _notify() -> None:
    for callback in _subscribers:
        callback()


def _us(when: datetime | None) -> int:
    return clock.now_us() if when is None else clock.check_range(clock.from_datetime(when))


async def grant(
    store: Store,
    user_id: str,
    amount_pico: int,
    *,
    note: str | None = None,
    purchased_at: datetime | None = None,
    expire_after_days: int = DEFAULT_EXPIRE_AFTER_DAYS,
) -> Lot:
    """Give a user credits: a lot of ``amount_pico`` expiring ``expire_after_days`` after
    ``purchased_at`` (default: now)."""
    async with store.transaction() as tx:
        lot, _ = await ledger.add_lot(
            tx,
            user_id,
            "grant",
            amount_pico,
            purchased_us=_us(purchased_at),
            expire_after_days=expire_after_days,
            now_us=clock.now_us(),
            note=note,
        )
    _notify()
    return lot


@contextlib.asynccontextmanager
async def transaction(store: Store) -> AsyncIterator[Tx]:
    """One transaction for changes to credits (the ``*_in`` functions) together with a plugin's
    own writes, so that a crash applies both or neither; running servers hear of a change to
    lots once it commits (not of a transaction that changed none, e.g. a replayed webhook)."""
    async with store.transaction() as tx:
        before = await ledger.revision(tx)
        yield tx
        changed = await ledger.revision(tx) != before
    if changed:
        _notify()


async def add_purchase(
    store: Store,
    user_id: str,
    amount_pico: int,
    source_ref: str,
    purchased_at: datetime,
    *,
    expire_after_days: int = DEFAULT_EXPIRE_AFTER_DAYS,
    note: str | None = None,
) -> tuple[Lot, bool]:
    """Credit a paid purchase, once: ``source_ref`` (the Stripe Checkout Session id) is unique,
    so a replayed webhook returns the lot it created the first time, with ``False``."""
    async with transaction(store) as tx:
        return await add_purchase_in(
            tx,
            user_id,
            amount_pico,
            source_ref,
            purchased_at,
            expire_after_days=expire_after_days,
            note=note,
        )


async def add_purchase_in(
    tx: Tx,
    user_id: str,
    amount_pico: int,
    source_ref: str,
    purchased_at: datetime,
    *,
    expire_after_days: int = DEFAULT_EXPIRE_AFTER_DAYS,
    note: str | None = None,
) -> tuple[Lot, bool]:
    """:func:`add_purchase` inside a :func:`transaction`."""
    if not source_ref:
        raise ValueError("a purchase needs its source_ref (e.g. the Checkout Session id)")
    return await ledger.add_lot(
        tx,
        user_id,
        "purchase",
        amount_pico,
        purchased_us=_us(purchased_at),
        expire_after_days=expire_after_days,
        now_us=clock.now_us(),
        source_ref=source_ref,
        note=note,
    )


async def note_in(tx: Tx, user_id: str, kind: str, note: str, *, lot_id: int | None) -> None:
    """Record in a user's ledger history, inside a :func:`transaction`, what happened to a
    purchase outside the router: ``kind`` ``refund`` or ``dispute``. The row moves no money
    (purchases are final), so the ledger still sums to the lots."""
    await ledger.add_note(tx, user_id, kind, note, lot_id=lot_id, now_us=clock.now_us())


async def balance(reader: Reader, user_id: str, *, at: datetime | None = None) -> int:
    """pico-USD the user can spend: the remainder of their lots unexpired at ``at`` (now)."""
    return await ledger.balance(reader, user_id, _us(at))


async def balances(reader: Reader, user_ids: list[str]) -> dict[str, int]:
    """:func:`balance` of several users at once (users without credits are left out)."""
    return await ledger.balances(reader, user_ids, clock.now_us())


async def lots(reader: Reader, user_id: str) -> list[Lot]:
    return await ledger.lots_of(reader, user_id)


async def sweep(store: Store, *, as_of: datetime | None = None) -> list[Expired]:
    """Expire lots whose expiry is at or before ``as_of`` (default: now)."""
    async with store.transaction() as tx:
        expired = await ledger.expire(tx, _us(as_of), clock.now_us())
    if expired:
        _notify()
    return expired


async def user_id_for_email(reader: Reader, email: str) -> str | None:
    return await ledger.user_id_for_email(reader, email)


def lot_json(lot: Lot, now_us: int) -> dict[str, Any]:
    """A lot as the API and ``credits show --json`` print it: amounts as exact decimal strings."""
    return {
        "id": lot.id,
        "source": lot.source,
        "source_ref": lot.source_ref,
        "note": lot.note,
        "amount_usd": format_usd(lot.amount_pico),
        "remaining_usd": format_usd(lot.remaining_pico),
        "purchased_at": lot.purchased_at,
        "expires_at": lot.expires_at,
        "expired": clock.from_iso(lot.expires_at) <= now_us,
    }


class Summary(msgspec.Struct):
    balance_pico: int
    lots: list[Lot]
    at_us: int

    def to_json(self) -> dict[str, Any]:
        return {
            "balance_usd": format_usd(self.balance_pico),
            "lots": [lot_json(lot, self.at_us) for lot in self.lots],
        }


async def summary(reader: Reader, user_id: str) -> Summary:
    """Balance and lots read together (from one transaction when ``reader`` is one)."""
    now = clock.now_us()
    found = await ledger.lots_of(reader, user_id)
    total = sum(lot.remaining_pico for lot in found if clock.from_iso(lot.expires_at) > now)
    return Summary(total, found, now)
