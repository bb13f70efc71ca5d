"""The Redis limiter while its server stops answering (the process frozen with SIGSTOP, so
connections hang as on a network partition): admissions fail closed with a 503, corrections are
kept and sent when Redis answers again, and ``health`` names the problem without the password."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from lmrouter import RouterError
from lmrouter.testing.servers import RedisServer
from lmrouter_ratelimit.backend import Limits
from lmrouter_redis.counters import RedisCounters
from lmrouter_redis.limiter import RedisBackend, redact

ONE_AT_A_TIME = Limits(max_concurrent=1)


@pytest.fixture
def frozen_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)  # never leave it frozen


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("rediss://user:s3cret@h/1") == "rediss://user:***@h/1"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_fail_closed_keep_corrections_and_recover(frozen_redis: RedisServer) -> None:
    assert frozen_redis.process is not None
    pid = frozen_redis.process.pid

    async def go() -> None:
        backend = RedisBackend(url=frozen_redis.url)
        counters = RedisCounters(frozen_redis.url)
        await backend.start()
        await counters.start()
        try:
            held = await backend.admit("k", ONE_AT_A_TIME, 0)
            assert held.allowed and held.slot
            assert (await backend.admit("k", ONE_AT_A_TIME, 0)).refused_by == "concurrency"
            assert await counters.add("keyfail:10.0.0.1", 60) == (1, pytest.approx(60, abs=1))
            os.kill(pid, signal.SIGSTOP)
            with pytest.raises(RouterError) as refused:
                await backend.admit("other", ONE_AT_A_TIME, 0)
            assert refused.value.status == 503 and refused.value.code == "unavailable"
            assert (await backend.health())["redis"].startswith("unavailable: redis://127.0.0.1")
            await backend.settle("k", ONE_AT_A_TIME, held, 0)  # the request ended meanwhile
            assert backend.unsettled == 1
            with pytest.raises(Exception):  # noqa: B017 - whatever the client raises
                await counters.add("keyfail:10.0.0.1", 60)
            os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 30
            while backend.unsettled:  # resent by the backend's own retry task
                assert time.monotonic() < deadline, "the kept correction was never sent"
                await asyncio.sleep(0.05)
            assert await backend.health() == {"redis": "ok"}
            # the slot came back: a correction dropped would have held it for an hour
            assert (await backend.admit("k", ONE_AT_A_TIME, 0)).allowed
            # the count sent while frozen timed out here but may have landed when Redis woke
            assert (await counters.add("keyfail:10.0.0.1", 60))[0] in (2, 3)
        finally:
            await counters.close()
            await backend.close()

    asyncio.run(go())
