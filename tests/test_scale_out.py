"""Several workers and several hosts (issue #16): which configurations are accepted (exactly
those where every per-process piece has a shared backend); across two router servers and a
two-worker one on one PostgreSQL database and one Redis, the rate limits held exactly, a key
revoked through one host refused by the other within a second, a dashboard session made on one
working on the other, sign-in, sign-up and invalid-key counts added up over all; and when
PostgreSQL or Redis goes away: one clear error at start, 503 in the caller's dialect and
``/health`` not ready while serving, recovery by itself when it is back."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lmrouter.config import ConfigError
from lmrouter.gateway import load
from lmrouter.testing import operator
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter.testing.servers import PostgresCluster, RedisServer, free_port
from lmrouter_dashboard.testing import DashboardClient

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


def test_credits_accept_several_workers_on_a_server_database(tmp_path: Path) -> None:
    """The holds live in the database there, shared by every process (lmrouter_credits.holds)."""
    config, _ = load(write(tmp_path, settings(PG, workers=2, disabled=[], backend="redis")))
    assert config.server.workers == 2


def test_credits_refuse_several_workers_on_sqlite_naming_what_is_missing(tmp_path: Path) -> None:
    text = refusal(
        tmp_path,
        settings("sqlite:///x.db", workers=2, disabled=["accounts"], backend="redis"),
    )
    assert "server.workers" in text and "credit hold" in text and "2 workers" in text
    assert "postgresql://" in text  # what is missing: a store every process shares


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


def router_config(
    upstream: str, store: str, redis: str, *, rpm: int = 60, credits: bool = False, extra: str = ""
) -> str:
    """A router on ``store`` and ``redis`` with an operator key (KEY), ``rpm`` for every key, and
    the credits plugin (with Stripe and the dashboard, which need it) only when asked."""
    disabled = (
        [] if credits else ["credits", "stripe"]
    )  # Stripe credits purchases: it needs credits
    return f"""
[plugins]
disabled = {json.dumps(disabled)}
[storage]
url = "{store}"
[auth]
keys = ["{KEY}"]
[redis]
url = "{redis}"
[ratelimit]
rpm = {rpm}
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
{extra}"""


def chat(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


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


# -- what else the hosts share: revocation, sessions, throttles --------------------------------

PASSWORD = "correct battery staple horse"
REVOCATION_BOUND = 1.0  # seconds: the promise ("within a second")


def two_hosts_config(upstream: str, store: str, redis: str, *, failures: int = 60) -> str:
    """Accounts, credits and the dashboard on; limits high enough not to matter."""
    extra = f"""
