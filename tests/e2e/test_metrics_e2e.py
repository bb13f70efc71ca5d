"""/metrics end to end: known requests through the real router (both SDKs, streams, a fallback,
a rate-limit refusal), then a scrape parsed with prometheus_client's own parser. Every counter
must match what was sent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer

ADMIN = "sk-metrics-admin"
HELLO = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 4}
# 6 uncached input at $1/M, 4 cached at $0.5/M, 5 output at $2/M
COST_USD = (6 * 1 + 4 * 0.5 + 5 * 2) / 1e6


PRICE = {"input": 1, "output": 2, "cache_read": 0.5}


def metrics_config(upstream: str, *, disabled: list[str], **sections: Any) -> str:
    return kit.config(
        admin=ADMIN,
        providers={"up": kit.provider("openai", upstream), "up2": kit.provider("openai", upstream)},
        models={
            "gpt": kit.route("up", "gpt-x", price=PRICE),
            "fb": [kit.route("up", "down-503"), kit.route("up2", "gpt-x", price=PRICE)],
            "slow": kit.route("up", "slow-up"),
        },
        disabled=disabled,
        routing={"drain_seconds": 0},  # a client that leaves: the upstream is closed at once
        **sections,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.script("gpt-x", Behavior(usage=USAGE))
    fake.script("down-503", Behavior(status=503))
    fake.script("slow-up", Behavior(text="x" * 400, chunk_chars=4, chunk_delay=0.05))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(fake: FakeOpenAI) -> Iterator[RouterServer]:
    # one request at a time per key: a second request while a stream runs is refused
    text = metrics_config(fake.base_url, disabled=["credits"], ratelimit={"max_concurrent": 1})
    with RouterServer(text) as server:
        yield server


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape_until(url: str, ready: Callable[[Samples], bool], wait: float = 30.0) -> Samples:
    """The first scrape for which ``ready`` holds (the last one after ``wait`` seconds): for
    what the router counts just after the client's side is over."""
    deadline = time.monotonic() + wait
    while not ready(samples := scrape(url)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def route(model: str, provider: str, upstream: str, dialect: str) -> dict[str, str]:
    return {"model": model, "provider": provider, "route": upstream, "dialect": dialect}


def test_counters_match_the_requests_sent(router: RouterServer) -> None:
    sdk = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    started = time.monotonic()
    before = scrape(router.url)
    assert value(before, "lmrouter_requests_total") == 0
    for _ in range(3):
        sdk.chat.completions.create(model="gpt", messages=HELLO)
    for _ in range(2):
        assert [c for c in sdk.chat.completions.create(model="gpt", messages=HELLO, stream=True)]
    claude.messages.create(model="gpt", max_tokens=20, messages=HELLO)  # type: ignore[arg-type]
    sdk.chat.completions.create(model="fb", messages=HELLO)  # 503 on its first route

    slow = sdk.chat.completions.create(model="slow", messages=HELLO, stream=True)
    next(iter(slow))
    during = scrape(router.url)
    assert value(during, "lmrouter_active_streams", model="slow") == 1
    with pytest.raises(openai.RateLimitError):  # max_concurrent = 1: refused while it runs
        sdk.chat.completions.create(model="gpt", messages=HELLO)
    slow.close()  # the client goes away mid-stream
    # the router notices, closes the upstream and ends the request: the ninth one counted
    after = scrape_until(router.url, lambda s: value(s, "lmrouter_requests_total") == 9)
    ok = {"status": "ok", "code": "200"}
    chat = route("gpt", "up", "gpt-x", "openai.chat")
    assert value(after, "lmrouter_requests_total", **chat, **ok) == 5, sorted(
        (sorted(k[1]), v) for k, v in after.items() if k[0] == "lmrouter_requests_total"
    )
    messages = route("gpt", "up", "gpt-x", "anthropic.messages")
    assert value(after, "lmrouter_requests_total", **messages, **ok) == 1
    assert (
        value(after, "lmrouter_requests_total", **route("fb", "up2", "gpt-x", "openai.chat")) == 1
    )
    refused = route("gpt", "", "", "openai.chat")
    assert value(after, "lmrouter_requests_total", **refused, status="refused", code="429") == 1
    gone = route("slow", "up", "slow-up", "openai.chat")
    assert value(after, "lmrouter_requests_total", **gone, status="client_disconnected") == 1
    assert value(after, "lmrouter_requests_total") == 9

    # 7 answers from gpt-x (5 chat, 1 messages, 1 after the fallback), the same usage each
    gpt = {"model": "gpt", "provider": "up"}
    assert value(after, "lmrouter_tokens_total", **gpt, type="input") == 6 * 10
    assert value(after, "lmrouter_tokens_total", **gpt, type="output") == 6 * 5
    assert value(after, "lmrouter_tokens_total", **gpt, type="cached") == 6 * 4
    assert value(after, "lmrouter_tokens_total", model="fb", type="input") == 10
    assert value(after, "lmrouter_cost_usd_total", **gpt, billable="true") == pytest.approx(
        6 * COST_USD, rel=1e-9
    )
    assert value(after, "lmrouter_cost_usd_total", model="fb") == pytest.approx(COST_USD)
    assert value(after, "lmrouter_fallbacks_total", model="fb") == 1
    assert value(after, "lmrouter_fallbacks_total", model="gpt") == 0

    # histograms: one observation per request that went upstream / started a response
    assert value(after, "lmrouter_upstream_seconds_count", provider="up") == 6 + 1
    assert value(after, "lmrouter_upstream_seconds_count", provider="up2") == 1
    assert value(after, "lmrouter_overhead_seconds_count", dialect="openai.chat") == 7
    assert value(after, "lmrouter_overhead_seconds_count", dialect="anthropic.messages") == 1
    assert value(after, "lmrouter_time_to_first_token_seconds_count", model="gpt") == 2
    assert value(after, "lmrouter_time_to_first_token_seconds_count", model="slow") == 1
    assert value(after, "lmrouter_request_duration_seconds_count") == 9
    # in seconds, the router's own part of each request's time, and no more time than the test
    # took (at most two of its requests at once): a check of units, not of speed
    overhead = value(after, "lmrouter_overhead_seconds_sum")
    duration = value(after, "lmrouter_request_duration_seconds_sum")
    assert 0 < overhead <= duration <= 2 * (time.monotonic() - started)
    assert value(after, "lmrouter_active_streams", model="slow") == 0
    # the default registry is exported too (process metrics, other plugins' gauges)
    assert any(name == "python_info" for name, _ in after)


def test_requests_refused_before_admission_are_counted(router: RouterServer) -> None:
    before = scrape(router.url)
    wrong = openai.OpenAI(base_url=router.openai_url, api_key="sk-nobody", max_retries=0)
    for _ in range(2):
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="gpt", messages=HELLO)
    sdk = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", messages=HELLO)
    claude = anthropic.Anthropic(base_url=router.url, api_key="sk-nobody", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        claude.messages.create(model="gpt", max_tokens=20, messages=HELLO)  # type: ignore[arg-type]
    after = scrape(router.url)

    def added(**labels: str) -> float:
        name = "lmrouter_requests_refused_total"
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"dialect": "openai.chat"}
    assert added(**chat, status="401", code="invalid_api_key") == 2
    assert added(**chat, status="404", code="model_not_found") == 1
    assert added(dialect="anthropic.messages", status="401") == 1
    assert added() == 4
    # never labelled by the model a caller sent
    assert not any("no-such-model" in str(labels) for _, labels in after)


