"""What two router hosts on one PostgreSQL database and one Redis share besides the limits: a key
revoked through one is refused by the other within a second, a dashboard session made on one
works on the other, and the sign-in and sign-up throttles and the invalid-key counts per client
address count attempts made on either."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_dashboard.testing import DashboardClient

PASSWORD = "correct battery staple horse"
OPERATOR = "sk-operator-shared"
REVOCATION_BOUND = 1.0  # seconds: the promise ("within a second")


def two_hosts_config(upstream: str, store: str, redis: str, *, failures: int = 60) -> str:
    return f"""
[server]
auth_failures_per_minute = {failures}
[auth]
keys = ["{OPERATOR}"]
[storage]
url = "{store}"
[redis]
url = "{redis}"
[ratelimit]
backend = "redis"
rpm = 1000
[accounts]
secret = "a-test-secret-of-enough-length"
[dashboard]
signups_per_hour = 2
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


@pytest.fixture
def hosts(fake: FakeOpenAI, postgres_url: str, redis_url: str) -> Iterator[list[RouterServer]]:
    text = two_hosts_config(fake.base_url, postgres_url, redis_url)
    with RouterServer(text) as one, RouterServer(text) as two:
        yield [one, two]


def chat(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


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
        assert chat(one.url, OPERATOR).status_code == 200
        for server in (one, two, one, two):
            assert chat(server.url, "sk-lmr-" + "x" * 43).status_code == 401
        # the shared count lands just after each answer: wait for it, with a bound
        deadline = time.monotonic() + 10
        while chat(two.url, OPERATOR).status_code != 429:
            assert time.monotonic() < deadline, "host two never saw the address's 4 failures"
        refused = chat(two.url, OPERATOR)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        # host one counted 3 of them when it last asked: one more failure there locks it too
        assert chat(one.url, "sk-lmr-" + "y" * 43).status_code == 401
        deadline = time.monotonic() + 10
        while chat(one.url, OPERATOR).status_code != 429:
            assert time.monotonic() < deadline, "host one never saw the address's 5 failures"
