"""Codex CLI on every route: what the real Codex sends (``tests/fixtures/codex_request.json``,
captured from ``codex exec`` by ``tests/agents/capture.py``; the version is in the file)
replayed through the real router, every captured request to every route. On an OpenAI route
``/v1/responses`` passes through untouched (namespace and built-in tools work there); on
Anthropic and Gemini routes the ``namespace`` tool is flattened into function tools, whose calls
come back with their namespace, the history's calls and their outputs become the provider's own,
and the built-in ``web_search`` is left out and named in ``x-lmrouter-dropped-tools`` — or
refused with ``[routing] unsupported_tools = "reject"``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.server import RouterServer

ADMIN = "sk-codex"
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "codex_request.json").read_text())
CAPTURED = [r for r in FIXTURE["requests"] if r["method"] == "POST"]
ROUTES = {  # model id: (fake, upstream model)
    "openai/gpt-5-codex": ("oai", "gpt-5-codex"),
    "anthropic/claude-sonnet-4-5": ("ant", "claude-sonnet-4-5"),
    "google/gemini-2.5-flash": ("gem", "gemini-2.5-flash"),
}
MODELS = list(ROUTES)
TOOLS = CAPTURED[0]["body"]["tools"]
NAMESPACE = next(t for t in TOOLS if t["type"] == "namespace")
# What a converted route offers the provider: function tools, namespaces flattened.
FLATTENED = [
    name
    for tool in TOOLS
    for name in (
        [tool["name"]]
        if tool["type"] == "function"
        else [f"{tool['name']}__{t['name']}" for t in tool.get("tools", ())]
    )
]
NOT_SENT = {"host", "content-length", "connection", "authorization", "accept-encoding"}


class Fakes:
    def __init__(self) -> None:
        self.oai = fake_openai.FakeOpenAI()
        self.ant = fake_anthropic.FakeAnthropic()
        self.gem = fake_gemini.FakeGemini()

    def last(self, model: str) -> Any:
        fake = getattr(self, ROUTES[model][0])
        assert fake.requests, f"nothing reached {ROUTES[model][0]}"
        return fake.requests[-1]


def config(urls: dict[str, str], policy: str) -> str:
    kinds = {"oai": "openai", "ant": "anthropic", "gem": "google"}
    text = f'[auth]\nkeys = ["{ADMIN}"]\n[routing]\nunsupported_tools = "{policy}"\n'
    for name, url in urls.items():
        text += f'[providers.{name}]\ntype = "{kinds[name]}"\nbase_url = "{url}"\n'
    for model, (fake, upstream) in ROUTES.items():
        text += (
            f'[[models]]\nid = "{model}"\n[[models.routes]]\nprovider = "{fake}"\n'
            f'model = "{upstream}"\n'
        )
    return text


@pytest.fixture(scope="module")
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture(scope="module")
def urls(fakes: Fakes) -> Iterator[dict[str, str]]:
    with (
        fakes.oai.run_in_thread() as oai,
        fakes.ant.run_in_thread() as ant,
        fakes.gem.run_in_thread() as gem,
    ):
        yield {"oai": oai, "ant": ant, "gem": gem}


@pytest.fixture(scope="module")
def router(urls: dict[str, str]) -> Iterator[RouterServer]:
    with RouterServer(config(urls, "drop")) as server:
        yield server


def replay(router: RouterServer, captured: dict[str, Any], model: str) -> httpx.Response:
    """``captured`` as Codex sent it (its headers, its body byte for byte but for ``model``)."""
    body = {**captured["body"], "model": model}
    headers = {k: v for k, v in captured["headers"].items() if k not in NOT_SENT}
    headers["authorization"] = f"Bearer {ADMIN}"
    return httpx.post(
        router.url + captured["path"], content=json.dumps(body), headers=headers, timeout=30
    )


def events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = response.text.splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def test_the_fixture_is_a_capture() -> None:
    """Every route's run is in it: the WebSocket try, then the turn and the turn after the
    tool call, whose output carries hello.py back."""
    assert FIXTURE["package"] == "@openai/codex" and FIXTURE["version"]
    for model in MODELS:
        run = [r for r in FIXTURE["requests"] if r["route"] == model]
        assert [r["method"] for r in run] == ["GET", "POST", "POST"]
        assert run[0]["headers"]["upgrade"] == "websocket"
        kinds = [item["type"] for item in run[2]["body"]["input"]]
        assert kinds[-2:] == ["function_call", "function_call_output"]
        assert "Hello from the router test" in run[2]["body"]["input"][-1]["output"]


CASES = [
    pytest.param(captured, model, id=f"{captured['route'].split('/')[0]}{i % 2 + 1}-to-{model}")
    for i, captured in enumerate(CAPTURED)
    for model in MODELS
]


@pytest.mark.parametrize(("captured", "model"), CASES)
def test_codex_request_on_every_route(
    router: RouterServer, fakes: Fakes, captured: dict[str, Any], model: str
) -> None:
    response = replay(router, captured, model)
    assert response.status_code == 200, response.text
    stream = events(response)
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    final = stream[-1]
    assert final["type"] == "response.completed"
    assert final["response"]["usage"]["cost"] >= 0  # usage read and priced on every route
    history = captured["body"]["input"]
    ended_by_output = history[-1]["type"] == "function_call_output"
    kinds = [item["type"] for item in final["response"]["output"]]
    # The fakes call the first tool, and answer in text once its output is back.
    assert kinds[-1] == ("message" if ended_by_output else "function_call"), kinds
    sent = fakes.last(model)
    if model.startswith("openai/"):  # OpenAI speaks Responses: passed through as sent
        assert sent.path == "/v1/responses"
        assert sent.json == {**captured["body"], "model": "gpt-5-codex"}
        assert "x-lmrouter-dropped-tools" not in response.headers
        return
    # Offline search (external_web_access: false) has no equivalent elsewhere: left out.
    assert response.headers["x-lmrouter-dropped-tools"] == "web_search"
    calls = [i for i in history if i["type"] == "function_call"]
    outputs = [i["output"] for i in history if i["type"] == "function_call_output"]
    developer = [i for i in history if i.get("role") == "developer"]
    if model.startswith("anthropic/"):
        assert [tool["name"] for tool in sent.json["tools"]] == FLATTENED
        blocks = [b for m in sent.json["messages"] for b in m["content"]]
        uses = [b for b in blocks if b["type"] == "tool_use"]
        results = [b for b in blocks if b["type"] == "tool_result"]
        assert [(u["name"], u["input"]) for u in uses] == [
            (c["name"], json.loads(c["arguments"])) for c in calls
        ]
        assert [u["id"] for u in uses] == [r["tool_use_id"] for r in results]
        assert [r["content"] for r in results] == [[{"type": "text", "text": o}] for o in outputs]
        system = json.dumps(sent.json["system"])
    else:
        declared = [d["name"] for d in sent.json["tools"][0]["functionDeclarations"]]
        assert declared == FLATTENED
        parts = [p for c in sent.json["contents"] for p in c["parts"]]
        assert [
            (p["functionCall"]["name"], p["functionCall"]["args"])
            for p in parts
            if "functionCall" in p
        ] == [(c["name"], json.loads(c["arguments"])) for c in calls]
        answered = [p["functionResponse"] for p in parts if "functionResponse" in p]
        assert [(a["name"], a["response"]) for a in answered] == [
            (c["name"], {"output": o}) for c, o in zip(calls, outputs, strict=True)
        ]
        system = json.dumps(sent.json["systemInstruction"])
    # Codex's developer messages (its instructions) became the system prompt.
    first_line = developer[0]["content"][0]["text"].splitlines()[0]
    assert json.dumps(first_line)[1:-1] in system


@pytest.mark.parametrize("model", MODELS[1:])
@pytest.mark.parametrize("stream", [False, True])
def test_namespace_call_comes_back_with_its_namespace(
    router: RouterServer, model: str, stream: bool
) -> None:
    client = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    kwargs: dict[str, Any] = {"model": model, "input": "Start a helper.", "tools": [NAMESPACE]}
    if stream:
        with client.responses.stream(**kwargs) as events_:
            response = events_.get_final_response()
    else:
        response = client.responses.create(**kwargs)
    (call,) = [item for item in response.output if item.type == "function_call"]
    first = NAMESPACE["tools"][0]  # the fakes call the first tool offered
    assert (call.namespace, call.name) == (NAMESPACE["name"], first["name"])
    assert set(json.loads(call.arguments)) == set(first["parameters"]["properties"])
    # …and that call, sent back in the history, reaches the provider flattened again.
    follow = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "Start a helper."},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "namespace": call.namespace,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "started"},
        ],
        tools=[NAMESPACE],
    )
    assert follow.output_text.startswith("Hello! You said:")


def test_reject_refuses_hosted_tools_off_openai(urls: dict[str, str], fakes: Fakes) -> None:
    search = next(i for i, tool in enumerate(TOOLS) if tool["type"] == "web_search")
    with RouterServer(config(urls, "reject")) as server:
        refused = replay(server, CAPTURED[0], "anthropic/claude-sonnet-4-5")
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["param"] == f"tools[{search}].type" and "web_search" in error["message"]
        assert (
            replay(server, CAPTURED[0], "openai/gpt-5-codex").status_code == 200
        )  # OpenAI runs it


def test_responses_pass_through_with_the_sdk(router: RouterServer, fakes: Fakes) -> None:
    """Built-in tools reach OpenAI as they are; the answer keeps OpenAI's shape, with cost."""
    client = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    tools: Any = [{"type": "web_search", "external_web_access": False}]
    response = client.responses.create(model="openai/gpt-5-codex", input="Hi there", tools=tools)
    assert response.output_text.startswith("Hello! You said: Hi there")
    assert response.usage is not None and response.usage.model_extra["cost"] >= 0
    assert fakes.last("openai/gpt-5-codex").json["tools"] == tools


