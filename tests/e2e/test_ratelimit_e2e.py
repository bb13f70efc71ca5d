"""Rate limits end to end: the official SDKs → the real router (granian) with the ratelimit
plugin → a fake OpenAI upstream. Each test uses its own operator key (its own limits state), so
the tests of one server do not depend on each other's order."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer, free_port

HELLO = [{"role": "user", "content": "hi"}]
KEYS = [f"sk-rl-{i}" for i in range(8)]
# Limits are the subject here, not credits: the credits plugin (when installed) stays out.
PLUGINS_OFF = ["credits"]


def config(
    upstream: str,
    limits: dict[str, Any],
    *,
    record: Path | None = None,
    keys: list[str] = KEYS,
    disabled: list[str] | None = PLUGINS_OFF,
) -> str:
    sections: dict[str, Any] = {"probe": {"record": str(record)}} if record else {}
    return kit.config(
        admin=keys,
        disabled=disabled,
        routing={"drain_seconds": 0},  # a client that leaves: the upstream is closed at once
        ratelimit=limits,
        providers={"up": kit.provider("openai", upstream)},
        models={
            "gpt": kit.route("up", "gpt-x", price={"input": 1, "output": 2}),
            **{name: kit.route("up", f"{name}-up") for name in ("burst", "exact", "long")},
            "slow": kit.model(kit.route("up", "slow-up"), max_output_tokens=500),
        },
        **sections,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.script("exact-up", Behavior(usage={"prompt_tokens": 150, "completion_tokens": 50}))
    fake.script("long-up", Behavior(usage={"prompt_tokens": 100, "completion_tokens": 1100}))
    # 100 chunks, 60 ms apart: a stream that runs for about 6 s unless it is cut
    fake.script("slow-up", Behavior(text="x" * 400, chunk_chars=4, chunk_delay=0.06))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def rpm_router(fake: FakeOpenAI, probe_path: str, record: Path) -> Iterator[RouterServer]:
    text = config(fake.base_url, {"rpm": 60}, record=record)
    with RouterServer(text, python_path=[probe_path]) as server:
        yield server


@pytest.fixture(scope="module")
def tpm_router(fake: FakeOpenAI) -> Iterator[RouterServer]:
    with RouterServer(config(fake.base_url, {"tpm": 1000})) as server:
        yield server


@pytest.fixture(scope="module")
def slot_router(fake: FakeOpenAI) -> Iterator[RouterServer]:
    with RouterServer(config(fake.base_url, {"max_concurrent": 2})) as server:
        yield server


def client(router: RouterServer, key: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=retries)


def upstream_calls(fake: FakeOpenAI, model: str) -> int:
    return sum(1 for r in fake.requests if r.json and r.json.get("model") == model)


def ends(record: Path, request_ids: set[str]) -> list[dict[str, Any]]:
    """The probe plugin's request_end records of these requests."""
    lines = record.read_text().splitlines() if record.exists() else []
    return [r for r in map(json.loads, lines) if r["request_id"] in request_ids]


# -- requests per minute -------------------------------------------------------------------------


async def burst(url: str, key: str, count: int) -> tuple[list[httpx.Response], float]:
    body = {"model": "burst", "messages": HELLO}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        headers = {"authorization": f"Bearer {key}"}
        await http.get("/health")  # connect before the clock starts
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body, headers=headers) for _ in range(count))
        )
        return list(answers), time.monotonic() - started


