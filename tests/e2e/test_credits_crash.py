"""A router killed with SIGKILL in the middle of a burst of paid streams, then started again on
the same SQLite file: no hold survives to lock money away (the new process admits exactly the
balance the lots hold), no usage record is written twice, and the ledger still sums to the lots.
What a crash can lose is the last batch of records not yet written: revenue, never a user's
money."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest

from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.operator import cli, query, user_with_key
from lmrouter.testing.server import RouterServer

HELLO = [{"role": "user", "content": "Hello!"}]
TOKEN = 2 * 10**6  # pico-USD per output token; input is free, so a hold is max_tokens * TOKEN


def config(upstream: str) -> str:
    return f"""
[plugins]
disabled = ["ratelimit"]
[storage]
url = "sqlite:///crash.db"

[providers.up]
type = "openai"
base_url = "{upstream}"
api_key = "sk-upstream"

[[models]]
id = "paid"
  [[models.routes]]
  provider = "up"
  model = "paid-x"
  price = {{ input = 0, output = 2 }}
"""


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (granian's workers and anything they started)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent]
        found += children
        frontier += children
    return found


def crash(server: RouterServer) -> None:
    """SIGKILL the worker(s) and the main process: no shutdown hook, no last flush."""
    assert server.process is not None
    victims = [*descendants(server.process.pid), server.process.pid]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in victims[:-1]):
        assert time.monotonic() < deadline, "a worker outlived SIGKILL"
        time.sleep(0.02)
    server.process = None


def check_books(db: Path) -> dict[str, int]:
    """The invariants a crash must not break; returns each user's spendable balance."""
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    with contextlib.closing(sqlite3.connect(db, timeout=10, isolation_level=None)) as conn:
        conn.execute("BEGIN")  # one snapshot, even while a server writes
        ledger = dict(conn.execute("SELECT user_id, SUM(amount_pico) FROM ledger GROUP BY 1"))
        lots = dict(conn.execute("SELECT user_id, SUM(remaining_pico) FROM credit_lots GROUP BY 1"))
        conn.execute("COMMIT")
    assert ledger == lots
    duplicates = query(
        db, "SELECT request_id, COUNT(*) FROM usage GROUP BY request_id HAVING COUNT(*) > 1"
    )
    assert duplicates == []
    # each charge and its record were written together or not at all
    orphans = query(
        db,
        "SELECT l.request_id FROM ledger l LEFT JOIN usage u ON u.request_id = l.request_id "
        "WHERE l.kind = 'spend' AND u.id IS NULL",
    )
    assert orphans == []
    spent = query(db, "SELECT COALESCE(-SUM(amount_pico), 0) FROM ledger WHERE kind = 'spend'")
    charged = query(db, "SELECT COALESCE(SUM(charged_pico), 0) FROM usage")
    assert spent == charged
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return dict(
        query(
            db,
            "SELECT user_id, SUM(remaining_pico) FROM credit_lots WHERE expires_at > ? GROUP BY 1",
            (now,),
        )
    )


async def burst(url: str, key: str, count: int, kill_after: float, server: RouterServer) -> dict:
    """``count`` streams, started a few at a time; the router dies ``kill_after`` seconds after
    the fifth stream finished."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=10)
    results: dict[str, int] = {"ok": 0, "refused": 0, "cut": 0}

    async def one() -> None:
        try:
            stream = await client.chat.completions.create(
                model="paid", messages=HELLO, stream=True, max_tokens=30
            )
            async for _ in stream:
                pass
            results["ok"] += 1
        except openai.APIStatusError as err:
            assert err.status_code == 402, err
            results["refused"] += 1
        except (openai.APIConnectionError, httpx.HTTPError):
            results["cut"] += 1

    async def killer() -> None:
        # Mid-burst whatever the machine's load: once some streams finished (and a batch of
        # their charges had time to be written), while later ones are still in flight.
        deadline = time.monotonic() + 20
        while results["ok"] < 5 and time.monotonic() < deadline:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.01)
        await asyncio.sleep(kill_after)
        await asyncio.to_thread(crash, server)

    tasks = [asyncio.create_task(killer())]
    for _ in range(count):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    await client.close()
    return results


def test_sigkill_mid_burst_leaks_nothing(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    # 30 output tokens over 0.3 s: many streams are in flight at any moment
    fake.script("paid-x", Behavior(text="y" * 30, chunk_chars=1, chunk_delay=0.01))
    with fake.run_in_thread():
        text = config(fake.base_url)
        first = RouterServer(text, workdir=tmp_path).start()
        config_path = first.config_path
        db = tmp_path / "crash.db"
        key = user_with_key(config_path, "crash@example.com")
        cli(config_path, "credits", "grant", "crash@example.com", "0.0036")  # 60 streams' worth
        try:
            results = asyncio.run(burst(first.openai_url, key, 150, 0.15, first))
        finally:
            if first.process is not None:
                first.stop()
        # it really was mid-burst: some streams finished, some were cut, some were refused
        assert results["ok"] > 0 and results["cut"] > 0, results
        [user_id] = [row[0] for row in query(db, "SELECT id FROM users")]
        written = query(db, "SELECT COUNT(*) FROM usage")[0][0]
        assert 0 < written <= 150
        balance = check_books(db)[user_id]
        assert 0 <= balance < 36 * 10**8  # something was charged before the crash

        # the same file, a new process: nothing is held, so exactly the balance is spendable
        with RouterServer(text, workdir=tmp_path) as second:
            client = openai.OpenAI(base_url=second.openai_url, api_key=key, max_retries=0)
            tokens = balance // TOKEN
            with pytest.raises(openai.APIStatusError) as over:
                client.chat.completions.create(model="paid", messages=HELLO, max_tokens=tokens + 1)
            assert over.value.status_code == 402
            if tokens:
                reply = client.chat.completions.create(
                    model="paid", messages=HELLO, max_tokens=tokens
                )
                assert reply.usage.completion_tokens == min(tokens, 30)
        # the new process flushed on its way out: both requests recorded, books still balance
        assert query(db, "SELECT COUNT(*) FROM usage")[0][0] == written + 1 + bool(tokens)
        after = check_books(db)[user_id]
        assert after == balance - min(tokens, 30) * TOKEN
