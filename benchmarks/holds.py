"""Where shared credit holds should live: one conditional update in PostgreSQL, or a Lua script in
Redis (the other design issue #16 names: holds in Redis, balances backed by PostgreSQL). Both
on this machine's servers (lmrouter.testing.servers), through the clients the router uses
(asyncpg through the postgres plugin's store; redis-py's asyncio client).

``python -m benchmarks.holds [--ops 4000] [--concurrency 1,32]`` prints, per backend and
concurrency: admissions per second, latency p50/p99, and CPU per admission in this process
(the client) and in the database's own processes (read from /proc), in microseconds.
Each admission reserves and records a hold of one user with a balance that never runs out (the
path every admitted request takes); releases are batched by the router and not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from lmrouter.testing.servers import PostgresCluster, RedisServer

# The same statement the credits plugin runs (lmrouter_credits.holds.ADMIT), on a schema
# without the foreign keys (no users table here).
SCHEMA = """CREATE TABLE credit_accounts (user_id TEXT PRIMARY KEY, balance_pico BIGINT NOT NULL,
held_pico BIGINT NOT NULL, next_expiry TEXT NOT NULL);
CREATE TABLE credit_holds (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, amount_pico BIGINT NOT
NULL, owner TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE INDEX credit_holds_owner ON credit_holds (owner);
CREATE INDEX credit_holds_expiry ON credit_holds (expires_at);
INSERT INTO credit_accounts VALUES ('u', 9000000000000000000, 0, '9999');"""

# Redis: the account as a hash, the holds as a hash (id → amount) and a sorted set by expiry.
LUA = """
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))
local held = tonumber(redis.call('HGET', KEYS[1], 'held'))
local amount = tonumber(ARGV[1])
if balance - held < amount then return 0 end
redis.call('HINCRBY', KEYS[1], 'held', amount)
redis.call('HSET', KEYS[2], ARGV[2], amount)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""


def cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (and the children they waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def postgres_pids(cluster: PostgresCluster) -> list[int]:
    """This cluster's postmaster and its children (backends that exit are counted in the
    postmaster's children's time; other clusters on the machine are left out)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                pids.append(int(entry.name))
    return pids


async def measure(
    admit: Callable[[str], Awaitable[None]], ops: int, concurrency: int, server: Callable[[], float]
) -> dict[str, float]:
    ids = itertools.count()
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            start = time.perf_counter()
            await admit(f"h{next(ids)}")
            latencies.append(time.perf_counter() - start)

    for _ in range(200):  # warm up: connections, statement caches
        await admit(f"w{next(ids)}")
    latencies.clear()
    cpu0, server0, wall0 = time.process_time(), server(), time.perf_counter()
    await asyncio.gather(*(worker(ops // concurrency) for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    done = len(latencies)
    latencies.sort()
    return {
        "per_s": done / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(done * 0.99)] * 1000,
        "client_cpu_us": (time.process_time() - cpu0) / done * 1e6,
        "server_cpu_us": (server() - server0) / done * 1e6,
    }


async def bench_postgres(cluster: PostgresCluster, ops: int, concurrency: int) -> dict[str, float]:
    from lmrouter_postgres import PostgresStore

    url = cluster.database()
    cluster.sql(*SCHEMA.split(";\n"), database=url.rpartition("/")[2])
    store = PostgresStore(url, max_size=max(concurrency, 2))
    await store.open()
    from lmrouter_credits.holds import ADMIT

    async def admit(hold_id: str) -> None:
        row = await store.fetchone(ADMIT, (1, "u", "2026", 1, hold_id, 1, "bench:1:x", "2999"))
        assert row is not None

    try:
        return await measure(admit, ops, concurrency, lambda: cpu_of(postgres_pids(cluster)))
    finally:
        await store.close()
        cluster.drop(url)


async def bench_redis(server: RedisServer, ops: int, concurrency: int) -> dict[str, float]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(server.url, max_connections=max(concurrency, 2))
    await client.flushall()
    await client.hset("acct:u", mapping={"balance": 9 * 10**18, "held": 0})
    script = client.register_script(LUA)
    keys = ["acct:u", "holds:u", "expiry"]

    async def admit(hold_id: str) -> None:
        assert await script(keys=keys, args=[1, hold_id, 2**40]) == 1

    assert server.process is not None
    pid = server.process.pid
    try:
        return await measure(admit, ops, concurrency, lambda: cpu_of([pid]))
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=4000)
    parser.add_argument("--concurrency", default="1,32")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"{'backend':<10} {'conc':>4} {'admits/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'client CPU µs':>13} {'server CPU µs':>13}"
    )
    with PostgresCluster() as cluster, RedisServer() as server:
        for concurrency in levels:
            for name, run in (
                ("postgres", lambda c=concurrency: bench_postgres(cluster, args.ops, c)),
                ("redis", lambda c=concurrency: bench_redis(server, args.ops, c)),
            ):
                r = asyncio.run(run())
                print(
                    f"{name:<10} {concurrency:>4} {r['per_s']:>9.0f} {r['p50_ms']:>7.2f} "
                    f"{r['p99_ms']:>7.2f} {r['client_cpu_us']:>13.0f} {r['server_cpu_us']:>13.0f}"
                )


if __name__ == "__main__":
    main()
