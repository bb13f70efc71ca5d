"""Claude Code on any model: its request (``tests/fixtures/claude_code_request.json``, built from
what Claude Code 2.1 sends) replayed byte for byte through the real router to an Anthropic, an
OpenAI and a Gemini route, and ``/v1/messages/count_tokens`` on each. Checked: the stream the
client gets, and what reached each fake upstream (the mid-conversation system message kept as
system text, the beta header only where Anthropic reads it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.server import RouterServer

ADMIN = "sk-claude-code"
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "claude_code_request.json").read_text())
MID_CONVERSATION = FIXTURE["body"]["messages"][1]["content"]
ROUTES = {  # model id: (fake, upstream model)
    "anthropic/claude-sonnet-4-5": ("ant", "claude-sonnet-4-5"),
    "openai/gpt-4o-mini": ("oai", "gpt-4o-mini"),
    "google/gemini-2.5-flash": ("gem", "gemini-2.5-flash"),
    "compat/llama": ("oai", "llama-3.3-70b"),  # the config says it does not reason
    "compat/qwq": ("oai", "qwq-32b"),  # nobody says: reasoning settings go as asked
}
CAPABILITIES = {  # [[models]] keys
    "openai/gpt-4o-mini": "max_output_tokens = 16384\n",
    "compat/llama": "reasoning = false\n",
}
MODELS = list(ROUTES)[:3]


class Fakes:
    def __init__(self) -> None:
        self.oai = fake_openai.FakeOpenAI()
        self.ant = fake_anthropic.FakeAnthropic()
        self.gem = fake_gemini.FakeGemini()

    def last(self, model: str) -> Any:
        fake = getattr(self, ROUTES[model][0])
        assert fake.requests, f"nothing reached {ROUTES[model][0]}"
        return fake.requests[-1]


@pytest.fixture(scope="module")
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture(scope="module")
def router(fakes: Fakes) -> Iterator[RouterServer]:
    kinds = {"oai": "openai", "ant": "anthropic", "gem": "google"}
    with (
        fakes.oai.run_in_thread() as oai,
        fakes.ant.run_in_thread() as ant,
        fakes.gem.run_in_thread() as gem,
    ):
        urls = {"oai": oai, "ant": ant, "gem": gem}
        text = f'[auth]\nkeys = ["{ADMIN}"]\n'
        for name, url in urls.items():
            text += f'[providers.{name}]\ntype = "{kinds[name]}"\nbase_url = "{url}"\n'
        for model, (fake, upstream) in ROUTES.items():
            text += (
                f'[[models]]\nid = "{model}"\n{CAPABILITIES.get(model, "")}'
                f'[[models.routes]]\nprovider = "{fake}"\nmodel = "{upstream}"\n'
            )
        with RouterServer(text) as server:
            yield server


def replay(
    router: RouterServer, model: str, path: str = "/v1/messages", **changes: Any
) -> httpx.Response:
    body = {**FIXTURE["body"], "model": model, **changes}
    if path.endswith("count_tokens"):  # what the SDK's count_tokens sends: no output settings
        body = {k: body[k] for k in ("model", "messages", "system", "tools", "thinking")}
    headers = {**FIXTURE["headers"], "x-api-key": ADMIN}
    return httpx.post(router.url + path, content=json.dumps(body), headers=headers, timeout=30)


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_request_streams_on_every_route(
    router: RouterServer, fakes: Fakes, model: str
) -> None:
    response = replay(router, model)
    assert response.status_code == 200, response.text
    stream = events(response)
    names = [name for name, _ in stream]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "error" not in names
    text = "".join(
        data["delta"].get("text", "") for name, data in stream if name == "content_block_delta"
    )
    assert "Hello" in text  # the fakes' answer to the last user turn
    sent = fakes.last(model)
    beta = sent.headers.get("anthropic-beta")
    if model.startswith("anthropic/"):  # passed through as Claude Code sent it
        assert beta == FIXTURE["headers"]["anthropic-beta"]
        assert sent.json == {**FIXTURE["body"], "model": ROUTES[model][1]}
        return
    assert beta is None  # Anthropic's betas mean nothing to other providers
    if model.startswith("openai/"):
        # gpt-4o-mini takes no reasoning settings and at most 16384 output tokens: what Claude
        # Code asks of every model is fitted to it, and the response says what was clamped.
        assert "reasoning_effort" not in sent.json
        assert sent.json["max_completion_tokens"] == 16384
        assert response.headers["x-lmrouter-max-tokens-clamped"] == "16384; requested=32000"
        messages = sent.json["messages"]
        assert messages[0]["role"] == "system"
        assert "You are Claude Code" in messages[0]["content"]
        assert MID_CONVERSATION in messages[0]["content"]
        assert [m["role"] for m in messages[1:]] == ["user", "assistant", "tool"]
        assert messages[3]["content"] == "Hello, world!"
    else:
        system = " ".join(part["text"] for part in sent.json["systemInstruction"]["parts"])
        assert "You are Claude Code" in system and MID_CONVERSATION in system
        roles = [content["role"] for content in sent.json["contents"]]
        assert roles == ["user", "model", "user"]
        # effort "high" as a budget Gemini 2.5 Flash takes
        assert sent.json["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576}
        assert "x-lmrouter-max-tokens-clamped" not in response.headers  # no cap configured


def test_thinking_budget_within_the_models_range(router: RouterServer, fakes: Fakes) -> None:
    """Claude Code's budgets near 32k are above Gemini 2.5 Flash's most (24576): clamped."""
    thinking = {"type": "enabled", "budget_tokens": 31999}
    response = replay(router, "google/gemini-2.5-flash", thinking=thinking, output_config={})
    assert response.status_code == 200, response.text
    config = fakes.last("google/gemini-2.5-flash").json["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    assert config["maxOutputTokens"] == 32000


@pytest.mark.parametrize(("model", "sent"), [("compat/llama", False), ("compat/qwq", True)])
def test_reasoning_setting_of_the_model(
    router: RouterServer, fakes: Fakes, model: str, sent: bool
) -> None:
    response = replay(router, model)
    assert response.status_code == 200, response.text
    body = fakes.last(model).json
    assert ("reasoning_effort" in body) is sent
    if sent:
        assert body["reasoning_effort"] == "high"


@pytest.mark.parametrize(
    ("model", "how"),
    [
        ("anthropic/claude-sonnet-4-5", "provider"),
        ("google/gemini-2.5-flash", "provider"),
        ("openai/gpt-4o-mini", "estimate"),
    ],
)
def test_count_tokens_on_every_route(
    router: RouterServer, fakes: Fakes, model: str, how: str
) -> None:
    before = len(getattr(fakes, ROUTES[model][0]).requests)
    response = replay(router, model, "/v1/messages/count_tokens")
    assert response.status_code == 200, response.text
    assert response.headers["x-lmrouter-token-count"] == how
    tokens = response.json()["input_tokens"]
    assert tokens > 100  # the system prompt, tools and turns are all counted
    fake = getattr(fakes, ROUTES[model][0])
    if how == "estimate":
        assert len(fake.requests) == before  # nothing was sent anywhere
        return
    sent = fake.requests[-1]
    if model.startswith("anthropic/"):
        assert sent.path == "/v1/messages/count_tokens"
        assert sent.headers["anthropic-beta"] == FIXTURE["headers"]["anthropic-beta"]
        assert sent.json["model"] == "claude-sonnet-4-5"
    else:
        assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
        inner = sent.json["generateContentRequest"]
        assert inner["model"] == "models/gemini-2.5-flash"
        assert MID_CONVERSATION in json.dumps(inner["systemInstruction"])


def test_count_tokens_with_the_anthropic_sdk(router: RouterServer) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    count = client.messages.count_tokens(
        model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert count.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=router.url, api_key="bad", max_retries=0
        ).messages.count_tokens(
            model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "Hi"}]
        )