def test_admin_key_or_loopback_only(router: RouterServer, fake: FakeOpenAI) -> None:
    assert scrape(router.url, authorization=f"Bearer {ADMIN}")  # an operator key
    assert scrape(router.url)  # no key, from loopback
    wrong = httpx.get(f"{router.url}/metrics", headers={"x-api-key": "sk-wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"


def cli(*args: str, config_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_users_key_is_refused(fake: FakeOpenAI) -> None:
    """With accounts and credits: a user's key may not read the metrics, an operator sees the
    user's paid request and the credits plugin's holds gauge (back to 0 once it ended)."""
    server = RouterServer(metrics_config(fake.base_url, disabled=[]))
    try:
        cli("users", "add", "bob@example.com", config_path=server.config_path)
        key = cli("keys", "create", "bob@example.com", config_path=server.config_path)
        cli("credits", "grant", "bob@example.com", "1", config_path=server.config_path)
        server.start()
        answer = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {key}"})
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "permission_denied"
        # the key itself works for requests: it is only not an operator's
        sdk = openai.OpenAI(base_url=server.openai_url, api_key=key, max_retries=0)
        assert sdk.chat.completions.create(model="gpt", messages=HELLO).choices
        samples = scrape(server.url, authorization=f"Bearer {ADMIN}")
        paid = value(samples, "lmrouter_cost_usd_total", model="gpt", billable="true")
        assert paid == pytest.approx(COST_USD)
        assert ("lmrouter_credit_holds_outstanding", frozenset()) in samples
        assert value(samples, "lmrouter_credit_holds_outstanding") == 0
    finally:
        server.__exit__(None, None, None)


def answered_by(folder: Path) -> set[str]:
    """The workers that have counted a request: each writes its own ``counter_<pid>.db``."""
    return {p.stem.split("_")[-1] for p in folder.glob("counter_*.db")}


def send_until_both_workers_answered(server: RouterServer, folder: Path) -> int:
    """Chat requests, each on a fresh connection, until both workers have answered one; the
    number sent. Which worker gets a connection is the kernel's choice, and a worker that
    starts late gets none until then: so send until both have answered, not a fixed count.
    The bound only catches a worker that never serves."""
    sent, deadline = 0, time.monotonic() + 60
    while len(answered_by(folder)) < 2:
        assert time.monotonic() < deadline, f"one worker answered all {sent} requests"
        with httpx.Client() as http:
            answer = http.post(
                f"{server.openai_url}/chat/completions",
                json={"model": "gpt", "messages": HELLO},
                headers={"authorization": f"Bearer {ADMIN}"},
            )
        assert answer.status_code == 200, answer.text
        sent += 1
    return sent


@pytest.mark.parametrize("late_start", [0.0, 3.0], ids=["together", "one-worker-late"])
def test_several_workers_are_summed(
    fake: FakeOpenAI, tmp_path: Path, probe_path: str, late_start: float
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, each worker writes its own files and /metrics sums
    them, whichever worker answers the scrape; also when one worker starts serving seconds
    after the other (the probe plugin holds its start-up back)."""
    folder = tmp_path / "prom"
    folder.mkdir()
    # per-process state that refuses several workers on SQLite: not needed here
    # so are invalid-key counts without Redis (lmrouter.sharing): off here too
    probe = {"late_start": late_start, "late_claim": str(tmp_path / "late")}
    text = metrics_config(
        fake.base_url,
        disabled=["credits", "accounts", "ratelimit"],
        probe=probe,
        server={"auth_failures_per_minute": 0},
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with RouterServer(text, workers=2, env=env, python_path=[probe_path]) as server:
        assert not answered_by(folder), "a worker counts only what it served"
        sent = send_until_both_workers_answered(server, folder)
        assert (tmp_path / "late").exists() == bool(late_start)  # one worker was held back
        for _ in range(4):  # any worker's answer has the same total
            samples = scrape(server.url)
            assert value(samples, "lmrouter_requests_total", status="ok") == sent
            assert value(samples, "lmrouter_tokens_total", type="output") == sent * 5
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # the test process is untouched