def test_sixty_rpm_burst_of_a_hundred(
    rpm_router: RouterServer, fake: FakeOpenAI, record: Path
) -> None:
    """60 rpm with the default burst (a minute's allowance at once): 60 of a simultaneous 100
    pass — plus one per whole second the burst took, as the bucket refills one a second — and
    the rest get 429 with Retry-After. None of the refused reached the upstream or was charged."""
    before = upstream_calls(fake, "burst-up")
    answers, took = asyncio.run(burst(rpm_router.url, KEYS[0], 100))
    passed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(passed) + len(refused) == 100
    if took < 1.0:
        assert len(passed) == 60
    else:  # a slow machine: the refill during the burst is allowed, nothing more
        assert 60 <= len(passed) <= 60 + math.floor(took)
    assert upstream_calls(fake, "burst-up") - before == len(passed)
    for answer in refused:
        error = answer.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
        assert "requests per minute" in error["message"]
        assert 1 <= int(answer.headers["retry-after"]) <= 2
        assert 0 < int(answer.headers["retry-after-ms"]) <= 1000
        assert answer.headers["x-ratelimit-limit-requests"] == "60"
        assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    remaining = sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in passed)
    if len(passed) == 60:
        assert remaining == list(range(60))  # each admitted request saw one fewer left
    else:  # a refill came between two admissions: they saw the same number left
        assert set(remaining) == set(range(60))
    # a refused request ends as "refused", with no usage and no cost
    ids = {a.headers["x-request-id"] for a in refused}
    deadline = time.monotonic() + 5
    while len(ends(record, ids)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    refusals = ends(record, ids)
    assert len(refusals) == len(refused)
    assert all(r["status"] == "refused" and r["http_status"] == 429 for r in refusals)
    assert all(r["usage"] is None and r["cost_pico"] == 0 and r["attempts"] == [] for r in refusals)


def refused_for_ms(sdk: openai.OpenAI) -> int:
    """Requests until one is refused: its Retry-After in milliseconds."""
    for _ in range(100):
        try:
            sdk.chat.completions.create(model="gpt", messages=HELLO)
        except openai.RateLimitError as refused:
            return int(refused.response.headers["retry-after-ms"])
    raise AssertionError("never refused")


def test_sdk_retry_honours_retry_after(fake: FakeOpenAI) -> None:
    """6 rpm: a request every 10 s. The key's allowance is used up (and the next token too,
    when it was due soon), so that the SDK's first try meets a wait of seconds, however slow
    the machine (a 61-request burst at 60 rpm could take over a second, and a refill let the
    SDK's first try through)."""
    key = KEYS[1]
    with RouterServer(config(fake.base_url, {"rpm": 6})) as router:
        sdk = client(router, key)
        started = time.monotonic()  # before the refusal: the next token is wait_ms after it
        wait_ms = refused_for_ms(sdk)
        while wait_ms < 5_000:  # the next token is due soon: take it, the one after is 10 s away
            time.sleep(wait_ms / 1000)
            started = time.monotonic()
            wait_ms = refused_for_ms(sdk)
        assert wait_ms <= 10_000
        response = client(router, key, retries=2).chat.completions.with_raw_response.create(
            model="gpt", messages=HELLO
        )
        took = time.monotonic() - started
    assert response.http_response.status_code == 200
    assert response.retries_taken >= 1, "the SDK was refused first and retried"
    assert took >= wait_ms / 1000 - 0.2, "it waited what Retry-After said"
    assert response.parse().choices[0].message.content


def test_headers_on_successful_responses(rpm_router: RouterServer) -> None:
    response = client(rpm_router, KEYS[2]).chat.completions.with_raw_response.create(
        model="gpt", messages=HELLO
    )
    headers = response.headers
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert headers["x-ratelimit-reset-requests"] in {"1s", "999ms", "998ms"}
    assert "x-ratelimit-limit-tokens" not in headers  # no token limit configured
    stream = client(rpm_router, KEYS[2]).chat.completions.with_raw_response.create(
        model="gpt", messages=HELLO, stream=True
    )
    assert stream.headers["x-ratelimit-remaining-requests"] == "58"
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)


