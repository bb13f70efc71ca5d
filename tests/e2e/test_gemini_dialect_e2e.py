"""Gemini's own API in front of every provider: the official ``google-genai`` SDK, unchanged but
for its base URL, → the real router (granian) → a fake Gemini (pass-through), a fake OpenAI and a
fake Anthropic (converted through the IR). What reached each upstream is checked, not only what
came back."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from lmrouter.testing import config as kit
from lmrouter.testing.fake_anthropic import FakeAnthropic
from lmrouter.testing.fake_gemini import FakeGemini
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_probe.records import ends

ADMIN = "sk-admin-gemini-dialect"
GEMINI_KEY = "AIza-upstream-secret-91"
PRICE = {"input": 1, "output": 2}
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def config(gemini: str, openai: str, anthropic: str, record: Path) -> str:
    return kit.config(
        admin=ADMIN,
        probe={"record": record},
        providers={
            "gem": kit.provider("google", gemini, GEMINI_KEY),
            "oai": kit.provider("openai", openai, "sk-oai-upstream"),
            "ant": kit.provider("anthropic", anthropic, "sk-ant-upstream"),
        },
        models={
            "google/gemini-2.5-flash": kit.route("gem", "gemini-2.5-flash", price=PRICE),
            "google/capped": kit.model(
                kit.route("gem", "gemini-2.5-flash", price=PRICE), max_output_tokens=321
            ),
            "openai/gpt-4o-mini": kit.model(
                kit.route("oai", "gpt-4o-mini", price=PRICE), max_output_tokens=1000
            ),
            "anthropic/claude-haiku": kit.model(
                kit.route("ant", "claude-haiku-4-5", price=PRICE), max_output_tokens=1000
            ),
            "openai/embed": kit.route("oai", "text-embedding-3-small", price={"input": 0.02}),
        },
    )


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeGemini, FakeOpenAI, FakeAnthropic]]:
    gemini, openai, anthropic = FakeGemini(api_key=GEMINI_KEY), FakeOpenAI(), FakeAnthropic()
    with gemini.run_in_thread(), openai.run_in_thread(), anthropic.run_in_thread():
        yield gemini, openai, anthropic


@pytest.fixture(scope="module")
def router(fakes: Any, probe_path: str, record: Path) -> Iterator[RouterServer]:
    gemini, openai, anthropic = fakes
    text = config(gemini.base_url, openai.base_url, anthropic.base_url, record)
    with RouterServer(text, python_path=[probe_path]) as server:
        yield server


@pytest.fixture(params=["v1beta", "v1"])
def client(request: pytest.FixtureRequest, router: RouterServer) -> genai.Client:
    """google-genai as a user writes it: base URL and key, nothing else (3.x calls ``/v1``;
    other clients call ``/v1beta``)."""
    options = types.HttpOptions(base_url=router.url, api_version=request.param)
    return genai.Client(api_key=ADMIN, http_options=options)


def last_request(fake: Any) -> Any:
    assert fake.requests, "the upstream got nothing"
    return fake.requests[-1]


def test_gemini_routes_are_a_pass_through(client: genai.Client, fakes: Any) -> None:
    gemini = fakes[0]
    gemini.reset()
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", max_output_tokens=50, temperature=0.2
    )
    answer = client.models.generate_content(
        model="google/gemini-2.5-flash", contents="Hello there, Gemini!", config=config
    )
    assert answer.text and "Hello there" in answer.text
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count
    sent = last_request(gemini)
    assert sent.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY, "the operator's key, never the caller's"
    body = sent.json
    assert body["contents"][0]["parts"][0]["text"] == "Hello there, Gemini!"
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert body["generationConfig"]["maxOutputTokens"] == 50
    assert "model" not in body, "the body goes upstream as the client sent it"


def test_gemini_streams_are_relayed(client: genai.Client, fakes: Any) -> None:
    chunks = list(
        client.models.generate_content_stream(
            model="google/gemini-2.5-flash", contents="Stream me a story, please."
        )
    )
    text = "".join(c.text or "" for c in chunks)
    assert "Stream me a story" in text and len(chunks) > 1
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == "STOP"
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count
    assert last_request(fakes[0]).path.endswith(":streamGenerateContent?alt=sse")


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-haiku"])
def test_other_providers_answer_in_gemini_shape(
    client: genai.Client, fakes: Any, model: str, record: Path
) -> None:
    fake = fakes[1] if model.startswith("openai") else fakes[2]
    fake.reset()
    config = types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=60)
    answer = client.models.generate_content(model=model, contents="Hi from genai", config=config)
    assert answer.text and "Hi from genai" in answer.text
    usage = answer.usage_metadata
    assert usage and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    body = last_request(fake).json
    if model.startswith("openai"):
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["messages"][1]["content"] in (
            "Hi from genai",
            [{"type": "text", "text": "Hi from genai"}],
        )
        assert body.get("max_completion_tokens", body.get("max_tokens")) == 60
    else:
        assert body["system"][0]["text"] == "Be brief." and body["max_tokens"] == 60
    request_id = answer.sdk_http_response.headers["x-request-id"]  # type: ignore[union-attr]
    [end] = ends(record, request_id)
    assert end["status"] == "ok" and end["model"] == model and end["cost_pico"] > 0
    cost = answer.sdk_http_response.headers["x-lmrouter-cost"]  # type: ignore[union-attr]
    assert Decimal(cost) * 10**12 == end["cost_pico"]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-haiku"])
def test_converted_streams_and_tool_calls(client: genai.Client, fakes: Any, model: str) -> None:
    chunks = list(
        client.models.generate_content_stream(model=model, contents="Count to three slowly")
    )
    assert "Count to three" in "".join(c.text or "" for c in chunks)
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == "STOP"
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.total_token_count
    tools = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    answer = client.models.generate_content(
        model=model, contents="What's the weather in Paris?", config=tools
    )
    [call] = answer.function_calls or []
    assert call.name == "get_weather" and isinstance(call.args, dict) and "city" in call.args
    # The round trip: the model's call and the function's response go back as Gemini has them.
    history = [
        types.Content(role="user", parts=[types.Part(text="What's the weather in Paris?")]),
        answer.candidates[0].content,  # type: ignore[index]
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"t": 21})],
        ),
    ]
    final = client.models.generate_content(model=model, contents=history, config=tools)
    assert final.text
    fake = fakes[1] if model.startswith("openai") else fakes[2]
    body = last_request(fake).json
    if model.startswith("openai"):
        assert body["tools"][0]["function"]["name"] == "get_weather"
        tool_call = body["messages"][-2]["tool_calls"][0]
        assert body["messages"][-1]["role"] == "tool"
        assert body["messages"][-1]["tool_call_id"] == tool_call["id"]
    else:
        assert body["tools"][0]["name"] == "get_weather"
        use = body["messages"][-2]["content"][-1]
        result = body["messages"][-1]["content"][0]
        assert use["type"] == "tool_use" and result["tool_use_id"] == use["id"]


def test_count_tokens_asks_gemini_or_estimates(client: genai.Client, router: RouterServer) -> None:
    counted = client.models.count_tokens(model="google/gemini-2.5-flash", contents="Hello, world")
    assert counted.total_tokens and counted.total_tokens > 0
    estimate = httpx.post(
        f"{router.url}/v1beta/models/openai/gpt-4o-mini:countTokens",
        json={"contents": [{"role": "user", "parts": [{"text": "x" * 400}]}]},
        headers={"x-goog-api-key": ADMIN},
    )
    assert estimate.status_code == 200 and estimate.json() == {"totalTokens": 100}
    assert estimate.headers["x-lmrouter-token-count"] == "estimate"


def test_embeddings_convert(client: genai.Client, fakes: Any) -> None:
    answer = client.models.embed_content(model="openai/embed", contents=["one", "two"])
    assert answer.embeddings and len(answer.embeddings) == 2
    assert all(e.values for e in answer.embeddings)
    assert last_request(fakes[1]).json["input"] == ["one", "two"]


def test_models_are_listed_the_gemini_way(client: genai.Client) -> None:
    names = {m.name for m in client.models.list()}
    assert "models/openai/gpt-4o-mini" in names and "models/google/gemini-2.5-flash" in names
    one = client.models.get(model="openai/gpt-4o-mini")
    assert one.name == "models/openai/gpt-4o-mini" and one.output_token_limit == 1000


def test_errors_are_gemini_errors(router: RouterServer) -> None:
    bad = genai.Client(api_key="sk-wrong", http_options=types.HttpOptions(base_url=router.url))
    with pytest.raises(errors.ClientError) as caught:
        bad.models.generate_content(model="openai/gpt-4o-mini", contents="hi")
    assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"
    good = genai.Client(api_key=ADMIN, http_options=types.HttpOptions(base_url=router.url))
    with pytest.raises(errors.ClientError) as caught:
        good.models.generate_content(model="no/such-model", contents="hi")
    assert caught.value.code == 404 and "no/such-model" in str(caught.value.message)


def test_key_in_the_query_string(router: RouterServer) -> None:
    """Gemini's REST examples pass the key as ``?key=``."""
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi via query key"}]}]}
    url = f"{router.url}/v1beta/models/openai/gpt-4o-mini:generateContent"
    ok = httpx.post(url, params={"key": ADMIN}, json=body)
    assert ok.status_code == 200, ok.text
    assert "Hi via query key" in ok.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert httpx.post(url, params={"key": "nope"}, json=body).status_code == 401


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-haiku"])
def test_structured_output_reaches_every_provider(
    client: genai.Client, fakes: Any, model: str
) -> None:
    """google-genai's ``response_schema`` (a pydantic model) and ``response_mime_type``: the
    answer is JSON that parses into the model, and the schema reached the upstream."""

    class City(BaseModel):
        name: str
        population: int

    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City
    )
    answer = client.models.generate_content(model=model, contents="A big city?", config=config)
    assert isinstance(answer.parsed, City)
    body = last_request(fakes[1] if model.startswith("openai") else fakes[2]).json
    if model.startswith("openai"):
        sent = body["response_format"]
        assert sent["type"] == "json_schema"
        assert set(sent["json_schema"]["schema"]["properties"]) == {"name", "population"}
    else:  # Claude Haiku 4.5 has Anthropic's native structured outputs
        sent = body["output_config"]["format"]
        assert sent["type"] == "json_schema"
        assert set(sent["schema"]["properties"]) == {"name", "population"}


def test_google_tools_are_dropped_and_named_where_the_provider_has_none(
    router: RouterServer, fakes: Any
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "News today?"}]}],
        "tools": [{"codeExecution": {}}],
    }
    answer = httpx.post(
        f"{router.url}/v1beta/models/openai/gpt-4o-mini:generateContent",
        json=body,
        headers={"x-goog-api-key": ADMIN},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-lmrouter-dropped-tools"] == "codeExecution"
    assert "tools" not in last_request(fakes[1]).json


def test_the_held_output_limit_is_sent_to_gemini(client: genai.Client, fakes: Any) -> None:
    """A request without maxOutputTokens is held at the model's max_output_tokens: that limit
    is what Gemini is told, so it cannot generate more than was held."""
    client.models.generate_content(model="google/capped", contents="Tell me everything.")
    body = last_request(fakes[0]).json
    assert body["generationConfig"] == {"maxOutputTokens": 321}
    assert body["contents"][0]["parts"][0]["text"] == "Tell me everything."
    config = types.GenerateContentConfig(max_output_tokens=12)
    client.models.generate_content(model="google/capped", contents="Short.", config=config)
    assert last_request(fakes[0]).json["generationConfig"]["maxOutputTokens"] == 12