WEB_SEARCH = {"type": "web_search"}
FUNCTION = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@pytest.mark.parametrize(
    ("model", "tools", "upstream_tools", "dropped"),
    [
        (
            "anthropic/claude-sonnet-4-5",
            [WEB_SEARCH],
            [{"type": "web_search_20250305", "name": "web_search"}],
            None,
        ),
        ("google/gemini-2.5-flash", [WEB_SEARCH], [{"googleSearch": {}}], None),
        # Gemini 2.x runs no Google Search together with function calling: left out, named.
        ("google/gemini-2.5-flash", [FUNCTION, WEB_SEARCH], None, "web_search"),
    ],
)
def test_web_search_becomes_the_providers_own(
    router: RouterServer,
    fakes: Fakes,
    model: str,
    tools: list[Any],
    upstream_tools: Any,
    dropped: str | None,
) -> None:
    client = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    raw = client.responses.with_raw_response.create(model=model, input="News?", tools=tools)
    assert raw.headers.get("x-lmrouter-dropped-tools") == dropped
    assert raw.parse().output_text or raw.parse().output
    sent = fakes.last(model).json["tools"]
    if upstream_tools is not None:
        assert sent == upstream_tools
    else:
        assert [list(tool) for tool in sent] == [["functionDeclarations"]]
