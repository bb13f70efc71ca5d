"""Credits across hosts and workers on one PostgreSQL database: real router servers (two hosts and
a two-worker one), a fake OpenAI upstream whose streams use every token they may, and the
ledger read straight from the database.

The model costs USD 2 per 1M output tokens and nothing for input, and allows 1000 output tokens:
each request holds exactly 2e9 pico-USD, and a stream that uses all 1000 tokens costs its
hold."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing import operator
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_credits.testing import ledger_matches_lots

HOLD = 2 * 10**9  # pico-USD
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def config(upstream: str, store: str, *, lease: float = 30) -> str:
    return kit.config(
        admin=None,
        disabled=["ratelimit", "stripe", "dashboard"],
        # per-process invalid-key counts would refuse the two-worker server without Redis;
        # they are not what these tests are about
        server={"auth_failures_per_minute": 0},
        storage={"url": store},
        credits={"flush_interval": 0.02, "hold_lease_seconds": lease},
        providers={"up": kit.provider("openai", upstream)},
        models={
            "m": kit.model(
                kit.route("up", "m-x", price={"input": 0, "output": 2}), max_output_tokens=1000
            )
        },
    )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    # worst case: every token the hold allowed, streamed slowly enough to overlap
    fake.script(
        "m-x",
        Behavior(text="x" * 40, chunk_delay=0.05, usage={"completion_tokens": 1000}),
    )
    with fake.run_in_thread():
        yield fake


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


async def streams(urls: list[str], key: str, count: int) -> list[int]:
    """``count`` streamed chat requests at once, dealt round-robin over ``urls``, each read to
    its end (or until the connection dies): their status codes (0: the connection died)."""
    clients = [
        httpx.AsyncClient(base_url=u, timeout=60, limits=httpx.Limits(max_connections=count))
        for u in urls
    ]

    async def one(client: httpx.AsyncClient) -> int:
        headers = {"authorization": f"Bearer {key}"}
        try:
            async with client.stream(
                "POST", "/v1/chat/completions", json=BODY, headers=headers
            ) as response:
                async for _ in response.aiter_bytes():
                    pass
                return response.status_code
        except httpx.HTTPError:
            return 0

    try:
        return list(await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(count))))
    finally:
        for client in clients:
            await client.aclose()


def holds_outstanding(url: str) -> tuple[int, int]:
    """(hold rows, sum of held on the users' rows)."""
    [(rows, held)] = operator.query(
        url,
        "SELECT (SELECT COUNT(*) FROM credit_holds), "
        "(SELECT COALESCE(SUM(held_pico), 0) FROM credit_accounts)",
    )
    return int(rows), int(held)


def balance(url: str) -> int:
    [(total,)] = operator.query(url, "SELECT COALESCE(SUM(remaining_pico), 0) FROM credit_lots")
    return int(total)


def test_60_worst_case_streams_over_three_servers_admit_exactly_5(
    fake: FakeOpenAI, postgres_url: str
) -> None:
    """Two hosts and a two-worker server on one database; a balance that covers 5 holds."""
    text = config(fake.base_url, postgres_url)
    with (
        RouterServer(text) as one,
        RouterServer(text) as two,
        RouterServer(text, workers=2) as many,
    ):
        key = operator.user_with_key(one.config_path, "five@example.com")
        operator.cli(one.config_path, "credits", "grant", "five@example.com", "0.01")
        statuses = asyncio.run(streams([one.url, two.url, many.url], key, 60))
        assert sorted(statuses) == [200] * 5 + [402] * 55
        assert len(fake.requests) == 5  # the refused never reached the upstream
        wait_until(lambda: holds_outstanding(postgres_url) == (0, 0), 10, "holds released")
    assert balance(postgres_url) == 0  # five streams that each cost their hold: no more
    ledger_matches_lots(postgres_url)
    [(charged, written_off)] = operator.query(
        postgres_url, "SELECT SUM(charged_pico), SUM(written_off_pico) FROM usage"
    )
    assert (charged, written_off) == (5 * HOLD, 0)


def kill_mid_burst(fake: FakeOpenAI, doomed: RouterServer, survivor: RouterServer) -> None:
    """A burst of 20 streams over both servers; ``doomed`` is SIGKILLed once every stream has
    reached the upstream (so it dies holding credits)."""
    key = operator.user_with_key(survivor.config_path, "burst@example.com")
    operator.cli(survivor.config_path, "credits", "grant", "burst@example.com", "1")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        burst = pool.submit(asyncio.run, streams([doomed.url, survivor.url], key, 20))
        wait_until(lambda: len(fake.requests) >= 20, 20, "every stream reached the upstream")
        doomed.crash()
        statuses = burst.result()
    assert statuses.count(200) >= 10  # the survivor's all finished; the doomed one's died


def assert_exact(url: str) -> None:
    """No hold left, the balance never below zero, the ledger summing to the lots, and every
    pico-USD taken from the lots on a usage record."""
    assert holds_outstanding(url) == (0, 0)
    left = balance(url)
    assert 0 <= left <= 10**12
    ledger_matches_lots(url)
    [(charged,)] = operator.query(url, "SELECT COALESCE(SUM(charged_pico), 0) FROM usage")
    assert left == 10**12 - charged


def test_a_host_killed_mid_burst_leaks_no_hold_once_restarted(
    fake: FakeOpenAI, postgres_url: str, tmp_path: Path
) -> None:
    """A lease of a minute: what releases the dead host's holds here is its restart."""
    text = config(fake.base_url, postgres_url, lease=60)
    doomed = RouterServer(text, workdir=tmp_path).start()
    try:
        with RouterServer(text) as survivor:
            kill_mid_burst(fake, doomed, survivor)
            assert holds_outstanding(postgres_url)[0] > 0  # the dead host's, still held
            doomed.start()  # the same host again
            wait_until(lambda: holds_outstanding(postgres_url) == (0, 0), 10, "released")
            assert_exact(postgres_url)
    finally:
        doomed.stop()


def test_a_host_killed_mid_burst_has_its_holds_reclaimed_by_the_other(
    fake: FakeOpenAI, postgres_url: str
) -> None:
    """Not restarted: the survivor releases the dead host's holds when their lease runs out."""
    text = config(fake.base_url, postgres_url, lease=1)
    with RouterServer(text) as doomed, RouterServer(text) as survivor:
        kill_mid_burst(fake, doomed, survivor)
        wait_until(lambda: holds_outstanding(postgres_url) == (0, 0), 15, "reclaimed")
        assert_exact(postgres_url)
        assert "expired credit holds released" in survivor.logs()


def test_hosts_starting_at_once_on_an_empty_database_migrate_once(
    fake: FakeOpenAI, postgres_url: str
) -> None:
    text = config(fake.base_url, postgres_url)
    servers = [RouterServer(text) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda server: server.start(), servers))
    try:
        rows = operator.query(
            postgres_url, "SELECT namespace, COUNT(*) FROM lmrouter_migrations GROUP BY 1"
        )
        # Both started (a step applied twice would have failed one: the migrations table's
        # key is (namespace, version), and a step's own CREATE TABLE would clash), and every
        # step is recorded once.
        assert all(
            server.process is not None and server.process.poll() is None for server in servers
        )
        assert dict(rows)["credits"] == 5 and dict(rows)["accounts"] >= 1
        key = operator.user_with_key(servers[0].config_path, "both@example.com")
        operator.cli(servers[0].config_path, "credits", "grant", "both@example.com", "1")
        statuses = asyncio.run(streams([s.url for s in servers], key, 4))
        assert statuses == [200] * 4
    finally:
        for server in servers:
            server.stop()
