"""Credit holds shared by several processes on one PostgreSQL database (lmrouter_credits.holds):
each meter here stands for one router process (its own pool and owner id). Exactness across
them, owners and leases, reclaiming, a database outage, and the ledger's invariants under
concurrent holds (Hypothesis)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrouter.errors import RouterError
from lmrouter.storage import StorageError
from lmrouter.usage import Usage
from lmrouter_credits import holds, service
from lmrouter_credits.clock import now_us
from lmrouter_credits.meter import HOLD, HOLD_ID, Meter
from lmrouter_postgres import PostgresStore

TOKEN = 2 * 10**6  # pico-USD per output token at the kit's price


@contextlib.asynccontextmanager
async def process(kit: Any, **settings: Any) -> AsyncIterator[Meter]:
    """Another router process: its own connections and owner id, on the same database."""
    store = kit.make_store(Path("unused"))
    await store.open()
    try:
        yield kit.meter(store, **settings)
    finally:
        await store.close()


def request(kit: Any, user: str, tokens: int) -> Any:
    return kit.ctx(kit.model(), kit.principal(user), max_output_tokens=tokens, prompt_chars=0)


async def admitted(meter: Meter, ctx: Any) -> None:
    pending = meter.admit(ctx)
    assert pending is not None, "a shared hold is decided by the database"
    await pending


async def state(store: Any, user: str) -> tuple[int, int, int]:
    """(balance on the row, held on the row, sum of the hold rows)."""
    row = await store.fetchone(
        "SELECT balance_pico, held_pico FROM credit_accounts WHERE user_id = ?", (user,)
    )
    held = await store.fetchone(
        "SELECT COALESCE(SUM(amount_pico), 0) FROM credit_holds WHERE user_id = ?", (user,)
    )
    if row is None:  # nothing admitted yet: the lots say
        return await service.balance(store, user), 0, int(held[0])
    return int(row[0]), int(row[1]), int(held[0])


def test_concurrent_admissions_over_two_processes_hold_exactly_the_balance(
    tmp_path: Path, pg: Any
) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one, process(pg) as two:
            frank = await pg.user(store, "frank@example.com")
            await service.grant(store, frank, 10 * 10 * TOKEN)  # exactly 10 holds of 10 tokens
            ctxs = [request(pg, frank, 10) for _ in range(30)]
            results = await asyncio.gather(
                *(admitted((one, two)[i % 2], c) for i, c in enumerate(ctxs)),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, RouterError)]
            assert len(refused) == 20 and {r.status for r in refused} == {402}
            assert await state(store, frank) == (100 * TOKEN, 100 * TOKEN, 100 * TOKEN)
            owners = {o for (o,) in await store.fetchall("SELECT owner FROM credit_holds")}
            assert owners == {one.owner, two.owner}
            for i, ctx in enumerate(ctxs):  # each used all it held
                meter = (one, two)[i % 2]
                meter.end(ctx, pg.outcome(ctx, Usage(completion_tokens=10)))
            await one.writer.flush()
            await two.writer.flush()
            assert await state(store, frank) == (0, 0, 0)
            assert await pg.sums(store) == {frank: (0, 0)}

    asyncio.run(go())


def test_a_charge_above_its_hold_never_takes_another_processs_hold(tmp_path: Path, pg: Any) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one, process(pg) as two:
            erin = await pg.user(store, "erin@example.com")
            await service.grant(store, erin, 100 * TOKEN)
            other = request(pg, erin, 60)
            await admitted(one, other)
            greedy = request(pg, erin, 10)
            await admitted(two, greedy)
            # the upstream ignored max_tokens: 100 tokens, and 40 are free beside the other hold
            two.end(greedy, pg.outcome(greedy, Usage(completion_tokens=100)))
            await two.writer.flush()
            rows = await store.fetchall("SELECT charged_pico, written_off_pico FROM usage")
            assert rows == [(40 * TOKEN, 60 * TOKEN)]
            assert await state(store, erin) == (60 * TOKEN, 60 * TOKEN, 60 * TOKEN)
            one.end(other, pg.outcome(other, Usage(completion_tokens=60)))
            await one.writer.flush()
            assert await state(store, erin) == (0, 0, 0)
            assert await pg.sums(store) == {erin: (0, 0)}

    asyncio.run(go())


def test_a_hold_stays_until_its_charge_is_written(tmp_path: Path, pg: Any) -> None:
    """Between a request's end and the batched write, no process may spend what the charge is
    about to take."""

    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one, process(pg) as two:
            gus = await pg.user(store, "gus@example.com")
            await service.grant(store, gus, 10 * TOKEN)
            first = request(pg, gus, 10)
            await admitted(one, first)
            one.end(first, pg.outcome(first, Usage(completion_tokens=10)))  # not written yet
            with pytest.raises(RouterError) as refused:
                await admitted(two, request(pg, gus, 1))
            assert refused.value.status == 402
            await one.writer.flush()
            assert await pg.sums(store) == {gus: (0, 0)}

    asyncio.run(go())


def test_credits_added_elsewhere_are_spendable_at_once(tmp_path: Path, pg: Any) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one:
            ivy = await pg.user(store, "ivy@example.com")
            await service.grant(store, ivy, 10 * TOKEN)
            await admitted(one, request(pg, ivy, 10))  # makes ivy's row
            with pytest.raises(RouterError):
                await admitted(one, request(pg, ivy, 5))
            await service.grant(store, ivy, 5 * TOKEN)  # the CLI, another host: no reload
            await admitted(one, request(pg, ivy, 5))
            assert await state(store, ivy) == (15 * TOKEN, 15 * TOKEN, 15 * TOKEN)

    asyncio.run(go())


def test_a_lot_that_expired_since_the_row_was_computed_is_not_spent(
    tmp_path: Path, pg: Any
) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one:
            jo = await pg.user(store, "jo@example.com")
            await service.grant(store, jo, 10 * TOKEN)
            ctx = request(pg, jo, 1)
            await admitted(one, ctx)
            one.end(ctx, pg.outcome(ctx, Usage()))
            await one.writer.flush()
            # time passes the lot's expiry (as the row recorded it): no sweep has run
            past = "2000-01-01T00:00:00.000000Z"
            await store.execute("UPDATE credit_lots SET expires_at = ?", (past,))
            await store.execute("UPDATE credit_accounts SET next_expiry = ?", (past,))
            with pytest.raises(RouterError) as refused:
                await admitted(one, request(pg, jo, 1))
            assert refused.value.status == 402 and "0 USD is available" in refused.value.message

    asyncio.run(go())


def test_holds_of_a_process_that_stopped_renewing_are_reclaimed_by_another(
    tmp_path: Path, pg: Any
) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as survivor:
            kim = await pg.user(store, "kim@example.com")
            await service.grant(store, kim, 10 * TOKEN)
            async with process(pg, hold_lease_seconds=5) as dead:
                await admitted(dead, request(pg, kim, 10))  # then it dies: never renews
            # before the lease ends the hold stands; after, any process releases it
            async with store.transaction() as tx:
                assert await holds.reclaim(tx, now_us()) == 0
            later = now_us() + 5_000_001
            async with store.transaction() as tx:
                assert await holds.reclaim(tx, later) == 1
            assert await state(store, kim) == (10 * TOKEN, 0, 0)
            await admitted(survivor, request(pg, kim, 10))

    asyncio.run(go())


def test_the_owner_renews_its_leases(tmp_path: Path, pg: Any) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg, hold_lease_seconds=5) as one:
            lu = await pg.user(store, "lu@example.com")
            await service.grant(store, lu, 10 * TOKEN)
            await admitted(one, request(pg, lu, 10))
            async with store.transaction() as tx:
                assert await holds.renew(tx, one.owner, now_us() + 60_000_000) == 1
                assert await holds.reclaim(tx, now_us() + 5_000_001) == 0  # renewed past it

    asyncio.run(go())


def test_a_starting_process_releases_the_holds_of_this_hosts_dead_processes(
    tmp_path: Path, pg: Any
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs (the previous start of a restarted host)

    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store:
            mo = await pg.user(store, "mo@example.com")
            await service.grant(store, mo, 10 * TOKEN)
            here = socket.gethostname()
            owners = {
                "dead": f"{here}:{dead.pid}:aaaa",
                "alive": f"{here}:{_parent_pid()}:bbbb",  # another worker of this host
                "elsewhere": f"other-host:{dead.pid}:cccc",  # another host's: its lease decides
            }
            far = "2999-01-01T00:00:00.000000Z"
            async with store.transaction() as tx:
                await holds.refresh(tx, mo, now_us())
                for name, owner in owners.items():
                    await tx.execute(
                        "INSERT INTO credit_holds VALUES (?, ?, ?, ?, ?)",
                        (name, mo, TOKEN, owner, far),
                    )
                await tx.execute("UPDATE credit_accounts SET held_pico = ?", (3 * TOKEN,))
            async with process(pg) as starting:
                await starting.start()
                await starting.stop()
            left = await store.fetchall("SELECT id FROM credit_holds ORDER BY id")
            assert left == [("alive",), ("elsewhere",)]
            assert await state(store, mo) == (10 * TOKEN, 2 * TOKEN, 2 * TOKEN)

    asyncio.run(go())


def _parent_pid() -> int:
    import os

    return os.getppid()


def test_a_stopping_process_releases_what_it_still_holds(tmp_path: Path, pg: Any) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one:
            nan = await pg.user(store, "nan@example.com")
            await service.grant(store, nan, 10 * TOKEN)
            await one.start()
            await admitted(one, request(pg, nan, 10))  # cut off by the stop
            await one.stop()
            assert await state(store, nan) == (10 * TOKEN, 0, 0)

    asyncio.run(go())


def test_an_admission_given_up_on_releases_the_hold_it_got(tmp_path: Path, pg: Any) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store, process(pg) as one:
            ole = await pg.user(store, "ole@example.com")
            await service.grant(store, ole, 10 * TOKEN)
            ctx = request(pg, ole, 10)
            task = asyncio.ensure_future(admitted(one, ctx))
            await asyncio.sleep(0)  # the admission has started
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert HOLD_ID not in ctx.state
            for _ in range(200):  # the admission runs on; once done, its release is queued
                if one.writer.pending:
                    break
                await asyncio.sleep(0.01)
            await one.writer.flush()
            assert await state(store, ole) == (10 * TOKEN, 0, 0)

    asyncio.run(go())


# -- the database unreachable while serving -----------------------------------------------------


class Cuttable:
    """A TCP relay to the database that can be cut (every connection dropped, new ones refused)
    and restored on the same port: an outage as the router sees it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.links -= {writer, up_writer}


