"""What a credit hold assumes is what the provider is told (issue #19, finding 1): the real
router (granian) with the accounts, credits and metrics plugins, fake OpenAI and Gemini upstreams,
the official SDKs as clients.

Prices are USD 10 per 1M tokens in and out: 1e7 pico-USD a token, 1000 tokens = USD 0.01."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from lmrouter.testing import operator
from lmrouter.testing.fake_gemini import FakeGemini
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.testing.server import RouterServer

HELLO = [{"role": "user", "content": "Hello!"}]
IMAGE = "https://example.com/cat.png"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc, scope="module")  # one router per store: SQLite, PostgreSQL


def config(openai_url: str, gemini_url: str, store: str = "sqlite:///holds.db") -> str:
    route = (
        '  [[models.routes]]\n  provider = "{}"\n  model = "{}"\n'
        "  price = {{ input = 10, output = 10 }}\n"
    )
    return f"""
[plugins]
disabled = ["ratelimit"]
[storage]
url = "{store}"
[credits]
flush_interval = 0.02
default_max_output_tokens = 1000

[providers.up]
type = "openai"
base_url = "{openai_url}"
api_key = "sk-upstream"

[providers.old]                 # a compatible server that only knows `max_tokens`
type = "openai"
base_url = "{openai_url}"
api_key = "sk-upstream"
max_tokens_field = "max_tokens"

[providers.gem]
type = "google"
base_url = "{gemini_url}"
api_key = "gem-key"

[[models]]
id = "capped"
max_output_tokens = 1000
{route.format("up", "capped-x")}
[[models]]
id = "capped-old"
max_output_tokens = 1000
{route.format("old", "old-x")}
[[models]]
id = "capped-gemini"
max_output_tokens = 1000
{route.format("gem", "gemini-x")}
[[models]]
id = "open"                     # no max_output_tokens: [credits] default_max_output_tokens
{route.format("up", "open-x")}
[[models]]
id = "greedy"                   # a provider that reports far more than it was allowed
max_output_tokens = 1000
{route.format("up", "greedy-x")}
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeGemini]]:
    fake = FakeOpenAI()
    fake.script("greedy-x", Behavior(usage={"prompt_tokens": 10, "completion_tokens": 200_000}))
    gemini = FakeGemini()
    with fake.run_in_thread(), gemini.run_in_thread():
        yield fake, gemini


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory,
    fakes: tuple[FakeOpenAI, FakeGemini],
    module_postgres_url: str | None,
) -> Iterator[RouterServer]:
    fake, gemini = fakes
    workdir = tmp_path_factory.mktemp("holds")
    text = config(fake.base_url, gemini.base_url)
    if module_postgres_url:
        text = config(fake.base_url, gemini.base_url, module_postgres_url)
    with RouterServer(text, workdir=workdir) as server:
        yield server


def user(router: RouterServer, email: str, usd: str) -> str:
    key = operator.user_with_key(router.config_path, email)
    operator.cli(router.config_path, "credits", "grant", email, usd)
    return key


def last_request(fake: FakeOpenAI | FakeGemini, model: str) -> dict:
    found = [
        r.json for r in fake.requests if model in r.path or (r.json or {}).get("model") == model
    ]
    assert found, f"{model} never reached the upstream"
    return found[-1]


