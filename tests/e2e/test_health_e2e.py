"""``/health`` against the real router: a caller's own provider key (BYOK) that the provider
refuses says nothing about the provider, so it never marks the shared provider as failing; and
the providers' error messages (which may quote a caller's masked key) are for operators only."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer

ADMIN = "sk-admin-health-e2e"
UPSTREAM_KEY = "sk-upstream-health-42"
HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture(scope="module")
def router() -> Iterator[RouterServer]:
    fake = FakeOpenAI(api_key=UPSTREAM_KEY)
    fake.script("gpt-x", Behavior(text="Hi"))
    with fake.run_in_thread() as base_url:
        text = kit.config(
            admin=ADMIN,
            disabled=kit.STATEFUL_EXCEPT_ACCOUNTS,
            storage={"url": "sqlite:///health.db"},
            accounts={"allow_anonymous_byok": True},
            providers={"up": kit.provider("openai", base_url, UPSTREAM_KEY, byok=True)},
            models={"gpt": kit.route("up", "gpt-x")},
        )
        with RouterServer(text) as server:
            yield server


def test_byok_keys_the_provider_refuses_do_not_make_it_failing(router: RouterServer) -> None:
    wrong = openai.OpenAI(
        base_url=router.openai_url, api_key="BYOK:sk-not-a-real-key-0000", max_retries=0
    )
    for _ in range(5):
        with pytest.raises(openai.APIStatusError):
            wrong.chat.completions.create(model="gpt", messages=HELLO)
    as_operator = {"authorization": f"Bearer {ADMIN}"}
    report = httpx.get(f"{router.url}/health", headers=as_operator).json()
    assert report["status"] == "ok"
    assert report["providers"]["up"]["status"] != "failing"
    assert report["providers"]["up"]["consecutive_failures"] == 0
    # the provider itself still serves everyone else
    ours = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    assert ours.chat.completions.create(model="gpt", messages=HELLO).choices[0].message.content
