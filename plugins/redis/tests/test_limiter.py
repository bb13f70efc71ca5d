"""The Redis limiter against a real redis-server, held to the memory backend: on any sequence of
admissions, corrections, limit changes and waits, both decide the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lmrouter_ratelimit.backend import Decision, Limits, MemoryBackend
from lmrouter_redis.limiter import PREFIX, RedisBackend, RedisUnavailable

US = 1000
SECOND = 1_000_000_000
START = 1_765_000_000 * SECOND  # a real epoch time: the scripts' arithmetic must stay exact

LIMITS = [
    Limits(rpm=5, rpm_burst=2, tpm=100, tpm_burst=50, max_concurrent=2),
    Limits(rpm=7, rpm_burst=7),
    Limits(tpm=1000, tpm_burst=100),
    Limits(rpm=3, rpm_burst=3, tpm=60_000, tpm_burst=60_000, max_concurrent=1),
    Limits(max_concurrent=1),
]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


def same_quota(memory: Any, redis: Any) -> bool:
    """Equal, but for times: Redis counts microseconds, rounded up, where memory counts
    nanoseconds."""
    if memory is None or redis is None:
        return memory is redis
    limit, left, reset = memory
    return (limit, left) == redis[:2] and reset <= redis[2] < reset + US


def assert_same(memory: Decision, redis: Decision) -> None:
    assert memory.allowed == redis.allowed, (memory, redis)
    assert memory.refused_by == redis.refused_by, (memory, redis)
    assert same_quota(memory.requests, redis.requests), (memory, redis)
    assert same_quota(memory.tokens, redis.tokens), (memory, redis)
    assert memory.reserved == redis.reserved and memory.slot == redis.slot, (memory, redis)
    wait = memory.retry_after_ns
    assert wait <= redis.retry_after_ns < wait + US, (memory, redis)
    assert memory.requested == redis.requested


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("admit"),
            st.sampled_from("ab"),
            st.integers(0, len(LIMITS) - 1),
            st.integers(0, 200),
        ),
        # used: less than reserved (a refund of what has not drained yet) or more (a charge)
        st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 40) | st.integers(0, 300)),
        # microseconds: short waits drain part of a reservation, long ones all of it
        st.tuples(st.just("wait"), st.integers(0, 2_000_000) | st.integers(0, 30_000_000)),
    ),
    max_size=40,
)


async def compare(url: str, steps: list[tuple[Any, ...]]) -> None:
    clock = Clock()
    memory = MemoryBackend(clock=clock)
    redis = RedisBackend(url=url, clock=clock)
    await redis.start()
    try:
        assert redis.client is not None
        await redis.client.flushall()
        running: list[tuple[str, Limits, Decision, Decision]] = []
        for step in steps:
            if step[0] == "admit":
                _, key, which, tokens = step
                limits = LIMITS[which]
                mine = memory.admit_now(key, limits, tokens)
                theirs = await redis.admit(key, limits, tokens)
                assert_same(mine, theirs)
                if mine.allowed and (mine.reserved or mine.slot):
                    running.append((key, limits, mine, theirs))
            elif step[0] == "settle" and running:
                key, limits, mine, theirs = running.pop(step[1] % len(running))
                memory.settle_now(key, limits, mine, step[2])
                await redis.settle(key, limits, theirs, step[2])
            elif step[0] == "wait":
                clock.now += step[1] * US
    finally:
        await redis.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=operations)
# two reservations, the first partly drained, then refunded: only what has not drained comes back
@example(steps=[("admit", "a", 2, 60), ("admit", "a", 2, 40), ("wait", 3_000_000),
                ("settle", 0, 0), ("admit", "a", 2, 0)])  # fmt: skip
def test_redis_decides_as_memory_does(redis_server: Any, steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(compare(redis_server.url, steps))


def test_all_limits_of_a_request_live_in_one_key_named_after_the_scripts(redis_url: str) -> None:
    async def go() -> None:
        backend = RedisBackend(url=redis_url)
        await backend.start()
        try:
            assert backend.client is not None
            decision = await backend.admit("k1", LIMITS[0], 10)
            assert decision.allowed and decision.slot
            assert await backend.client.keys("*") == [f"{PREFIX}{{k1}}".encode()]
            await backend.settle("k1", LIMITS[0], decision, 10)
            # held nothing and full again: the key expires instead of staying forever
            assert 0 < await backend.client.pttl(f"{PREFIX}{{k1}}") <= 60_000 + 1
        finally:
            await backend.close()

    asyncio.run(go())


def test_on_redis_time_a_burst_is_refused_past_its_limit(redis_url: str) -> None:
    async def go() -> None:
        backend = RedisBackend(url=redis_url)
        await backend.start()
        try:
            limits = Limits(rpm=60, rpm_burst=60)
            decisions = [await backend.admit("k", limits, 0) for _ in range(61)]
            assert [d.allowed for d in decisions] == [True] * 60 + [False]
            assert decisions[-1].refused_by == "requests"
            assert 0 < decisions[-1].retry_after_ns <= SECOND
        finally:
            await backend.close()

    asyncio.run(go())


def test_unreachable_redis_is_a_clear_error() -> None:
    from lmrouter.testing.servers import free_port

    backend = RedisBackend(url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1"):
        asyncio.run(backend.start())


def test_many_more_concurrent_calls_than_connections_all_complete(redis_url: str) -> None:
    """More calls at once than the pool has connections wait their turn instead of failing."""
    from lmrouter_redis.limiter import POOL_SIZE

    async def go() -> None:
        backend = RedisBackend(url=redis_url)
        await backend.start()
        try:
            limits = Limits(rpm=100_000, rpm_burst=100_000)
            calls = 4 * POOL_SIZE
            decisions = await asyncio.gather(
                *(backend.admit(f"k{i % 7}", limits, 0) for i in range(calls))
            )
            assert all(d.allowed for d in decisions)
            await asyncio.gather(*(backend.settle(f"k{i % 7}", limits, d, 0)
                                   for i, d in enumerate(decisions)))  # fmt: skip
        finally:
            await backend.close()

    asyncio.run(go())


def test_calls_of_one_turn_share_a_pipeline_and_survive_a_script_flush(redis_url: str) -> None:
    """Concurrent calls go out together; after Redis forgot the scripts (a restart, a FLUSH) the
    next calls reload them and still decide."""

    async def go() -> None:
        backend = RedisBackend(url=redis_url)
        await backend.start()
        try:
            assert backend.calls is not None and backend.client is not None
            sent: list[int] = []
            execute = backend.calls._execute

            async def counting(calls: list[tuple[str, list[Any]]]) -> list[Any]:
                sent.append(len(calls))
                return await execute(calls)

            backend.calls._execute = counting  # type: ignore[method-assign]
            limits = Limits(rpm=3, rpm_burst=3)
            decisions = await asyncio.gather(*(backend.admit("f", limits, 0) for _ in range(5)))
            assert sent == [5]  # one pipeline for the five
            assert [d.allowed for d in decisions].count(True) == 3  # each still atomic
            await backend.client.script_flush()
            after = await asyncio.gather(*(backend.admit(f"g{i}", limits, 0) for i in range(4)))
            assert all(d.allowed for d in after)
            assert sent == [5, 4, 4]  # NOSCRIPT for all four: loaded, then sent again
        finally:
            await backend.close()

    asyncio.run(go())
