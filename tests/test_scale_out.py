"""Several workers and several hosts: which configurations are accepted (exactly those where
every per-process piece has a shared backend), and the rate limits held exactly across two
router servers and a two-worker one on one PostgreSQL database and one Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from lmrouter.config import ConfigError
from lmrouter.gateway import load
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer

KEY = "sk-scale-0"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lmrouter.toml"
    path.write_text(text)
    return path


def settings(store: str, *, workers: int, disabled: list[str], backend: str) -> str:
    return f"""
[server]
workers = {workers}
[storage]
url = "{store}"
[plugins]
disabled = {json.dumps(disabled)}
[redis]
url = "redis://127.0.0.1:1/0"
[ratelimit]
rpm = 60
backend = "{backend}"
"""


PG = "postgresql://router@db.internal/lmrouter"


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load(write(tmp_path, text))
    return str(refused.value)


def test_credits_refuse_several_workers_on_a_server_database_too(tmp_path: Path) -> None:
    """The rows are shared on PostgreSQL; the holds in each worker's memory are not."""
    text = refusal(tmp_path, settings(PG, workers=2, disabled=[], backend="redis"))
    assert "server.workers" in text and "credit hold" in text and "2 workers" in text


def test_memory_limits_refuse_several_workers_on_a_server_database(tmp_path: Path) -> None:
    text = refusal(
        tmp_path, settings(PG, workers=2, disabled=["credits", "stripe"], backend="memory")
    )
    assert "'memory' rate-limit backend" in text and 'backend = "redis"' in text


def test_sqlite_refuses_several_workers_whatever_the_limiter(tmp_path: Path) -> None:
    text = refusal(
        tmp_path,
        settings("sqlite:///x.db", workers=2, disabled=["credits", "stripe"], backend="redis"),
    )
    assert "API-key cache" in text and "server.workers" in text


def test_postgres_and_redis_accept_several_workers(tmp_path: Path) -> None:
    config, _ = load(
        write(tmp_path, settings(PG, workers=4, disabled=["credits", "stripe"], backend="redis"))
    )
    assert config.server.workers == 4


# -- across processes ------------------------------------------------------------------------


def router_config(upstream: str, store: str, redis: str) -> str:
    return f"""
[plugins]
disabled = ["credits", "stripe"]  # Stripe credits purchases: it needs credits
[storage]
url = "{store}"
[auth]
keys = ["{KEY}"]
[redis]
url = "{redis}"
[ratelimit]
rpm = 60
backend = "redis"
[providers.up]
type = "openai"
base_url = "{upstream}"
api_key = "sk-up"
[[models]]
id = "gpt"
  [[models.routes]]
  provider = "up"
  model = "gpt-x"
"""


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with fake.run_in_thread():
        yield fake


async def spread(urls: list[str], count: int) -> list[int]:
    """``count`` chat requests at once, dealt round-robin over ``urls``: their status codes."""
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    clients = [
        httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=count))
        for url in urls
    ]
    try:
        for client in clients:
            await client.get("/health")
        answers = await asyncio.gather(
            *(
                clients[i % len(clients)].post("/v1/chat/completions", json=body, headers=headers)
                for i in range(count)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return [answer.status_code for answer in answers]


def redis_seconds(url: str) -> float:
    """Redis's clock (the limiter's), in seconds."""
    client = redis.Redis.from_url(url)
    try:
        seconds, micros = client.time()
    finally:
        client.close()
    return seconds + micros / 1e6


def burst(urls: list[str], redis_url: str) -> int:
    """100 requests of a 60 rpm key over ``urls``: 60 admitted in all (not 60 per process).
    One more for each whole second the burst took on Redis's clock (GCRA refills a request a
    second at 60 rpm): on a loaded machine 100 requests over several routers can outlast one."""
    before = redis_seconds(redis_url)
    statuses = asyncio.run(spread(urls, 100))
    refilled = int(redis_seconds(redis_url) - before)
    admitted = statuses.count(200)
    assert 60 <= admitted <= 60 + refilled, (admitted, refilled)
    assert statuses.count(429) == 100 - admitted
    return admitted


def test_a_60_rpm_key_gets_exactly_60_of_100_over_two_hosts_and_two_workers(
    fake: FakeOpenAI, postgres_url: str, redis_url: str
) -> None:
    """Two one-worker hosts and a two-worker one, on one database and one Redis."""
    text = router_config(fake.base_url, postgres_url, redis_url)
    with (
        RouterServer(text) as one,
        RouterServer(text) as two,
        RouterServer(text, workers=2) as pair,
    ):
        admitted = burst([one.url, two.url, pair.url], redis_url)
    assert len(fake.requests) == admitted  # the refused never reached the upstream


def test_a_60_rpm_key_gets_exactly_60_of_100_over_two_workers(
    fake: FakeOpenAI, postgres_url: str, redis_url: str
) -> None:
    text = router_config(fake.base_url, postgres_url, redis_url)
    with RouterServer(text, workers=2) as server:
        burst([server.url], redis_url)


def test_check_says_whether_several_workers_and_hosts_are_possible(tmp_path: Path) -> None:
    from lmrouter.testing.operator import cli

    off = ["credits", "stripe"]
    out = cli(write(tmp_path, settings(PG, workers=1, disabled=off, backend="redis")), "check")
    assert "several workers: possible" in out and "several hosts: possible" in out
    alone = write(tmp_path, settings("sqlite:///x.db", workers=1, disabled=[], backend="memory"))
    out = cli(alone, "check")
    lacking = out[out.index("several workers: not possible") :]
    assert "API-key cache (revocation, suspension) (accounts)" in lacking
    assert "'memory' rate-limit backend" in lacking
    assert "the database (sqlite://…, one host's file) (core)" in lacking  # for several hosts


def test_invalid_key_counts_need_redis_or_no_limit_for_several_workers(tmp_path: Path) -> None:
    base = f"""
[storage]
url = "{PG}"
[plugins]
disabled = ["credits", "stripe", "ratelimit"]
"""
    refused = refusal(tmp_path, base + "[server]\nworkers = 2\n")
    assert "invalid-API-key counts" in refused and "[redis] url" in refused
    load(write(tmp_path, base + "[server]\nworkers = 2\nauth_failures_per_minute = 0\n"))
    load(write(tmp_path, base + '[server]\nworkers = 2\n[redis]\nurl = "redis://h:6379/0"\n'))
