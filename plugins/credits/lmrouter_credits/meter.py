"""The money path of every request, in one worker: hold the worst case at admission, settle the
real cost when the request ends, write both later in batches.

Nothing here awaits between reading a balance and reserving from it, and nothing on the request
path waits for the database: a user's wallet is read once (the first request of that user
waits for it), then kept in memory and kept right by replaying this worker's own unwritten
charges over every reload. Other processes (the CLI, a second server) announce their changes by
bumping ``credits_state.revision``, which :meth:`Meter._poll` watches.

Every read that must agree with the in-memory state runs inside the batch writer's transaction,
after the writes queued before it: that is the only place where "what the database holds" and
"what this worker has not written yet" can be told apart exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from lmrouter import TRANSIENT, BatchWriter, RouterError, Usage, format_usd, held_usage
from lmrouter_credits import holds, ledger, service
from lmrouter_credits.clock import now_us
from lmrouter_credits.ledger import Settlement
from lmrouter_credits.wallet import Fee, Wallet

if TYPE_CHECKING:
    from lmrouter import Outcome, RequestContext, Store, Tx
    from lmrouter_credits.config import CreditsConfig

log = structlog.get_logger("lmrouter.credits")

HOLD = "credits.hold"  # ctx.state key: the pico-USD this request holds
HOLD_ID = "credits.hold_id"  # ctx.state key: its shared hold's id (server database)
ADMIT_TIMEOUT = 5.0  # seconds an admission waits for the database before answering 503
POLL_INTERVAL = 0.5  # seconds between looks at credits_state.revision
READ_TIMEOUT = 5.0  # seconds a consistent read waits for the writer before reading directly
# A wallet unused this long is dropped from memory (the next request reads it again), so memory
# follows the users active lately, not every user since start.
WALLET_IDLE = 600.0

T = TypeVar("T")


class Meter:
    def __init__(self, store: Store, settings: CreditsConfig) -> None:
        self.store = store
        self.settings = settings
        self.fee = Fee(settings.byok_fee_percent)
        self.default_output = settings.default_max_output_tokens
        self.wallets: dict[str, Wallet] = {}
        self.holds = 0  # requests in flight holding credits, all users
        self.writer = BatchWriter(store, interval=settings.flush_interval)
        self.seen_revision = 0
        self._loading: dict[str, asyncio.Future[Wallet]] = {}
        self._pending: list[Settlement] = []
        self._queued = False  # a _Flush is in the writer's queue and has not started
        self._usage_ids = itertools.count(1)
        self._charge_seq = itertools.count(1)
        self._id_prefix = os.urandom(6).hex()  # usage ids are unique across processes
        self._poller: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # On a store several processes share, the holds live in the database (holds.py), not
        # in wallets: each admission is one conditional update there.
        self.shared = store.multiprocess
        self.owner = holds.owner_id()
        self.lease_us = int(settings.hold_lease_seconds * 1_000_000)
        self._hold_ids = itertools.count(1)
        _track(self)

    async def start(self) -> None:
        self.seen_revision = await ledger.revision(self.store)
        if self.shared:  # holds left by this host's processes that are gone (a restart)
            gone = holds.gone_on_this_host(await holds.owners(self.store), self.owner)
            if gone:
                async with self.store.transaction() as tx:
                    released = await holds.reclaim(tx, now_us(), gone)
                log.info("credit holds of stopped processes released", holds=released)
        self.writer.start()
        poll = self._keep_holds() if self.shared else self._poll()
        self._poller = asyncio.create_task(poll, name="lmrouter-credits-poll")
        self._unsubscribe = service.subscribe(self.reload)  # a purchase made in this process

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.writer.stop()
        if self.shared:  # requests cut off by the stop: nothing of theirs stays reserved
            try:
                async with self.store.transaction() as tx:
                    await holds.reclaim(tx, 0, [self.owner])
            except TRANSIENT:  # the database is away: the lease releases them
                log.warning("cannot release this process's credit holds", exc_info=True)

    # -- admission ----------------------------------------------------------------------------

    def admit(self, ctx: RequestContext) -> Awaitable[None] | None:
        """Hold the request's worst-case cost, or refuse it with 402. Synchronous (no awaitable
        returned) once the caller's wallet is in memory, which is every request but a user's
        first."""
        principal = ctx.principal
        if principal.kind != "user" or principal.user_id is None:
            return None  # operators and anonymous BYOK callers spend no credits
        if self.shared:
            return self._admit_shared(ctx, principal.user_id)
        wallet = self.wallets.get(principal.user_id)
        if wallet is None:
            return self._admit_after_load(ctx, principal.user_id)
        self._hold(ctx, wallet)
        return None

    async def _admit_after_load(self, ctx: RequestContext, user_id: str) -> None:
        try:
            wallet = await self.wallet(user_id)
        except Exception:
            log.exception("reading a balance failed", user_id=user_id)
            raise _unavailable() from None
        self._hold(ctx, wallet)

    def _hold(self, ctx: RequestContext, wallet: Wallet) -> None:
        hold = self._worst_case_held(ctx)
        available = wallet.available(now_us())
        if available < hold:
            raise _insufficient(hold, available)
        wallet.held += hold
        wallet.holds += 1
        self.holds += 1
        ctx.state[HOLD] = hold

    def _worst_case_held(self, ctx: RequestContext) -> int:
        if ctx.output_limit is None:
            # Neither request nor model limits the output: the default held is the limit the
            # router then sends upstream, so the provider cannot produce more than was held.
            ctx.output_limit = self.default_output
        return self.worst_case(ctx)

    async def _admit_shared(self, ctx: RequestContext, user_id: str) -> None:
        """The hold in the database, shared by every process. Fails closed: a database that
        does not answer within ``ADMIT_TIMEOUT`` refuses the request with 503."""
        hold = self._worst_case_held(ctx)
        hold_id = f"{self._id_prefix}h{next(self._hold_ids):010d}"
        # Not cancelled with the request (a client that leaves mid-admission): a hold written
        # after all is then released, never left to its lease.
        task = asyncio.ensure_future(self._reserve(hold_id, user_id, hold))
        try:
            async with asyncio.timeout(ADMIT_TIMEOUT):
                available = await asyncio.shield(task)
        except BaseException as exc:
            task.add_done_callback(lambda done: self._abandon(done, hold_id))
            if isinstance(exc, Exception):
                log.warning("cannot hold credits: the database does not answer", exc_info=True)
                raise _unavailable() from None
            raise
        if available is not None:
            raise _insufficient(hold, available)
        ctx.state[HOLD] = hold
        ctx.state[HOLD_ID] = hold_id
        self.holds += 1

    async def _reserve(self, hold_id: str, user_id: str, hold: int) -> int | None:
        """None once held; else what is available. The first try is one statement; when the
        user's row refuses (or is missing, or a lot expired since it was computed) the row is
        computed again from the lots and holds, and the admission tried once more."""
        now = now_us()
        if await holds.admit(self.store, hold_id, user_id, hold, self.owner, now, self.lease_us):
            return None
        async with self.store.transaction() as tx:
            available = await holds.refresh(tx, user_id, now)
            if available >= hold and await holds.admit(
                tx, hold_id, user_id, hold, self.owner, now, self.lease_us
            ):
                return None
        return available

    def _abandon(self, task: asyncio.Future[int | None], hold_id: str) -> None:
        """An admission given up on (timeout, cancellation) that held after all: release."""
        if task.cancelled() or task.exception() is not None or task.result() is not None:
            return

        async def release(tx: Tx) -> None:
            await holds.release(tx, [hold_id])

        self.writer.add(release)

    def worst_case(self, ctx: RequestContext) -> int:
        """The most this request can cost on any of its routes: the prompt estimate plus every
        output token it may generate (the output limit sent upstream, times ``n``). With ``n >
        1`` the prompt counts ``n`` times: a provider without choices is sent it once per answer
        (the Anthropic plugin's fan-out). Routes the caller pays directly (BYOK) cost the fee."""
        output = ctx.max_output_tokens or self.default_output * ctx.n
        usage = held_usage(ctx.prompt_chars * ctx.n, output)
        byok = ctx.principal.byok_providers or ()
        worst = 0
        for route in ctx.model.routes:
            cost = route.rates.cost(usage)
            if route.provider in byok:
                cost = self.fee.of(cost)
            worst = max(worst, cost)
        return worst

    # -- settlement -----------------------------------------------------------------------------

    def end(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Release the hold, charge what the request really cost (at most what the user has:
        the rest is written off and recorded), and queue the charge and the usage record."""
        principal = ctx.principal
        hold = ctx.state.pop(HOLD, None)
        at = now_us()
        user_id = principal.user_id if principal.kind == "user" else None
        charge = waived = seq = 0
        wallet = None
        hold_id = ctx.state.pop(HOLD_ID, None)
        if self.shared:
            if hold_id is not None:
                self.holds -= 1
            if user_id is not None and outcome.status != "refused":
                cost = outcome.cost_pico
                # capped by the write, against the lots and the other holds then
                charge = cost if ctx.billable else self.fee.of(cost)
        elif user_id is not None:
            wallet = self.wallets.get(user_id)
            if wallet is not None:
                wallet.last_used = at
            if hold is not None and wallet is not None:
                wallet.held -= hold
                wallet.holds -= 1
                self.holds -= 1
            if outcome.status != "refused":
                cost = outcome.cost_pico
                owed = cost if ctx.billable else self.fee.of(cost)
                if wallet is None:
                    charge = owed  # not admitted by us (no wallet here): the lots decide
                else:
                    charge = min(owed, max(wallet.available(at), 0))
                    waived = owed - charge
                    if waived:
                        _written_off(ctx, outcome, owed, charge, waived)
                    if charge:
                        wallet.draw(charge, at)
                        seq = next(self._charge_seq)
                        wallet.unflushed[seq] = (charge, at)
        usage = outcome.usage or _NO_USAGE
        route = outcome.route
        fields = (
            ctx.request_id,
            user_id,
            principal.key_id,
            principal.id,
            ctx.model.id,
            route.provider if route else None,
            route.model if route else None,
            ctx.dialect,
            len(ctx.attempts),
            outcome.status,
            outcome.http_status,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            int(usage.estimated),
            outcome.cost_pico,
            int(ctx.billable),
            outcome.first_byte_ms,
            outcome.total_ms,
            outcome.usage_source,
        )
        usage_id = f"{self._id_prefix}{next(self._usage_ids):010d}"
        self._pending.append(
            Settlement(usage_id, user_id, charge, waived, at, fields, wallet, seq, hold_id)
        )
        if not self._queued:
            self._queued = True
            self.writer.add(_Flush(self))

    # -- wallets --------------------------------------------------------------------------------

    async def wallet(self, user_id: str) -> Wallet:
        """The user's wallet, read from the database on first use. Concurrent first requests
        share one read (a per-user future), so a balance is never loaded twice."""
        wallet = self.wallets.get(user_id)
        if wallet is not None:
            return wallet
        loading = self._loading.get(user_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(user_id))
            self._loading[user_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(user_id, None))
        # shielded: a caller that goes away must not cancel the read the others wait for
        return await asyncio.shield(loading)

    async def _load(self, user_id: str) -> Wallet:
        revision = await ledger.revision(self.store)  # before the lots: a later change reloads
        found = await ledger.live_lots(self.store, [user_id])
        wallet = self.wallets.get(user_id)
        if wallet is None:
            wallet = self.wallets[user_id] = Wallet(found.get(user_id, []), now_us())
        if revision != self.seen_revision:  # changed meanwhile: reload what we hold
            self.reload()
        return wallet

    def reload(self) -> None:
        """Re-read the cached wallets soon (after the writes queued so far)."""
        self.writer.add(self._reload)

    async def _reload(self, tx: Tx) -> None:
        """Re-read every cached wallet's lots, inside the writer's transaction: the database
        then holds exactly the charges already taken out of ``unflushed``, and the ones still in
        it are replayed. Holds are untouched."""
        revision = await ledger.revision(tx)
        users = list(self.wallets)
        found = await ledger.live_lots(tx, users)
        now = now_us()
        for user_id in users:
            self.wallets[user_id].reset(found.get(user_id, []), now)
        self.seen_revision = max(self.seen_revision, revision)
        log.debug("credits reloaded", wallets=len(users), revision=revision)

    def evict_idle(self, now: int, idle: float = WALLET_IDLE) -> int:
        """Forget wallets unused for ``idle`` seconds; returns how many. Only when every charge
        taken so far is in the database (nothing queued here or in the writer, nothing being
        written): then a wallet read afresh holds exactly what the evicted one did. A wallet
        with a hold is in use, however old its last settlement."""
        if self._pending or not self.writer.idle:
            return 0
        cutoff = now - int(idle * 1_000_000)
        idle_users = [
            user_id
            for user_id, wallet in self.wallets.items()
            if wallet.last_used < cutoff and not wallet.holds and not wallet.unflushed
        ]
        for user_id in idle_users:
            del self.wallets[user_id]
        return len(idle_users)

    async def _poll(self) -> None:
        sweeps = int(WALLET_IDLE / 10 / POLL_INTERVAL)  # look for idle wallets 10 times an idle
        for polls in itertools.count(1):
            await asyncio.sleep(POLL_INTERVAL)
            if polls % sweeps == 0:
                self.evict_idle(now_us())
            try:
                current = await ledger.revision(self.store)
            except Exception:
                log.warning("cannot read credits_state; will try again", exc_info=True)
                continue
            if current != self.seen_revision:
                self.seen_revision = current
                self.reload()

    async def _keep_holds(self) -> None:
        """Shared holds: renew this process's leases and release expired ones (of processes
        that died, on any host), three times a lease."""
        while True:
            await asyncio.sleep(self.lease_us / 3_000_000)
            now = now_us()
            try:
                async with self.store.transaction() as tx:
                    await holds.renew(tx, self.owner, now + self.lease_us)
                    released = await holds.reclaim(tx, now)
            except Exception:
                log.warning("cannot renew credit holds; will try again", exc_info=True)
                continue
            if released:
                log.warning("expired credit holds released", holds=released)

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run a read after every write this worker has queued, in the writer's transaction, so
        that a client sees its own requests' charges and usage at once."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def operation(tx: Tx) -> None:
            if future.done():  # a batch run again
                return
            try:
                result = await fn(tx)
            except TRANSIENT:
                raise
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self.writer.add(operation)
        try:
            return await asyncio.wait_for(asyncio.shield(future), READ_TIMEOUT)
        except TimeoutError:  # the writer is stuck (disk full?): answer from what is written
            return await fn(self.store)


_NO_USAGE = Usage()


def _insufficient(hold: int, available: int) -> RouterError:
    return RouterError(
        402,
        f"Insufficient credits: this request may cost up to {format_usd(hold)} USD and "
        f"{format_usd(max(available, 0))} USD is available. Add credits, or lower "
        "max_tokens to hold less.",
        code="insufficient_credits",
    )


def _unavailable() -> RouterError:
    return RouterError(
        503, "The router cannot read balances right now; try again.", code="unavailable"
    )


def _written_off(
    ctx: RequestContext, outcome: Outcome, owed: int, charge: int, waived: int
) -> None:
    """A request cost more than its user had: the rest is lost. Holds make this rare (a price
    change, a provider that ignored the output limit), so each one is an event operators see:
    this log line, ``outcome.written_off_pico`` for the metrics plugin, the usage record's
    ``written_off_pico``."""
    outcome.written_off_pico = waived
    route = outcome.route
    log.warning(
        "credits written off",
        request_id=ctx.request_id,
        user_id=ctx.principal.user_id,
        model=ctx.model.id,
        provider=route.provider if route else None,
        usage_source=outcome.usage_source,
        owed_usd=format_usd(owed),
        charged_usd=format_usd(charge),
        written_off_usd=format_usd(waived),
    )


class _Flush:
    """One writer operation for every settlement queued since the last one started. A batch
    that is run again (a transient failure) writes the same settlements again."""

    __slots__ = ("items", "meter")

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.items: list[Settlement] | None = None

    async def __call__(self, tx: Tx) -> None:
        first_run = self.items is None
        if self.items is None:
            meter = self.meter
            self.items, meter._pending = meter._pending, []
            meter._queued = False
            for item in self.items:
                if item.seq:
                    item.wallet.unflushed.pop(item.seq, None)
        await _write(tx, self.items, rerun=not first_run, shared=self.meter.shared)


async def _write(tx: Tx, items: list[Settlement], rerun: bool, shared: bool) -> None:
    """All settlements at once; if that fails for a reason that will not pass (a constraint),
    each on its own, so one bad record costs only itself."""
    await tx.execute("SAVEPOINT credits_batch")
    try:
        await ledger.write_settlements(tx, items, rerun=rerun, shared=shared)
    except TRANSIENT:
        raise
    except Exception:
        await tx.execute("ROLLBACK TO SAVEPOINT credits_batch")
        for item in items:
            await tx.execute("SAVEPOINT credits_one")
            try:
                await ledger.write_settlements(tx, [item], rerun=rerun, shared=shared)
            except TRANSIENT:
                raise
            except Exception:
                await tx.execute("ROLLBACK TO SAVEPOINT credits_one")
                log.exception(
                    "usage record could not be written and was dropped",
                    usage_id=item.usage_id,
                    request_id=item.fields[0],
                    user_id=item.user_id,
                    charge_pico=item.charge,
                )
            await tx.execute("RELEASE SAVEPOINT credits_one")
    await tx.execute("RELEASE SAVEPOINT credits_batch")


# -- metrics: the number of holds in flight, read when scraped (nothing on the request path) ---

_meters: weakref.WeakSet[Meter] = weakref.WeakSet()
_gauge: Any = None


def _track(meter: Meter) -> None:
    global _gauge
    _meters.add(meter)
    if _gauge is not None:
        return
    try:
        from prometheus_client import Gauge
    except ImportError:
        return
    try:
        _gauge = Gauge(
            "lmrouter_credit_holds_outstanding",
            "Requests in flight that hold credits (their worst-case cost is reserved).",
        )
    except ValueError:  # registered already by another copy of this module
        return
    _gauge.set_function(lambda: sum(m.holds for m in list(_meters)))
