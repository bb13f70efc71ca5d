"""What is Azure's own: URLs, Entra ID tokens (fetched, reused, refreshed before expiry), and
content-filter results and errors, through the real router with the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from lmrouter.testing.server import RouterServer
from lmrouter_azure import AzureConfig, AzureProvider
from lmrouter_azure.fake import Behavior, FakeAzure

KEY = "azure-key-0123456789abcdef"
SECRET = "entra-client-secret-~9876"
ADMIN = "sk-admin-azure"


def provider(**config: Any) -> AzureProvider:
    return AzureProvider("az", AzureConfig(type="azure", **config))


def test_deployment_and_v1_urls() -> None:
    az = provider(base_url="https://res.openai.azure.com/", api_version="2024-10-21")
    assert az.url("openai.chat", "gpt 4o") == (
        "https://res.openai.azure.com/openai/deployments/gpt%204o/chat/completions"
        "?api-version=2024-10-21"
    )
    v1 = provider(base_url="https://res.openai.azure.com/openai/v1", v1=True)
    assert v1.url("openai.embeddings", "emb") == "https://res.openai.azure.com/openai/v1/embeddings"
    assert provider(base_url="https://r.openai.azure.com")._headers(KEY) == {
        "Content-Type": "application/json",
        "api-key": KEY,
    }
    bearer = provider(base_url="https://r.openai.azure.com", auth="entra")._headers("tok")
    assert bearer["Authorization"] == "Bearer tok" and "api-key" not in bearer


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAzure]:
    fake = FakeAzure(api_key=KEY, client_id="app-1", client_secret=SECRET)
    fake.script("filtered", Behavior(text="Some of it", finish_reason="content_filter"))
    fake.script("prompt-filter", Behavior(status=400, error_code="content_filter"))
    fake.script("backup", Behavior(text="from the backup"))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(fake: FakeAzure) -> Iterator[RouterServer]:
    entra = (
        f'auth = "entra"\ntenant_id = "tenant-1"\nclient_id = "app-1"\n'
        f'client_secret = "{SECRET}"\nauthority = "{fake.base_url}"\n'
    )
    providers = {
        "az": f'api_key = "{KEY}"\n',
        "entra-a": entra,
        "entra-b": entra,
    }
    text = f'[auth]\nkeys = ["{ADMIN}"]\n[routing]\nbackoff = 0.01\n'
    for name, extra in providers.items():
        text += f'[providers.{name}]\ntype = "azure"\nbase_url = "{fake.base_url}"\n{extra}'
    models = {
        "gpt": [("az", "gpt-4o")],
        "filtered": [("az", "filtered")],
        "prompt-filter": [("az", "prompt-filter"), ("az", "backup")],
        "via-a": [("entra-a", "gpt-4o")],
        "via-b": [("entra-b", "gpt-4o")],
    }
    for model, routes in models.items():
        text += f'[[models]]\nid = "{model}"\n'
        for name, deployment in routes:
            text += f'  [[models.routes]]\n  provider = "{name}"\n  model = "{deployment}"\n'
    with RouterServer(text) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


HELLO: Any = [{"role": "user", "content": "Hi"}]


def test_deployment_url_and_api_key(client: openai.OpenAI, fake: FakeAzure) -> None:
    fake.reset()
    answer = client.chat.completions.with_raw_response.create(model="gpt", messages=HELLO)
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers
    # Native pass-through: Azure's filter verdicts reach an OpenAI caller as Azure sent them.
    doc = answer.http_response.json()
    assert doc["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert doc["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"


def test_entra_tokens_are_fetched_once_reused_and_refreshed_before_expiry(
    client: openai.OpenAI, fake: FakeAzure, router: RouterServer
) -> None:
    fake.reset()
    fake.issued.clear()
    fake.token_lifetime = 3599
    for _ in range(2):
        assert client.chat.completions.create(model="via-a", messages=HELLO).choices
    assert len(fake.issued) == 1, "a valid token is reused"
    token_calls = [r for r in fake.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1 and token_calls[0].path == "/tenant-1/oauth2/v2.0/token"
    used = [r.headers["authorization"] for r in fake.requests if "deployments" in r.path]
    assert used == [f"Bearer {fake.issued[0]}"] * 2
    assert all("api-key" not in r.headers for r in fake.requests if "deployments" in r.path)
    # Tokens that expire within the refresh margin are replaced before the next request.
    fake.token_lifetime = 300
    for _ in range(2):
        assert client.chat.completions.create(model="via-b", messages=HELLO).choices
    assert len(fake.issued) == 3
    last = [r.headers["authorization"] for r in fake.requests if "deployments" in r.path][-2:]
    assert last == [f"Bearer {fake.issued[1]}", f"Bearer {fake.issued[2]}"]
    assert SECRET not in router.logs()


def test_content_filter_finish_reaches_each_dialect(
    client: openai.OpenAI, router: RouterServer
) -> None:
    whole = client.chat.completions.create(model="filtered", messages=HELLO)
    assert whole.choices[0].finish_reason == "content_filter"
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    message = claude.messages.create(model="filtered", max_tokens=100, messages=HELLO)
    assert message.stop_reason == "refusal"
    assert message.content[0].text == "Some of it"  # type: ignore[union-attr]


def test_prompt_filter_error_is_the_callers_with_azures_words(
    client: openai.OpenAI, fake: FakeAzure, router: RouterServer
) -> None:
    fake.reset()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="prompt-filter", messages=HELLO)
    assert "content management policy" in refused.value.message
    assert not any("backup" in r.path for r in fake.requests), "not the route's fault"
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as also:
        claude.messages.create(model="prompt-filter", max_tokens=100, messages=HELLO)
    assert "content management policy" in also.value.message
