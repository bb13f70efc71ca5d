"""The guard's parts in-process: the failed-key count stays bounded whatever the flood of
addresses, forgets a window once it is over, and a body read past its deadline is cut off while
one that ends in time is left alone (and its task is not cancelled later)."""

from __future__ import annotations

import asyncio

import pytest

from lmrouter.errors import RouterError
from lmrouter.guard import KeyFailures, ReadDeadlines


def test_failed_keys_lock_an_address_for_the_rest_of_its_window() -> None:
    now = [100.0]
    failures = KeyFailures(3, window=60.0, clock=lambda: now[0])
    for _ in range(2):
        failures.failed("10.0.0.1")
    assert failures.retry_after("10.0.0.1") == 0
    failures.failed("10.0.0.1")
    assert failures.retry_after("10.0.0.1") == 60
    assert failures.retry_after("10.0.0.2") == 0
    now[0] += 45.5
    assert failures.retry_after("10.0.0.1") == 15
    now[0] += 15
    assert failures.retry_after("10.0.0.1") == 0  # a new window: forgiven


def test_a_flood_of_addresses_keeps_memory_bounded() -> None:
    failures = KeyFailures(1, max_addresses=100)
    for i in range(10_000):
        failures.failed(f"10.{i // 256}.{i % 256}.1")
    assert len(failures._state) == 100
    assert failures.retry_after("10.39.15.1") > 0  # the newest are kept


def test_a_read_past_its_deadline_is_cut_off_and_one_in_time_is_not() -> None:
    async def go() -> None:
        deadlines = ReadDeadlines(0.3)
        never: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

        async def stalled() -> dict:
            return await never

        with pytest.raises(RouterError) as cut:
            await deadlines.guard(stalled)()
        assert cut.value.status == 408

        async def prompt() -> dict:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        receive = deadlines.guard(prompt)
        assert (await receive())["body"] == b"{}"
        await asyncio.sleep(0.6)  # two sweeps later: nothing cancels this task
        assert not deadlines._due and not deadlines._expired
        await deadlines.close()

    asyncio.run(go())
