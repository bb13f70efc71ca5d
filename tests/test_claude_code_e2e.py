"""Claude Code on any model: what the real Claude Code sends
(``tests/fixtures/claude_code_request.json``, captured from ``claude -p`` by
``tests/agents/capture.py``; the version is in the file) replayed byte for byte through the real
router, every captured request to an Anthropic, an OpenAI and a Gemini route, and
``/v1/messages/count_tokens`` on each. Claude Code sends a Claude model id its own prompt with
``thinking`` budgets; any other id gets adaptive thinking, ``output_config.effort`` and a
``system`` message inside ``messages``. Checked: the stream the client gets, and what reached
each fake upstream (system text joined into the system prompt, the tool round trip in the
provider's own format, the beta header only where Anthropic reads it, settings fitted to the
model)."""

from __future__ import annotations

import itertools
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
CAPTURED = [r for r in FIXTURE["requests"] if r["method"] == "POST"]
# The last request Claude Code sent a model it does not know: the richest one.
OTHER_MODEL = [r for r in CAPTURED if not r["route"].startswith("anthropic/")][-1]
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
NOT_SENT = {"host", "content-length", "connection", "x-api-key", "accept-encoding"}
FILE_TEXT = "Hello from the router test"  # hello.py's, read by the Read tool


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def system_texts(body: dict[str, Any]) -> list[str]:
    """The system prompt's texts and those of the system messages inside ``messages``."""
    texts = [block["text"] for block in body["system"]]
    return texts + [text_of(m["content"]) for m in body["messages"] if m["role"] == "system"]


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
    router: RouterServer,
    model: str,
    captured: dict[str, Any] = OTHER_MODEL,
    path: str | None = None,
    **changes: Any,
) -> httpx.Response:
    """``captured`` as Claude Code sent it, to ``model`` (and ``changes`` to its body)."""
    body = {**captured["body"], "model": model, **changes}
    if path is not None and path.startswith("/v1/messages/count_tokens"):
        # what count_tokens takes: no output settings
        body = {k: body[k] for k in ("model", "messages", "system", "tools", "thinking")}
    headers = {k: v for k, v in captured["headers"].items() if k not in NOT_SENT}
    headers["x-api-key"] = ADMIN
    url = router.url + (path or captured["path"])
    return httpx.post(url, content=json.dumps(body), headers=headers, timeout=30)


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_the_fixture_is_a_capture() -> None:
    """Every route's run: the probe, the turn and the turn after the Read call, whose result
    carries hello.py back; a system message inside ``messages`` only for other models."""
    assert FIXTURE["package"] == "@anthropic-ai/claude-code" and FIXTURE["version"]
    for model in MODELS:
        run = [r for r in FIXTURE["requests"] if r["route"] == model]
        assert [r["method"] for r in run] == ["HEAD", "POST", "POST"]
        last = run[2]["body"]["messages"][-1]["content"]
        assert any(b["type"] == "tool_result" and FILE_TEXT in text_of(b["content"]) for b in last)
        roles = {m["role"] for r in run[1:] for m in r["body"]["messages"]}
        assert ("system" in roles) is (not model.startswith("anthropic/"))


CASES = [
    pytest.param(captured, model, id=f"{captured['route'].split('/')[0]}{i % 2 + 1}-to-{model}")
    for i, captured in enumerate(CAPTURED)
    for model in MODELS
]


@pytest.mark.parametrize(("captured", "model"), CASES)
def test_claude_code_request_streams_on_every_route(
    router: RouterServer, fakes: Fakes, captured: dict[str, Any], model: str
) -> None:
    response = replay(router, model, captured)
    assert response.status_code == 200, response.text
    stream = events(response)
    names = [name for name, _ in stream]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "error" not in names
    body = captured["body"]
    round_trip = any(
        b["type"] == "tool_result" for b in body["messages"][-1]["content"] if isinstance(b, dict)
    )
    blocks = [
        data["content_block"]["type"] for name, data in stream if name == "content_block_start"
    ]
    # The fakes call the first tool, and answer in text once its result is back.
    assert blocks[-1] == ("text" if round_trip else "tool_use"), blocks
    sent = fakes.last(model)
    beta = sent.headers.get("anthropic-beta")
    if model.startswith("anthropic/"):  # passed through as Claude Code sent it…
        assert beta == captured["headers"]["anthropic-beta"]
        expected = {**body, "model": ROUTES[model][1]}
        if "system" in {m["role"] for m in body["messages"]}:
            # …but for the system messages inside `messages` Anthropic refuses: joined, in
            # order, to the system prompt.
            inside = [m for m in body["messages"] if m["role"] == "system"]
            expected["messages"] = [m for m in body["messages"] if m["role"] != "system"]
            joined = list(body["system"])
            for message in inside:
                content = message["content"]
                joined += (
                    [{"type": "text", "text": content}] if isinstance(content, str) else content
                )
            expected["system"] = joined
        assert sent.json == expected
        return
    assert beta is None  # Anthropic's betas mean nothing to other providers
    wanted = system_texts(body)
    if model.startswith("openai/"):
        # gpt-4o-mini takes no reasoning settings and at most 16384 output tokens: what Claude
        # Code asks of every model is fitted to it, and the response says what was clamped.
        assert "reasoning_effort" not in sent.json
        assert sent.json["max_completion_tokens"] == 16384
        assert response.headers["x-lmrouter-max-tokens-clamped"] == "16384; requested=32000"
        messages = sent.json["messages"]
        assert [m["role"] for m in messages].count("system") == 1
        assert messages[0]["role"] == "system"
        assert all(text in messages[0]["content"] for text in wanted)
        tool_results = [m["content"] for m in messages if m["role"] == "tool"]
        assert any(FILE_TEXT in text_of(c) for c in tool_results) is round_trip
    else:
        system = "".join(part["text"] for part in sent.json["systemInstruction"]["parts"])
        assert all(text in system for text in wanted)
        roles = [content["role"] for content in sent.json["contents"]]
        assert all(a != b for a, b in itertools.pairwise(roles))  # they alternate
        responses = [
            p["functionResponse"]
            for c in sent.json["contents"]
            for p in c["parts"]
            if "functionResponse" in p
        ]
        assert any(FILE_TEXT in json.dumps(r["response"]) for r in responses) is round_trip
        thinking = sent.json["generationConfig"]["thinkingConfig"]
        # effort "high", or a budget near 32k, as a budget Gemini 2.5 Flash takes (24576 most)
        assert thinking["thinkingBudget"] == 24576
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
    response = replay(router, model, path="/v1/messages/count_tokens")
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
        assert sent.headers["anthropic-beta"] == OTHER_MODEL["headers"]["anthropic-beta"]
        assert sent.json["model"] == "claude-sonnet-4-5"
        assert "system" not in {m["role"] for m in sent.json["messages"]}  # joined, as above
    else:
        assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
        inner = sent.json["generateContentRequest"]
        assert inner["model"] == "models/gemini-2.5-flash"
        system = json.dumps(inner["systemInstruction"])
        assert all(json.dumps(text)[1:-1] in system for text in system_texts(OTHER_MODEL["body"]))


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