[server]
auth_failures_per_minute = {failures}
[accounts]
secret = "a-test-secret-of-enough-length"
[dashboard]
signups_per_hour = 2
"""
    return router_config(upstream, store, redis, rpm=1000, credits=True, extra=extra)


@pytest.fixture
def hosts(fake: FakeOpenAI, postgres_url: str, redis_url: str) -> Iterator[list[RouterServer]]:
    text = two_hosts_config(fake.base_url, postgres_url, redis_url)
    with RouterServer(text) as one, RouterServer(text) as two:
        yield [one, two]


def test_session_and_revocation_cross_hosts(hosts: list[RouterServer]) -> None:
    one, two = hosts
    with DashboardClient(one.url) as on_one, DashboardClient(two.url) as on_two:
        assert on_one.signup("ann@example.com", PASSWORD).status_code == 303
        key = on_one.create_key("cross")
        # the session cookie made on one is a session on two (it lives in the database)
        on_two.http.cookies = on_one.http.cookies
        keys_page = on_two.get("/dashboard/keys")
        assert keys_page.status_code == 200 and "cross" in keys_page.text
        assert chat(one.url, key).status_code == chat(two.url, key).status_code == 200
        found = re.search(r'action="(/dashboard/keys/[^"/]+/revoke)"', keys_page.text)
        assert found, keys_page.text
        # revoked through host two, in the session made on host one
        revoked = on_two.post(found.group(1), {"confirm": "yes"}, page="/dashboard/keys")
        assert revoked.status_code == 303, revoked.text
    revoked_at = time.monotonic()
    # both hosts had the key cached: both must refuse it within the bound
    answers: dict[str, int] = {}
    while time.monotonic() - revoked_at < REVOCATION_BOUND and len(answers) < 2:
        for name, server in (("one", one), ("two", two)):
            if name not in answers and chat(server.url, key).status_code == 401:
                answers[name] = 401
    assert answers == {"one": 401, "two": 401}, "a revoked key was still served after 1 s"


def test_sign_in_and_sign_up_throttles_count_on_every_host(hosts: list[RouterServer]) -> None:
    one, two = hosts
    # [dashboard] signups_per_hour = 2 per client address: one here, one there, then none
    for server, email, status in (
        (one, "first@example.com", 303),
        (two, "second@example.com", 303),
        (one, "third@example.com", 429),
    ):
        with DashboardClient(server.url) as client:
            answer = client.signup(email, PASSWORD)
            assert answer.status_code == status
    assert "sign-ups" in answer.text
    # five wrong passwords for one address, spread over both hosts, lock it on both
    with DashboardClient(one.url) as x, DashboardClient(two.url) as y:
        for attempt in range(5):
            client = (x, y)[attempt % 2]
            assert client.login("first@example.com", "wrong " + PASSWORD).status_code == 400
        for client in (x, y):  # even the right password waits now
            locked = client.login("first@example.com", PASSWORD)
            assert locked.status_code == 429 and "Retry-After" in locked.headers


def test_invalid_keys_count_on_every_host(
    fake: FakeOpenAI, postgres_url: str, redis_url: str
) -> None:
    """[server] auth_failures_per_minute = 4: two bad keys on each host lock the address out on
    both (each alone saw two, under its limit)."""
    text = two_hosts_config(fake.base_url, postgres_url, redis_url, failures=4)
    with RouterServer(text) as one, RouterServer(text) as two:
        assert chat(one.url, KEY).status_code == 200
        for server in (one, two, one, two):
            assert chat(server.url, "sk-lmr-" + "x" * 43).status_code == 401
        # the shared count lands just after each answer: wait for it, with a bound
        deadline = time.monotonic() + 10
        while chat(two.url, KEY).status_code != 429:
            assert time.monotonic() < deadline, "host two never saw the address's 4 failures"
        refused = chat(two.url, KEY)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        # host one counted 3 of them when it last asked: one more failure there locks it too
        assert chat(one.url, "sk-lmr-" + "y" * 43).status_code == 401
        deadline = time.monotonic() + 10
        while chat(one.url, KEY).status_code != 429:
            assert time.monotonic() < deadline, "host one never saw the address's 5 failures"


# -- a backend away: at start, while serving, and back -------------------------------------

LMROUTER = str(Path(sys.executable).with_name("lmrouter"))  # the installed command
BOUND = 30.0  # seconds: the most a condition may take to show (a restart included)


# The outage tests stop their servers: their own, so that no other test sees it.


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


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
    answer = chat(base, key)
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
    fake: FakeOpenAI, own_postgres: PostgresCluster, own_redis: RedisServer
) -> None:
    with RouterServer(
        router_config(fake.base_url, own_postgres.database(), own_redis.url, rpm=1000)
    ) as server:
        assert chat(server.url, KEY).status_code == 200
        served = len(fake.requests)
        own_redis.stop()
        down = health(server.url)
        assert down.status_code == 503
        assert down.json()["redis"].startswith("unavailable: redis://127.0.0.1:")
        assert down.json()["store"] == "ok" and down.json()["status"] == "unavailable"
        assert_unavailable_in_each_dialect(server.url, KEY)
        assert len(fake.requests) == served  # no request went through unlimited
        own_redis.start()  # the same port, empty (as a Redis without persistence restarts)
        wait_for(lambda: health(server.url).status_code == 200, "health back to 200")
        assert chat(server.url, KEY).status_code == 200
        assert anthropic_messages(server.url, KEY).status_code == 200


def test_postgres_away_fails_closed_and_recovers(
    fake: FakeOpenAI, own_postgres: PostgresCluster, own_redis: RedisServer
) -> None:
    with RouterServer(
        router_config(fake.base_url, own_postgres.database(), own_redis.url, rpm=1000)
    ) as server:
        cached = operator.user_with_key(server.config_path, "cached@example.com")
        fresh = operator.user_with_key(server.config_path, "fresh@example.com")
        assert chat(server.url, cached).status_code == 200  # now in the key cache
        own_postgres.pause()
        try:
            down = health(server.url)
            assert down.status_code == 503
            assert down.json()["store"] == "unavailable" and down.json()["redis"] == "ok"
            # a key never seen: no way to check it
            assert chat(server.url, fresh).status_code == 503
            # a cached key: refused once the cache is older than a revocation may be (a
            # second: until then it is served, as a key revoked that second would be)
            wait_for(
                lambda: chat(server.url, cached).status_code == 503,
                "a cached key refused while the database is away",
            )
            served = len(fake.requests)
            assert_unavailable_in_each_dialect(server.url, cached)
            assert len(fake.requests) == served
        finally:
            own_postgres.resume()
        wait_for(lambda: health(server.url).status_code == 200, "health back to 200")
        wait_for(lambda: chat(server.url, cached).status_code == 200, "the cached key again")
        assert chat(server.url, fresh).status_code == 200


@pytest.mark.parametrize("which", ["postgres", "redis"])
def test_unreachable_at_start_is_one_clear_error(
    tmp_path: Path, own_postgres: PostgresCluster, own_redis: RedisServer, which: str
) -> None:
    dead = free_port()
    store = own_postgres.database().replace("postgres@", "postgres:pw-secret@")
    redis_url = own_redis.url
    if which == "postgres":
        store = f"postgresql://router:pw-secret@127.0.0.1:{dead}/lmrouter"
    else:
        redis_url = f"redis://:pw-secret@127.0.0.1:{dead}/0"
    path = tmp_path / "lmrouter.toml"
    path.write_text(router_config("http://127.0.0.1:9/v1", store, redis_url))
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