def test_anthropic_dialect_gets_its_own_headers(rpm_router: RouterServer) -> None:
    claude = anthropic.Anthropic(base_url=rpm_router.url, api_key=KEYS[3], max_retries=0)
    response = claude.messages.with_raw_response.create(
        model="gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert response.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "59"
    assert response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert response.headers["x-ratelimit-limit-requests"] == "60"
    assert response.parse().content[0].type == "text"


# -- tokens per minute -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tpm_reservation_is_corrected_to_real_usage(tpm_router: RouterServer, stream: bool) -> None:
    """Each request reserves prompt estimate + max_tokens (about 325 tokens) and really uses
    200 (the upstream says so). Corrected after each request, four fit in 1,000 tokens; without
    the correction only three would. The fifth is refused while real usage (800) plus its
    reservation would cross the limit, with a Retry-After for the tokens still missing."""
    sdk = client(tpm_router, KEYS[2 if stream else 0])
    started = time.monotonic()

    def refilled() -> int:  # tokens the bucket regained since the start (1,000 a minute)
        return math.ceil((time.monotonic() - started) * 1000 / 60) + 1

    def send() -> int:
        answer = sdk.chat.completions.with_raw_response.create(
            model="exact", messages=HELLO, max_tokens=300, stream=stream
        )
        if stream:
            assert [c for c in answer.parse() if c.choices]  # read to the end
        assert answer.headers["x-ratelimit-limit-tokens"] == "1000"
        return int(answer.headers["x-ratelimit-remaining-tokens"])

    reserved = 1000 - send()  # the bucket was full: exact
    assert 300 < reserved < 400, "the prompt's estimate plus max_tokens"
    for n in (1, 2, 3):  # n requests of 200 real tokens are behind this one
        floor = 1000 - 200 * n - reserved
        assert floor <= send() <= floor + refilled(), f"request {n + 1}: corrected"
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="exact", messages=HELLO, max_tokens=300, stream=stream)
    headers = info.value.response.headers
    free = int(headers["x-ratelimit-remaining-tokens"])
    assert 200 <= free <= 200 + refilled()
    assert "tokens per minute" in info.value.message
    wait_ms = int(headers["retry-after-ms"])
    expected_ms = (reserved - free) * 60  # 1,000 tokens a minute: 60 ms a token
    assert expected_ms - 60 <= wait_ms <= expected_ms + 60
    assert int(headers["retry-after"]) == math.ceil(wait_ms / 1000)


def test_usage_beyond_the_reservation_is_charged(tpm_router: RouterServer) -> None:
    """The upstream reports 1,200 tokens for a request that reserved about 325: the difference
    is charged, so the key is over its limit and waits until the excess has drained."""
    sdk = client(tpm_router, KEYS[1])
    started = time.monotonic()
    first = sdk.chat.completions.with_raw_response.create(
        model="long", messages=HELLO, max_tokens=300
    )
    reserved = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="long", messages=HELLO, max_tokens=300)
    headers = info.value.response.headers
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    # 1,200 used + this reservation - 1,000 allowed must drain first, at 60 ms a token, less
    # what drained while the two requests ran (more than a second on a busy machine)
    expected = (1200 + reserved - 1000) * 0.060
    drained = time.monotonic() - started
    assert expected - drained - 1 <= int(headers["retry-after"]) <= expected + 1


# -- concurrent requests -----------------------------------------------------------------------


def open_stream(sdk: openai.OpenAI) -> Any:
    stream = sdk.chat.completions.create(model="slow", messages=HELLO, stream=True)
    first = next(iter(stream))  # admitted and streaming
    assert first.choices[0].delta.role == "assistant" or first.choices[0].delta.content
    return stream


def admitted_within(sdk: openai.OpenAI, seconds: float) -> float:
    """Retry a short request until it is admitted; how long that took."""
    started = time.monotonic()
    while True:
        try:
            sdk.chat.completions.create(model="gpt", messages=HELLO)
            return time.monotonic() - started
        except openai.RateLimitError:
            if time.monotonic() - started > seconds:
                raise
            time.sleep(0.02)


def test_third_stream_is_refused_and_slots_come_back(
    slot_router: RouterServer, fake: FakeOpenAI
) -> None:
    sdk = client(slot_router, KEYS[0])
    first, second = open_stream(sdk), open_stream(sdk)
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="slow", messages=HELLO, stream=True)
    assert "Too many requests at once: limit 2" in info.value.message
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.code == "rate_limit_exceeded"

    # a client that disconnects mid-stream frees its slot at once
    disconnects = len(fake.disconnects)
    first.close()
    assert admitted_within(sdk, 3.0) < 3.0
    deadline = time.monotonic() + 3
    while len(fake.disconnects) == disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(fake.disconnects) == disconnects + 1, "the router closed its upstream too"

    # the slot the short request used is free again; the second stream still holds one
    third = open_stream(sdk)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt", messages=HELLO)

    # a stream that runs to its end frees its slot
    text = "".join(c.choices[0].delta.content or "" for c in second if c.choices)
    assert text == "x" * 400
    assert admitted_within(sdk, 3.0) < 3.0
    third.close()
    # both slots free: two requests at once are admitted again
    assert admitted_within(sdk, 3.0) < 3.0
    fourth, fifth = open_stream(sdk), open_stream(sdk)
    fourth.close()
    fifth.close()


