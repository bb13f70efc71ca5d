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
    assert "sqlite://" in text and "server.workers" in text


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


def test_a_60_rpm_key_gets_exactly_60_of_100_over_two_hosts(
    fake: FakeOpenAI, postgres_url: str, redis_url: str
) -> None:
    text = router_config(fake.base_url, postgres_url, redis_url)
    with RouterServer(text) as one, RouterServer(text) as two:
        statuses = asyncio.run(spread([one.url, two.url], 100))
    assert sorted(statuses) == [200] * 60 + [429] * 40
    assert len(fake.requests) == 60  # the refused never reached the upstream


def test_a_60_rpm_key_gets_exactly_60_of_100_over_two_workers(
    fake: FakeOpenAI, postgres_url: str, redis_url: str
) -> None:
    text = router_config(fake.base_url, postgres_url, redis_url)
    with RouterServer(text, workers=2) as server:
        statuses = asyncio.run(spread([server.url], 100))
    assert sorted(statuses) == [200] * 60 + [429] * 40