def test_the_held_limit_is_sent_upstream_when_the_request_sets_none(
    router: RouterServer, fakes: tuple[FakeOpenAI, FakeGemini]
) -> None:
    fake, gemini = fakes
    key = user(router, "limits@example.com", "5")
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)

    # pass-through, plain and streamed: the model's limit, in OpenAI's own field
    client.chat.completions.create(model="capped", messages=HELLO)
    assert last_request(fake, "capped-x")["max_completion_tokens"] == 1000
    for _ in client.chat.completions.create(model="capped", messages=HELLO, stream=True):
        pass
    sent = last_request(fake, "capped-x")
    assert sent["max_completion_tokens"] == 1000 and sent["stream"] is True
    # the request's own limit is left as it is
    client.chat.completions.create(model="capped", messages=HELLO, max_completion_tokens=7)
    assert last_request(fake, "capped-x")["max_completion_tokens"] == 7

    # a server configured with max_tokens_field = "max_tokens" gets that field, whatever name
    # the request used
    client.chat.completions.create(model="capped-old", messages=HELLO)
    sent = last_request(fake, "old-x")
    assert sent["max_tokens"] == 1000 and "max_completion_tokens" not in sent
    client.chat.completions.create(model="capped-old", messages=HELLO, max_completion_tokens=50)
    sent = last_request(fake, "old-x")
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent

    # Responses, passed through to an OpenAI route: its own field
    client.responses.create(model="capped", input="Hello!")
    assert last_request(fake, "capped-x")["max_output_tokens"] == 1000
    # converted requests: Chat → Gemini
    client.chat.completions.create(model="capped-gemini", messages=HELLO)
    assert last_request(gemini, "gemini-x")["generationConfig"]["maxOutputTokens"] == 1000

    # no limit anywhere: the credits default that was held is what is sent
    client.chat.completions.create(model="open", messages=HELLO)
    assert last_request(fake, "open-x")["max_completion_tokens"] == 1000

    # an Anthropic caller's own max_tokens, converted, stays its own
    claude = anthropic.Anthropic(base_url=router.url, api_key=key, max_retries=0)
    claude.messages.create(model="capped", max_tokens=9, messages=HELLO)
    assert last_request(fake, "capped-x")["max_completion_tokens"] == 9


def test_n_multiplies_the_hold_when_no_limit_is_set(router: RouterServer) -> None:
    # n=1 holds 1000 output tokens (USD 0.01) plus the prompt; n=2 holds twice that
    key = user(router, "choices@example.com", "0.015")
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="open", messages=HELLO, n=2)
    assert refused.value.status_code == 402
    assert "0.02" in refused.value.message  # the hold named: 2 x 1000 tokens + the prompt
    answer = client.chat.completions.create(model="open", messages=HELLO)
    assert answer.choices[0].message.content


def test_images_by_url_are_held_at_a_floor_each(router: RouterServer) -> None:
    key = user(router, "images@example.com", "0.05")
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    parts = [{"type": "image_url", "image_url": {"url": IMAGE}} for _ in range(10)]
    messages = [{"role": "user", "content": [{"type": "text", "text": "Which?"}, *parts]}]
    # ten images are at least 30,000 prompt tokens (USD 0.30), far above the balance
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="open", messages=messages, max_tokens=1)
    assert refused.value.status_code == 402
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Which?"}]}]
    client.chat.completions.create(model="open", messages=text_only, max_tokens=1)


def test_a_write_off_is_logged_counted_and_on_the_usage_record(
    router: RouterServer, store_kind: str
) -> None:
    """The fake reports 200,000 completion tokens (USD 2) whatever limit it was sent: the user
    pays the USD 0.02 they have, and the rest is an event, not a silent loss. (On PostgreSQL
    the write-off is decided by the batched write, against the holds of every process: it is
    logged and recorded then, after the request's metrics were taken.)"""
    key = user(router, "greedy@example.com", "0.02")
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    answer = client.chat.completions.create(model="greedy", messages=HELLO)
    assert answer.usage is not None and answer.usage.completion_tokens == 200_000

    records = httpx.get(f"{router.openai_url}/usage", headers={"authorization": f"Bearer {key}"})
    (record,) = records.json()["data"]
    assert record["cost_usd"] == "2.0001"  # 10 in, 200,000 out
    assert record["charged_usd"] == "0.02"
    assert record["written_off_usd"] == "1.9801"
    assert record["usage_source"] == "provider"

    logged = [
        json.loads(line)
        for line in router.logs().splitlines()
        if line.startswith("{") and "credits written off" in line
    ]
    assert [(e["written_off_usd"], e["model"]) for e in logged] == [("1.9801", "greedy")]
    if store_kind == "postgres":
        return

    with urllib.request.urlopen(f"{router.url}/metrics") as response:
        metrics = response.read().decode()
    found = re.search(
        r'^lmrouter_credits_written_off_usd_total\{model="greedy",provider="up"\} (\S+)$',
        metrics,
        re.M,
    )
    assert found and float(found.group(1)) == pytest.approx(1.9801)
