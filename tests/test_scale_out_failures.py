"""A router on PostgreSQL + Redis when either goes away: unreachable at start is one clear error
(exit 1, the URL without its password); while serving, ``/health`` says not ready and names it,
requests that need it fail closed with 503 in the caller's dialect, and the router recovers by
itself when the server is back. The servers here are the tests' own (stopping them must not
touch other tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmrouter.testing import operator
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter.testing.servers import PostgresCluster, RedisServer, free_port

OPERATOR = "sk-operator-outage"
LMROUTER = str(Path(sys.executable).with_name("lmrouter"))  # the installed command
BOUND = 30.0  # seconds: the most a condition may take to show (a restart included)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with fake.run_in_thread():
        yield fake


def config(upstream: str, store: str, redis: str) -> str:
    return f"""
[plugins]
disabled = ["credits", "stripe"]
[auth]
keys = ["{OPERATOR}"]
[storage]
url = "{store}"
[redis]
url = "{redis}"
[ratelimit]
backend = "redis"
rpm = 1000
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


def openai_chat(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def anthropic_messages(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/messages",
        json={"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=30,
    )


def gemini_generate(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1beta/models/gpt:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": key},
        timeout=30,
    )


def assert_unavailable_in_each_dialect(base: str, key: str) -> None:
    """503, shaped as each dialect's own errors, and nothing reached the upstream."""
    answer = openai_chat(base, key)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["type"] == "server_error"
    assert answer.json()["error"]["code"] == "unavailable"
    answer = anthropic_messages(base, key)
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "overloaded_error"
    answer = gemini_generate(base, key)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["status"] == "UNAVAILABLE"
    assert answer.json()["error"]["code"] == 503


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` until it returns something true, for at most BOUND seconds."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        answer = condition()
        if answer:
            return answer
    raise AssertionError(f"not within {BOUND:g} s: {what}")


def health(base: str) -> httpx.Response:
    return httpx.get(f"{base}/health", timeout=30)


def test_redis_away_fails_closed_and_recovers(
    fake: FakeOpenAI, cluster: PostgresCluster, redis: RedisServer
) -> None:
    with RouterServer(config(fake.base_url, cluster.database(), redis.url)) as server:
        assert openai_chat(server.url, OPERATOR).status_code == 200
        served = len(fake.requests)
        redis.stop()
        down = health(server.url)
        assert down.status_code == 503
        assert down.json()["redis"].startswith("unavailable: redis://127.0.0.1:")
        assert down.json()["store"] == "ok" and down.json()["status"] == "unavailable"
        assert_unavailable_in_each_dialect(server.url, OPERATOR)
        assert len(fake.requests) == served  # no request went through unlimited
        redis.start()  # the same port, empty (as a Redis without persistence restarts)
        wait_for(lambda: health(server.url).status_code == 200, "health back to 200")
        assert openai_chat(server.url, OPERATOR).status_code == 200
        assert anthropic_messages(server.url, OPERATOR).status_code == 200


def test_postgres_away_fails_closed_and_recovers(
    fake: FakeOpenAI, cluster: PostgresCluster, redis: RedisServer
) -> None:
    with RouterServer(config(fake.base_url, cluster.database(), redis.url)) as server:
        cached = operator.user_with_key(server.config_path, "cached@example.com")
        fresh = operator.user_with_key(server.config_path, "fresh@example.com")
        assert openai_chat(server.url, cached).status_code == 200  # now in the key cache
        cluster.pause()
        try:
            down = health(server.url)
            assert down.status_code == 503
            assert down.json()["store"] == "unavailable" and down.json()["redis"] == "ok"
            # a key never seen: no way to check it
            assert openai_chat(server.url, fresh).status_code == 503
            # a cached key: refused once the cache is older than a revocation may be (a
            # second: until then it is served, as a key revoked that second would be)
            wait_for(
                lambda: openai_chat(server.url, cached).status_code == 503,
                "a cached key refused while the database is away",
            )
            served = len(fake.requests)
            assert_unavailable_in_each_dialect(server.url, cached)
            assert len(fake.requests) == served
        finally:
            cluster.resume()
        wait_for(lambda: health(server.url).status_code == 200, "health back to 200")
        wait_for(lambda: openai_chat(server.url, cached).status_code == 200, "the cached key again")
        assert openai_chat(server.url, fresh).status_code == 200


@pytest.mark.parametrize("which", ["postgres", "redis"])
def test_unreachable_at_start_is_one_clear_error(
    tmp_path: Path, cluster: PostgresCluster, redis: RedisServer, which: str
) -> None:
    dead = free_port()
    store = cluster.database().replace("postgres@", "postgres:pw-secret@")
    redis_url = redis.url
    if which == "postgres":
        store = f"postgresql://router:pw-secret@127.0.0.1:{dead}/lmrouter"
    else:
        redis_url = f"redis://:pw-secret@127.0.0.1:{dead}/0"
    path = tmp_path / "lmrouter.toml"
    path.write_text(config("http://127.0.0.1:9/v1", store, redis_url))
    done = subprocess.run(
        [LMROUTER, "serve", "--config", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: cannot start: ")
    assert f"127.0.0.1:{dead}" in error and "***" in error and "pw-secret" not in done.stderr
    assert ("Redis" in error) == (which == "redis")
    assert "listening on" not in done.stderr  # refused before anything listened