def test_anthropic_dialect_gets_its_own_error_shape(slot_router: RouterServer) -> None:
    sdk = client(slot_router, KEYS[1])
    held = [open_stream(sdk), open_stream(sdk)]
    claude = anthropic.Anthropic(base_url=slot_router.url, api_key=KEYS[1], max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(
            model="slow", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    body = info.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "Too many requests at once" in body["error"]["message"]
    assert info.value.response.headers["retry-after"] == "1"
    for stream in held:
        stream.close()


# -- per-key limits (accounts plugin) and several workers --------------------------------------


def cli(*args: str, config_path: Path, whole: bool = False) -> str:
    """Run an ``lmrouter`` command: its last line of output (a new key), or all of it."""
    done = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout if whole else done.stdout.strip().splitlines()[-1]


def test_per_key_limits_override_the_defaults(fake: FakeOpenAI) -> None:
    server = RouterServer(config(fake.base_url, {"rpm": 5}, keys=[]))
    try:
        path = server.config_path
        cli("users", "add", "ada@example.com", config_path=path)
        strict = cli("keys", "create", "ada@example.com", "--rpm", "2", config_path=path)
        default = cli("keys", "create", "ada@example.com", config_path=path)
        free = cli("keys", "create", "ada@example.com", "--rpm", "0", config_path=path)
        server.start()
        answers = asyncio.run(burst(server.url, strict, 4))[0]
        assert [a.status_code for a in answers].count(200) == 2
        assert {a.headers["x-ratelimit-limit-requests"] for a in answers} == {"2"}
        answers = asyncio.run(burst(server.url, default, 7))[0]
        assert [a.status_code for a in answers].count(200) == 5
        answers = asyncio.run(burst(server.url, free, 10))[0]
        assert all(a.status_code == 200 for a in answers)
        assert all("x-ratelimit-limit-requests" not in a.headers for a in answers)
    finally:
        server.__exit__(None, None, None)


def test_a_refused_request_holds_and_charges_nothing(fake: FakeOpenAI) -> None:
    """With accounts and credits: a key limited to 1 rpm pays for its one request; the second
    is refused before the credit hold, so the balance only ever shows the first one's cost. A
    key with no credits at all is told 429, not 402, once over its limit: the limit is checked
    first."""
    server = RouterServer(config(fake.base_url, {}, keys=[], disabled=None))
    try:
        path = server.config_path
        cli("users", "add", "eve@example.com", config_path=path)
        key = cli("keys", "create", "eve@example.com", "--rpm", "1", config_path=path)
        cli("credits", "grant", "eve@example.com", "1", config_path=path)
        cli("users", "add", "mal@example.com", config_path=path)
        broke = cli("keys", "create", "mal@example.com", "--rpm", "1", config_path=path)
        server.start()
        with pytest.raises(openai.APIStatusError) as no_credits:
            client(server, broke).chat.completions.create(model="gpt", messages=HELLO)
        assert no_credits.value.status_code == 402
        assert no_credits.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError):
            client(server, broke).chat.completions.create(model="gpt", messages=HELLO)
        sdk = client(server, key)
        paid = sdk.chat.completions.create(model="gpt", messages=HELLO)
        assert paid.usage is not None and paid.usage.model_extra is not None
        cost = Decimal(str(paid.usage.model_extra["cost"]))
        assert cost > 0
        with pytest.raises(openai.RateLimitError) as info:
            sdk.chat.completions.create(model="gpt", messages=HELLO)
        assert info.value.code == "rate_limit_exceeded"
        server.stop()  # the credits plugin writes what it has queued
        shown = json.loads(
            cli("credits", "show", "eve@example.com", "--json", config_path=path, whole=True)
        )
        assert Decimal(shown["balance_usd"]) == 1 - cost
    finally:
        server.__exit__(None, None, None)


def test_several_workers_refuse_to_start(tmp_path: Path) -> None:
    path = tmp_path / "lmrouter.toml"
    path.write_text(
        '[plugins]\ndisabled = ["accounts", "credits"]\n[auth]\nkeys = ["sk-x"]\n'
        "[ratelimit]\nrpm = 60\n"
    )
    command = [sys.executable, "-m", "lmrouter.cli", "serve", "--config", str(path)]
    command += ["--port", str(free_port()), "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "2 workers need every per-process piece" in done.stderr
    assert "'memory' rate-limit backend" in done.stderr and "lmrouter-redis" in done.stderr
    assert "Listening" not in done.stderr + done.stdout  # refused before any worker started