def test_an_outage_fails_admissions_closed_and_loses_no_charge(
    tmp_path: Path, pg: Any, postgres_cluster: Any
) -> None:
    async def go() -> None:
        async with pg.store(tmp_path / "c.db") as store:
            pat = await pg.user(store, "pat@example.com")
            await service.grant(store, pat, 10 * TOKEN)
            relay = Cuttable(postgres_cluster.port)
            await relay.up()
            database = store.url.rpartition("/")[2]
            url = f"postgresql://postgres@127.0.0.1:{relay.port}/{database}"
            through = PostgresStore(url)
            await through.open()
            meter = pg.meter(through)
            try:
                ctx = request(pg, pat, 4)
                await admitted(meter, ctx)
                await relay.cut()
                meter.end(ctx, pg.outcome(ctx, Usage(completion_tokens=3)))
                with pytest.raises(StorageError):
                    await meter.writer.flush()
                assert meter.writer.pending == 1  # the charge waits in memory
                with pytest.raises(RouterError) as refused:  # no free requests meanwhile
                    await admitted(meter, request(pg, pat, 1))
                assert refused.value.status == 503 and refused.value.code == "unavailable"
                await relay.up()  # the database is back: the pool reconnects
                await meter.writer.flush()
                assert await pg.sums(store) == {pat: (7 * TOKEN, 7 * TOKEN)}
                assert await state(store, pat) == (7 * TOKEN, 0, 0)
                await admitted(meter, request(pg, pat, 7))
            finally:
                await relay.cut()
                await through.close()

    asyncio.run(go())


