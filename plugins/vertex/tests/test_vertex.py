"""What is Vertex's own: URLs, the Claude body, and service-account credentials through
google-auth against a fake token endpoint (signed assertions, tokens reused while valid and
refreshed before they expire), through the real router with the official SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lmrouter.testing.fake_anthropic import Behavior
from lmrouter.testing.server import RouterServer
from lmrouter_vertex.fake import FakeVertexAnthropic, FakeVertexGemini, ServiceAccount

ADMIN = "sk-admin-vertex"
EMAIL = "router@my-project.iam.gserviceaccount.com"
HELLO: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def key_pem() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def fakes(key_pem: tuple[str, str]) -> Iterator[tuple[FakeVertexGemini, FakeVertexAnthropic]]:
    account = ServiceAccount(EMAIL, key_pem[1])
    gemini = FakeVertexGemini(account=account)
    claude = FakeVertexAnthropic(account=account)
    claude.script("claude-sonnet-4@20250514", Behavior(text="Claude on Vertex."))
    with gemini.run_in_thread(), claude.run_in_thread():
        yield gemini, claude


def account_file(tmp: Path, fake: Any, private_pem: str, name: str) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "my-project",
                "private_key_id": "0123456789abcdef",
                "private_key": private_pem,
                "client_email": EMAIL,
                "client_id": "1234567890",
                "token_uri": fake.token_uri,
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def router(
    fakes: tuple[FakeVertexGemini, FakeVertexAnthropic],
    key_pem: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RouterServer]:
    gemini, claude = fakes
    tmp = tmp_path_factory.mktemp("vertex")
    text = f'[auth]\nkeys = ["{ADMIN}"]\n'
    for name, fake, kind, location in (
        ("gem-a", gemini, "vertex", "us-central1"),
        ("gem-b", gemini, "vertex", "us-central1"),
        ("claude", claude, "vertex-anthropic", "us-east5"),
    ):
        path = account_file(tmp, fake, key_pem[0], name)
        text += (
            f'[providers.{name}]\ntype = "{kind}"\nbase_url = "{fake.base_url}"\n'
            f'project = "my-project"\nlocation = "{location}"\ncredentials_file = "{path}"\n'
        )
    for model, provider, upstream in (
        ("gem-a", "gem-a", "gemini-2.5-flash"),
        ("gem-b", "gem-b", "gemini-2.5-flash"),
        ("claude", "claude", "claude-sonnet-4@20250514"),
    ):
        text += f'[[models]]\nid = "{model}"\n  [[models.routes]]\n'
        text += f'  provider = "{provider}"\n  model = "{upstream}"\n'
    with RouterServer(text) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


def test_service_account_tokens_are_reused_and_refreshed_before_expiry(
    client: openai.OpenAI,
    fakes: tuple[FakeVertexGemini, FakeVertexAnthropic],
    router: RouterServer,
    key_pem: tuple[str, str],
) -> None:
    gemini, _ = fakes
    gemini.reset()
    gemini.issued.clear()
    gemini.token_lifetime = 3599
    for _ in range(2):
        assert client.chat.completions.create(model="gem-a", messages=HELLO).choices
    assert len(gemini.issued) == 1, "a valid token is reused"
    calls = [r for r in gemini.requests if r.path != "/token"]
    assert [r.path for r in calls] == [
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    ] * 2
    assert {r.headers["authorization"] for r in calls} == {f"Bearer {gemini.issued[0]}"}
    # A token that lapses within google-auth's margin (3 min 45 s) is replaced before use.
    gemini.token_lifetime = 120
    for _ in range(2):
        assert client.chat.completions.create(model="gem-b", messages=HELLO).choices
    assert len(gemini.issued) == 3
    last = [r.headers["authorization"] for r in gemini.requests if r.path != "/token"][-2:]
    assert last == [f"Bearer {gemini.issued[1]}", f"Bearer {gemini.issued[2]}"]
    private_line = key_pem[0].splitlines()[1]
    assert private_line not in router.logs()


def test_claude_on_vertex_body_and_url(
    router: RouterServer, fakes: tuple[FakeVertexGemini, FakeVertexAnthropic]
) -> None:
    _, claude = fakes
    claude.reset()
    sdk = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    message = sdk.messages.create(model="claude", max_tokens=100, messages=HELLO)
    assert message.content[0].text == "Claude on Vertex."  # type: ignore[union-attr]
    [sent] = [r for r in claude.requests if r.path != "/token"]
    assert sent.path == (
        "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4@20250514:rawPredict"
    )
    assert sent.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent.json
    assert "x-api-key" not in sent.headers and sent.headers["authorization"].startswith(
        "Bearer ya29."
    )


def test_a_wrong_service_account_key_fails_over_without_showing_it(
    tmp_path: Path, fakes: tuple[FakeVertexGemini, FakeVertexAnthropic]
) -> None:
    gemini, _ = fakes
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = account_file(tmp_path, gemini, wrong, "wrong")
    text = (
        f'[auth]\nkeys = ["{ADMIN}"]\n[providers.bad]\ntype = "vertex"\n'
        f'base_url = "{gemini.base_url}"\nproject = "my-project"\ncredentials_file = "{path}"\n'
        f'[providers.good]\ntype = "vertex"\nbase_url = "{gemini.base_url}"\n'
        f'project = "my-project"\napi_key = "static-token"\n'
        '[[models]]\nid = "m"\n  [[models.routes]]\n  provider = "bad"\n  model = "g"\n'
        '  [[models.routes]]\n  provider = "good"\n  model = "g"\n'
    )
    gemini.token = "static-token"
    gemini.reset()
    try:
        with RouterServer(text) as server:
            sdk = openai.OpenAI(base_url=server.openai_url, api_key=ADMIN, max_retries=0)
            answer = sdk.chat.completions.with_raw_response.create(model="m", messages=HELLO)
            assert answer.http_response.status_code == 200
            # The bad account's assertion was refused at the token endpoint; nothing reached the
            # model with it, and the next route (a static token) answered.
            assert gemini.requests[0].path == "/token"
            calls = [r for r in gemini.requests if r.path != "/token"]
            assert [r.headers["authorization"] for r in calls] == ["Bearer static-token"]
            assert wrong.splitlines()[1] not in server.logs()
    finally:
        gemini.token = None
