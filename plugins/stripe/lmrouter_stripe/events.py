"""What a verified Stripe event does. Each event is applied at most once: its id is recorded in
``stripe_events`` in the same transaction as its effect, and a paid session is credited through
``lmrouter_credits.service.add_purchase_in`` (unique on the session id), so a replayed event, the
same session under a new event id, and concurrent deliveries all credit once.

- ``checkout.session.completed`` with ``payment_status`` ``paid``, and
  ``checkout.session.async_payment_succeeded``: one credit lot of the session's credit (its
  metadata; never the fee), bought at the event's time, so it expires ``[credits]
  expire_after_days`` after the payment. Only for a session recorded at checkout here, with the
  same user, credit and total: any other is logged and answered 200 (``unknown_session``) so
  that Stripe stops sending it, and credits nothing. A completed session still ``unpaid`` (a
  bank debit) only records its PaymentIntent.
- ``charge.refunded``, ``charge.dispute.created``: purchases are final, so no credit is taken
  back; a ``refund`` or ``dispute`` row (amount 0) goes into the user's ledger history, and a
  dispute suspends the account (``suspend_on_dispute``). The charge is traced to its user
  through the session's PaymentIntent; one that arrives before its payment waits, ``unmatched``,
  and is applied when the payment is credited.
- Every other type: ignored (Stripe sends what the endpoint subscribes to).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from lmrouter_accounts import service as accounts
from lmrouter_credits import clock
from lmrouter_credits import service as credits
from lmrouter_stripe.checkout import CENT, META_CREDIT, META_USER, PICO_PER_CENT

if TYPE_CHECKING:
    from lmrouter import Store, Tx
    from lmrouter_stripe.config import StripeConfig

log = structlog.get_logger("lmrouter.stripe")


class EventData(msgspec.Struct):
    object: msgspec.Raw


class Event(msgspec.Struct):
    """The fields of a Stripe event that matter here (others are ignored)."""

    id: str
    type: str
    created: int
    data: EventData


class Session(msgspec.Struct):
    id: str
    payment_status: str | None = None
    payment_intent: str | None = None
    metadata: dict[str, str] = {}
    currency: str | None = None
    amount_total: int | None = None


class Charge(msgspec.Struct):
    id: str
    payment_intent: str | None = None
    amount_refunded: int = 0
    currency: str | None = None


class Dispute(msgspec.Struct):
    id: str
    charge: str | None = None
    payment_intent: str | None = None
    amount: int = 0
    reason: str | None = None


class BadEvent(ValueError):
    """A verified body that is not the event it says it is (answered 400)."""


def decode_event(body: bytes) -> Event:
    try:
        event = msgspec.json.decode(body, type=Event)
        clock.check_range(event.created * 1_000_000)
    except msgspec.DecodeError as exc:
        raise BadEvent(f"not a Stripe event: {exc}") from None
    except ValueError:
        raise BadEvent("`created` is not a time Stripe would send") from None
    return event


def _object(event: Event, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(event.data.object, type=kind)
    except msgspec.DecodeError as exc:
        raise BadEvent(f"`data.object` of {event.type} is malformed: {exc}") from None


def _usd_cents(cents: int) -> str:
    return str((Decimal(cents) * CENT).quantize(CENT))


class Processor:
    def __init__(self, store: Store, config: StripeConfig, expire_after_days: int) -> None:
        self.store = store
        self.config = config
        self.expire_after_days = expire_after_days
        self.handlers: dict[str, Callable[[Event], Awaitable[str]]] = {
            "checkout.session.completed": self.session,
            "checkout.session.async_payment_succeeded": self.session,
            "charge.refunded": self.charge_refunded,
            "charge.dispute.created": self.dispute_created,
        }

    async def process(self, event: Event) -> str:
        """Apply ``event``; the outcome, for the response and the log."""
        handler = self.handlers.get(event.type)
        if handler is None:
            return "ignored"
        return await handler(event)

    async def _once(
        self,
        event: Event,
        object_id: str,
        payment_intent: str | None,
        work: Callable[[Tx], Awaitable[str]],
    ) -> str:
        """Run ``work`` and record the event in one transaction, unless it was recorded."""
        async with credits.transaction(self.store) as tx:
            row = await tx.fetchone(
                "INSERT INTO stripe_events (id, type, object_id, payment_intent, outcome, "
                "created_at, received_at) VALUES (?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                (
                    event.id,
                    event.type,
                    object_id,
                    payment_intent,
                    clock.to_iso(event.created * 1_000_000),
                    clock.to_iso(clock.now_us()),
                ),
            )
            if row is None:
                return "duplicate"
            outcome = await work(tx)
            await tx.execute(
                "UPDATE stripe_events SET outcome = ? WHERE id = ?", (outcome, event.id)
            )
        return outcome

    # -- payments -----------------------------------------------------------------------------

    async def session(self, event: Event) -> str:
        """Completed or cleared: credited once paid; unpaid (a bank debit) waits for
        ``async_payment_succeeded``; anything else (no payment required) is not a top-up."""
        session = _object(event, Session)
        if session.payment_status == "paid":
            return await self._credit(event, session)
        unpaid = session.payment_status == "unpaid"
        work = functools.partial(self._awaiting, session=session) if unpaid else _outcome("ignored")
        return await self._once(event, session.id, session.payment_intent, work)

    async def _awaiting(self, tx: Tx, session: Session) -> str:
        await tx.execute(
            "UPDATE stripe_sessions SET payment_intent = COALESCE(?, payment_intent) WHERE id = ?",
            (session.payment_intent, session.id),
        )
        return "awaiting_payment"

    async def _credit(self, event: Event, session: Session) -> str:
        purchase = self._purchase(session)
        if purchase is None:
            return await self._once(event, session.id, session.payment_intent, _outcome("ignored"))
        user_id, credit_cents = purchase
        disputed: list[str] = []

        async def work(tx: Tx) -> str:
            if await tx.fetchone("SELECT 1 FROM users WHERE id = ?", (user_id,)) is None:
                # e.g. a staging install sharing the Stripe account: its users are not ours
                log.error("a top-up for an unknown user; not credited", session=session.id)
                return "unknown_user"
            # Only a session this router made at checkout, for this user and this amount: a
            # signed event is Stripe's word that a session was paid, not that its metadata
            # (which anyone with the Stripe account can write) names the right user or sum.
            made = await tx.fetchone(
                "SELECT user_id, credit_pico, amount_total_cents FROM stripe_sessions WHERE id = ?",
                (session.id,),
            )
            expected = (user_id, credit_cents * PICO_PER_CENT, session.amount_total or 0)
            if made is None or tuple(made) != expected:
                log.error(
                    "a paid session this router did not make (or not for this user and amount); "
                    "not credited",
                    session=session.id,
                    user=user_id,
                    recorded=made is not None,
                )
                return "unknown_session"
            paid_us = event.created * 1_000_000
            lot, created = await credits.add_purchase_in(
                tx,
                user_id,
                credit_cents * PICO_PER_CENT,
                session.id,
                datetime.fromtimestamp(event.created, UTC),
                expire_after_days=self.expire_after_days,
                note=f"Stripe Checkout {session.id}",
            )
            await tx.execute(
                "INSERT INTO stripe_sessions (id, user_id, credit_pico, fee_cents, "
                "amount_total_cents, payment_intent, lot_id, created_at, paid_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                # the row's own columns named with the table: bare, PostgreSQL finds them
                # ambiguous with excluded's
                "payment_intent = COALESCE(excluded.payment_intent, "
                "stripe_sessions.payment_intent), lot_id = excluded.lot_id, "
                "paid_at = COALESCE(stripe_sessions.paid_at, excluded.paid_at)",
                (
                    session.id,
                    user_id,
                    credit_cents * PICO_PER_CENT,
                    (session.amount_total or 0) - credit_cents,
                    session.amount_total or 0,
                    session.payment_intent,
                    lot.id,
                    clock.to_iso(paid_us),
                    clock.to_iso(paid_us),
                ),
            )
            if not created:
                return "already_credited"
            if session.payment_intent:
                disputed.extend(await self._apply_waiting(tx, session.payment_intent))
            return "credited"

        outcome = await self._once(event, session.id, session.payment_intent, work)
        if outcome == "credited":
            log.info("credits bought", session=session.id, user=user_id, cents=credit_cents)
        if disputed and self.config.suspend_on_dispute:
            await self._suspend(user_id, disputed[0])
        return outcome

    def _purchase(self, session: Session) -> tuple[str, int] | None:
        """(user id, credit in cents) from a session made here, or None for a session that is
        not ours (another product on the same Stripe account) or does not add up."""
        user_id = session.metadata.get(META_USER)
        credit_text = session.metadata.get(META_CREDIT)
        if not user_id or not credit_text:
            log.info("a checkout session that is not a top-up; ignored", session=session.id)
            return None
        try:
            credit = Decimal(credit_text).scaleb(2)
        except ArithmeticError:  # not a number, or beyond Decimal's range
            credit = Decimal(0)
        whole = credit.is_finite() and credit.adjusted() < 15 and credit == int(credit)
        cents = int(credit) if whole else 0
        # the credit must be whole cents, in USD, and no more than was paid (a Stripe coupon on
        # a top-up would make it more than the payment: refused rather than credited in full)
        if cents <= 0 or session.currency != "usd" or (session.amount_total or 0) < cents:
            log.error(
                "a top-up session does not add up; not credited",
                session=session.id,
                credit=credit_text,
                currency=session.currency,
                amount_total=session.amount_total,
            )
            return None
        return user_id, cents

    # -- after the payment: refunds and disputes are history, purchases stay final ------------

    async def charge_refunded(self, event: Event) -> str:
        charge = _object(event, Charge)
        note = (
            f"Stripe refunded {_usd_cents(charge.amount_refunded)} USD of charge {charge.id}; "
            "purchases are final, the credits stay"
        )
        return await self._history(event, charge.id, charge.payment_intent, "refund", note)

    async def dispute_created(self, event: Event) -> str:
        dispute = _object(event, Dispute)
        note = (
            f"Stripe dispute {dispute.id} ({dispute.reason or 'no reason given'}) of "
            f"{_usd_cents(dispute.amount)} USD on charge {dispute.charge}"
        )
        pi = dispute.payment_intent
        found = await self._session_of(self.store, pi)
        processed = await self.store.fetchone(
            "SELECT 1 FROM stripe_events WHERE id = ?", (event.id,)
        )
        # Suspend before recording: a crash in between is retried by Stripe and suspends again
        # (a no-op); a replay after an operator resumed the user finds the record and does not.
        if found is not None and processed is None and self.config.suspend_on_dispute:
            await self._suspend(found[0], dispute.id)
        return await self._history(event, dispute.id, pi, "dispute", note)

    async def _history(
        self, event: Event, object_id: str, pi: str | None, kind: str, note: str
    ) -> str:
        async def work(tx: Tx) -> str:
            found = await self._session_of(tx, pi)
            if found is None:
                return "unmatched" if pi else "ignored"
            user_id, lot_id = found
            await credits.note_in(tx, user_id, kind, note, lot_id=lot_id)
            return "recorded"

        outcome = await self._once(event, object_id, pi, work)
        log.warning("stripe " + kind, object=object_id, payment_intent=pi, outcome=outcome)
        return outcome

    async def _session_of(self, reader: Any, pi: str | None) -> tuple[str, int | None] | None:
        """(user id, lot id) of the paid session behind a PaymentIntent."""
        if not pi:
            return None
        row = await reader.fetchone(
            "SELECT user_id, lot_id FROM stripe_sessions "
            "WHERE payment_intent = ? AND lot_id IS NOT NULL",
            (pi,),
        )
        return (row[0], row[1]) if row else None

    async def _apply_waiting(self, tx: Tx, pi: str) -> list[str]:
        """Refunds and disputes of ``pi`` that arrived before its payment was credited: their
        history rows now. Returns the ids of the disputes among them."""
        rows = await tx.fetchall(
            "SELECT id, type, object_id FROM stripe_events "
            "WHERE payment_intent = ? AND outcome = 'unmatched' ORDER BY received_at, id",
            (pi,),
        )
        found = await self._session_of(tx, pi)
        if not rows or found is None:
            return []
        user_id, lot_id = found
        disputes = []
        for event_id, kind, object_id in rows:
            is_dispute = kind == "charge.dispute.created"
            note = f"Stripe {'dispute' if is_dispute else 'refund'} {object_id} (before payment)"
            await credits.note_in(
                tx, user_id, "dispute" if is_dispute else "refund", note, lot_id=lot_id
            )
            await tx.execute(
                "UPDATE stripe_events SET outcome = 'recorded' WHERE id = ?", (event_id,)
            )
            if is_dispute:
                disputes.append(object_id)
        return disputes

    async def _suspend(self, user_id: str, dispute_id: str) -> None:
        try:
            if await accounts.suspend_user(self.store, user_id):
                log.warning("account suspended after a dispute", user=user_id, dispute=dispute_id)
        except accounts.AccountsError as exc:  # a deleted user: nothing to suspend
            log.warning("dispute on an account that is gone", user=user_id, error=str(exc))


def _outcome(value: str) -> Callable[[Tx], Awaitable[str]]:
    async def work(tx: Tx) -> str:
        return value

    return work