# -- Hypothesis: the ledger under concurrent holds from two processes ---------------------------

# One operation: (process 0 or 1, output tokens held, output tokens used), or a grant of (None,
# tokens, 0), or a flush of one process (process, -1, 0).
OPERATION = st.one_of(
    st.tuples(st.sampled_from([0, 1]), st.integers(1, 30), st.integers(0, 45)),
    st.tuples(st.none(), st.integers(1, 40), st.just(0)),
    st.tuples(st.sampled_from([0, 1]), st.just(-1), st.just(0)),
)


@pytest.fixture
def shared_db(pg: Any, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """One migrated database for every example (making one per example outlasts the suite's
    budget): each example starts from emptied credits tables."""
    yield lambda: pg.store(tmp_path / "c.db")


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATION, min_size=1, max_size=25), seed=st.integers(0, 2**16))
def test_ledger_invariants_under_concurrent_holds(
    pg: Any, shared_db: Callable[[], Any], operations: list[Any], seed: int
) -> None:
    """Whatever requests two processes admit and end, concurrently and over their holds: the
    balance minus the holds never goes below zero, every hold row is on the user's row, and
    once written the ledger sums to the lots with no hold left."""

    async def go() -> None:
        async with shared_db() as store, process(pg) as one, process(pg) as two:
            await store.execute(
                "TRUNCATE credit_holds, credit_accounts, usage, ledger, credit_lots, users CASCADE"
            )
            user = await pg.user(store, f"u{seed}@example.com")
            await service.grant(store, user, 20 * TOKEN)
            # the row exists already (as after a first request): the one-statement admission
            # decides, not the slow path (which recomputes under the write lock)
            async with store.transaction() as tx:
                await holds.refresh(tx, user, now_us())
            meters = (one, two)
            open_requests: list[tuple[Meter, Any, int]] = []
            ids = itertools.count()

            async def run(op: tuple[Any, int, int]) -> None:
                who, tokens, used = op
                if who is None:
                    await service.grant(store, user, tokens * TOKEN)
                elif tokens == -1:
                    await meters[who].writer.flush()
                else:
                    ctx = request(pg, user, tokens)
                    with contextlib.suppress(RouterError):
                        await admitted(meters[who], ctx)
                        open_requests.append((meters[who], ctx, used))
                next(ids)

            await asyncio.gather(*(run(op) for op in operations))
            balance, held, rows = await state(store, user)
            assert held == rows and balance - held >= 0
            assert held == sum(ctx.state[HOLD] for _, ctx, _ in open_requests)
            for meter, ctx, used in open_requests:
                meter.end(ctx, pg.outcome(ctx, Usage(completion_tokens=used)))
            await one.writer.flush()
            await two.writer.flush()
            balance, held, rows = await state(store, user)
            assert (held, rows) == (0, 0) and balance >= 0
            [(ledger_sum, lots_sum)] = (await pg.sums(store)).values()
            assert ledger_sum == lots_sum == balance

    asyncio.run(go())
