"""The Anthropic path end to end: the official anthropic SDK → the real router (granian) → a fake
Anthropic upstream, and across dialects — the anthropic SDK to an OpenAI model (FakeOpenAI) and
the openai SDK to a Claude model (FakeAnthropic). Results through the router must match what the
upstream itself says; usage and cost must be exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_anthropic import Behavior, FakeAnthropic
from lmrouter.testing.fake_openai import Behavior as OpenAIBehavior
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_probe.records import ends

ADMIN = "sk-admin-anthropic-e2e"
ANT_KEY = "sk-ant-upstream-secret"
OAI_KEY = "sk-oai-upstream-secret"
PROMPT = "Hello there, router! What is the weather in Paris?"
HELLO: Any = [{"role": "user", "content": PROMPT}]  # Any: the SDKs' TypedDicts
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
WEATHER_INPUT = {"city": "test", "days": 1}
ANT_TOOLS: Any = [
    {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_SCHEMA}
]
OAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": WEATHER_SCHEMA,
        },
    }
]
CLAUDE_PRICE = {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}
GPT_PRICE = {"input": 0.15, "output": 0.60, "cache_read": 0.075}


def config(claude: str, gpt: str, record: Path) -> str:
    models = {
        # id: (provider, upstream model, price)
        "claude": ("claude", "claude-x", CLAUDE_PRICE),
        "claude-cache": ("claude", "cached", CLAUDE_PRICE),
        "claude-402": ("claude", "e402", CLAUDE_PRICE),
        "claude-429": ("claude", "e429", CLAUDE_PRICE),
        "claude-529": ("claude", "e529", CLAUDE_PRICE),
        "claude-drop": ("claude", "cut", CLAUDE_PRICE),
        "claude-broken": ("claude", "broken", CLAUDE_PRICE),
        "gpt": ("oai", "gpt-x", GPT_PRICE),
        "gpt-cache": ("oai", "gpt-cached", GPT_PRICE),
        "gpt-drop": ("oai", "drop", GPT_PRICE),
    }
    claude_provider = kit.provider("anthropic", claude, ANT_KEY)
    return kit.config(
        admin=ADMIN,
        routing={"backoff": 0.01},
        probe={"record": record},
        providers={
            "claude": claude_provider,
            "claude2": claude_provider,
            "oai": kit.provider("openai", gpt, OAI_KEY),
        },
        models={
            "fallback-529": [kit.route("claude", "e529"), kit.route("claude2", "claude-x")],
            **{
                model_id: kit.route(provider, upstream, price=price)
                for model_id, (provider, upstream, price) in models.items()
            },
        },
    )


@pytest.fixture(scope="module")
def fake_claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=ANT_KEY)
    usage = {"input_tokens": 40, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50}
    fake.script("cached", Behavior(usage=usage))
    fake.script("e402", Behavior(status=402))
    fake.script("e429", Behavior(status=429, error_message=f"slow down ({ANT_KEY})", retry_after=3))
    fake.script("e529", Behavior(status=529))
    fake.script("cut", Behavior(text="y" * 80, drop_after_chunks=3))
    fake.script("broken", Behavior(text="z" * 80, error_after_chunks=2))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def fake_gpt() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=OAI_KEY)
    usage = {"prompt_tokens": 1000, "cached_tokens": 600, "completion_tokens": 7}
    fake.script("gpt-cached", OpenAIBehavior(usage=usage))
    fake.script("drop", OpenAIBehavior(text="x" * 80, drop_after_chunks=3))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(
    fake_claude: FakeAnthropic, fake_gpt: FakeOpenAI, probe_path: str, record: Path
) -> Iterator[RouterServer]:
    text = config(fake_claude.base_url, fake_gpt.base_url, record)
    with RouterServer(text, python_path=[probe_path]) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def oai(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def direct_claude(fake_claude: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake_claude.base_url, api_key=ANT_KEY, max_retries=0)


@pytest.fixture
def direct_gpt(fake_gpt: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_gpt.base_url, api_key=OAI_KEY, max_retries=0)


def blocks(message: Any) -> list[dict[str, Any]]:
    """Content blocks as dicts (ids of tool calls are per response; a streamed message's blocks
    are Parsed… subclasses)."""
    out = []
    for block in message.content:
        data = block.model_dump(exclude={"parsed_output"}, exclude_none=True)
        if data["type"] == "tool_use":
            assert data.pop("id")
        out.append(data)
    return out


def claude_cost(usage: Any) -> float:
    return (
        usage.input_tokens * 3
        + (usage.cache_creation_input_tokens or 0) * 3.75
        + (usage.cache_read_input_tokens or 0) * 0.3
        + usage.output_tokens * 15
    ) / 1e6


def stream_all(
    client: anthropic.Anthropic, messages: Any = HELLO, **kwargs: Any
) -> tuple[Any, list[Any], str]:
    """Stream with the SDK's helper: the final message, every event, and the x-request-id."""
    with client.messages.stream(max_tokens=200, messages=messages, **kwargs) as stream:
        events = list(stream)
        final = stream.get_final_message()
        request_id = stream.response.headers.get("x-request-id", "")
    return final, events, request_id


# -- pass-through: the anthropic SDK to a Claude model --------------------------------------------


def test_message_matches_direct(
    client: anthropic.Anthropic, direct_claude: anthropic.Anthropic
) -> None:
    via = client.messages.create(model="claude", max_tokens=200, messages=HELLO)
    raw = direct_claude.messages.create(model="claude-x", max_tokens=200, messages=HELLO)
    assert blocks(via) == blocks(raw) and PROMPT[:20] in via.content[0].text  # type: ignore[union-attr]
    assert via.model == "claude-x", "the upstream's own name"
    assert (via.stop_reason, via.usage.input_tokens, via.usage.output_tokens) == (
        raw.stop_reason,
        raw.usage.input_tokens,
        raw.usage.output_tokens,
    )
    assert via.usage.model_extra is not None
    assert via.usage.model_extra["cost"] == pytest.approx(claude_cost(via.usage), rel=1e-12)


def test_stream_matches_direct(
    client: anthropic.Anthropic, direct_claude: anthropic.Anthropic, record: Path
) -> None:
    final, events, request_id = stream_all(client, model="claude")
    raw, _, _ = stream_all(direct_claude, model="claude-x")
    assert blocks(final) == blocks(raw)
    assert final.usage.output_tokens == raw.usage.output_tokens > 0
    assert final.usage.input_tokens == raw.usage.input_tokens > 0
    [delta] = [e for e in events if e.type == "message_delta"]
    assert delta.usage.model_extra["cost"] == pytest.approx(claude_cost(final.usage), rel=1e-12)
    [end] = ends(record, request_id)
    assert end["status"] == "ok" and end["usage"]["completion_tokens"] == raw.usage.output_tokens
    assert not end["usage"]["estimated"]


def test_upstream_gets_its_model_key_version_and_beta(
    client: anthropic.Anthropic, fake_claude: FakeAnthropic
) -> None:
    kwargs: Any = {"max_tokens": 50, "messages": HELLO, "metadata": {"user_id": "u1"}}
    extra = {"top_k": 5, "x_future_field": [1, {"a": None}]}
    client.messages.create(
        model="claude",
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        extra_body=extra,
        **kwargs,
    )
    sent = fake_claude.requests[-1]
    assert sent.json == {"model": "claude-x", **kwargs, **extra}, "only the model name changes"
    assert sent.headers["x-api-key"] == ANT_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert "authorization" not in sent.headers, "the caller's key never goes upstream"
    assert ADMIN not in json.dumps(sent.headers)


def test_tool_round_trip(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model="claude", max_tokens=200, messages=HELLO, tools=ANT_TOOLS)
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.input == WEATHER_INPUT
    messages: Any = [
        *HELLO,
        {"role": "assistant", "content": [b.to_dict() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21C"}],
        },
    ]
    final, _, _ = stream_all(client, messages, model="claude", tools=ANT_TOOLS)
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"


def test_cache_usage_and_cost(client: anthropic.Anthropic, record: Path) -> None:
    response = client.messages.with_raw_response.create(
        model="claude-cache", max_tokens=200, messages=HELLO
    )
    usage = response.parse().usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (40, 900)
    assert usage.cache_creation_input_tokens == 50
    assert usage.model_extra is not None
    expected = (40 * 3 + 50 * 3.75 + 900 * 0.3 + usage.output_tokens * 15) / 1e6
    assert usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)
    [end] = ends(record, response.headers["x-request-id"])
    assert end["usage"]["prompt_tokens"] == 990
    assert (end["usage"]["cached_tokens"], end["usage"]["cache_write_tokens"]) == (900, 50)
    assert end["cost_pico"] == round(expected * 1e12)
    final, events, _ = stream_all(client, model="claude-cache")
    [delta] = [e for e in events if e.type == "message_delta"]
    assert delta.usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)
    assert final.usage.cache_read_input_tokens == 900


# -- the caller's mistakes and upstream failures, in Anthropic's shape ----------------------------


def test_bad_key_401(router: RouterServer) -> None:
    bad = anthropic.Anthropic(base_url=router.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid API key."},
    }
    response = httpx.post(
        f"{router.url}/v1/messages",
        json={"model": "claude", "max_tokens": 10, "messages": HELLO},
        headers={"x-api-key": ADMIN, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, "x-api-key works as well as Bearer"


def test_unknown_model_404(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such-model", max_tokens=10, messages=HELLO)
    body: Any = info.value.body
    assert (
        body["error"]["type"] == "not_found_error" and "no-such-model" in body["error"]["message"]
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "claude", "messages": HELLO}, "max_tokens: Field required"),
        ({"model": "claude", "max_tokens": 10, "messages": []}, "messages: at least one message"),
        ({"max_tokens": 10, "messages": HELLO}, "model: Field required"),
    ],
)
def test_invalid_requests_400(router: RouterServer, body: dict[str, Any], words: str) -> None:
    response = httpx.post(
        f"{router.url}/v1/messages", json=body, headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert words in error["error"]["message"]


def test_upstream_400_is_the_callers(
    client: anthropic.Anthropic, fake_claude: FakeAnthropic
) -> None:
    fake_claude.reset()
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="claude", max_tokens=10, messages=HELLO, extra_body={"temperature": 3}
        )
    body: Any = info.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert "temperature" in body["error"]["message"], "the upstream's own words"
    assert len(fake_claude.requests) == 1


def test_upstream_402_is_a_502(client: anthropic.Anthropic, record: Path) -> None:
    """The provider's own billing problem is the router's failure, not the caller's credit:
    a 502 ``api_error`` with the provider's words (never its key)."""
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="claude-402", max_tokens=10, messages=HELLO)
    assert info.value.status_code == 502
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    message = body["error"]["message"]
    assert "credit balance is too low" in message and ANT_KEY not in message
    [end] = ends(record, info.value.response.headers["x-request-id"])
    assert end["status"] == "upstream_error" and end["attempts"] == [["claude", 402]]


@pytest.mark.parametrize(
    ("model", "upstream", "kind", "words"),
    [
        ("claude-429", 429, "rate_limit_error", "slow down"),
        ("claude-529", 529, "overloaded_error", "Overloaded"),
    ],
)
def test_upstream_load_errors_are_passed_on(
    router: RouterServer, record: Path, model: str, upstream: int, kind: str, words: str
) -> None:
    """Upstream rate limits and overload keep their status (and Retry-After) once the routes
    are exhausted, so the SDK backs off as it would with Anthropic itself."""
    client = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=model, max_tokens=10, messages=HELLO)
    assert info.value.status_code == upstream
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert words in body["error"]["message"] and ANT_KEY not in body["error"]["message"]
    if upstream == 429:
        assert info.value.response.headers["retry-after"] == "3"
    [end] = ends(record, info.value.response.headers["x-request-id"])
    assert end["status"] == "upstream_error" and end["attempts"] == [["claude", upstream]]


def test_529_falls_back_to_the_next_route(client: anthropic.Anthropic, record: Path) -> None:
    response = client.messages.with_raw_response.create(
        model="fallback-529", max_tokens=50, messages=HELLO
    )
    assert response.parse().content[0].type == "text"
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "ok" and end["attempts"] == [["claude", 529], ["claude2", 200]]


def read_cut_stream(client: Any, model: str) -> tuple[str, Any, str]:
    text = ""
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=model, max_tokens=200, messages=HELLO) as stream,
    ):
        request_id = stream.response.headers["x-request-id"]
        for piece in stream.text_stream:
            text += piece
    return text, info.value.body, request_id


def test_stream_cut_by_upstream_ends_with_error_event(
    client: anthropic.Anthropic, record: Path
) -> None:
    text, body, request_id = read_cut_stream(client, "claude-drop")
    assert text == "y" * 12, "what came before the cut reached the client"
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("claude"), "names the provider that failed"
    [end] = ends(record, request_id)
    assert end["status"] == "upstream_error"
    usage = end["usage"]
    assert usage["estimated"] and usage["completion_tokens"] >= 3
    assert usage["prompt_tokens"] == len(PROMPT) // 4 + 4, "exact: message_start had said it"


def test_upstream_error_event_is_relayed(client: anthropic.Anthropic, record: Path) -> None:
    text, body, request_id = read_cut_stream(client, "claude-broken")
    assert text == "z" * 8
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    [end] = ends(record, request_id)
    assert end["status"] == "upstream_error"


# -- across dialects: the anthropic SDK to an OpenAI model ----------------------------------------


def test_anthropic_sdk_to_openai_model(
    client: anthropic.Anthropic, direct_gpt: openai.OpenAI, fake_gpt: FakeOpenAI
) -> None:
    via = client.messages.create(
        model="gpt", max_tokens=100, system="Be terse.", messages=HELLO, stop_sequences=["END"]
    )
    sent = fake_gpt.requests[-1].json
    raw = direct_gpt.chat.completions.create(model="gpt-x", messages=HELLO)
    assert via.type == "message" and via.model == "gpt-x" and via.id.startswith("msg_")
    assert [b.type for b in via.content] == ["text"]
    assert via.content[0].text == raw.choices[0].message.content  # type: ignore[union-attr]
    assert via.stop_reason == "end_turn"
    assert raw.usage is not None
    assert via.usage.output_tokens == raw.usage.completion_tokens
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["stop"] == ["END"] and sent["model"] == "gpt-x"
    assert via.usage.model_extra is not None
    input_tokens = via.usage.input_tokens
    assert input_tokens == sent_prompt_tokens(direct_gpt, sent)
    expected = (input_tokens * 0.15 + via.usage.output_tokens * 0.60) / 1e6
    assert via.usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)


def sent_prompt_tokens(direct_gpt: openai.OpenAI, sent: dict[str, Any]) -> int:
    """What the fake OpenAI counts for exactly the request the router sent it."""
    again = direct_gpt.chat.completions.create(model="gpt-x", messages=sent["messages"])
    assert again.usage is not None
    return again.usage.prompt_tokens


def test_anthropic_sdk_streams_from_openai_model(client: anthropic.Anthropic, record: Path) -> None:
    whole = client.messages.create(model="gpt", max_tokens=100, messages=HELLO)
    final, events, request_id = stream_all(client, model="gpt")
    assert blocks(final) == blocks(whole)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        whole.usage.input_tokens,
        whole.usage.output_tokens,
    )
    [delta] = [e for e in events if e.type == "message_delta"]
    assert delta.delta.stop_reason == "end_turn"
    expected = (whole.usage.input_tokens * 0.15 + whole.usage.output_tokens * 0.60) / 1e6
    assert delta.usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)
    [end] = ends(record, request_id)
    assert end["status"] == "ok" and end["cost_pico"] == round(expected * 1e12)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_round_trip_with_openai_model(
    client: anthropic.Anthropic, fake_gpt: FakeOpenAI, stream: bool
) -> None:
    def ask(messages: Any) -> Any:
        kwargs: Any = {"model": "gpt", "tools": ANT_TOOLS, "messages": messages}
        if stream:
            with client.messages.stream(max_tokens=200, **kwargs) as live:
                return live.get_final_message()
        return client.messages.create(max_tokens=200, **kwargs)

    first = ask(HELLO)
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == WEATHER_INPUT
    sent = fake_gpt.requests[-1].json
    assert sent["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA
    messages: Any = [
        *HELLO,
        {"role": "assistant", "content": [b.to_dict() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21C"}],
        },
    ]
    second = ask(messages)
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    sent = fake_gpt.requests[-1].json
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "21C"}
    assert sent["messages"][-2]["tool_calls"][0]["id"] == call.id
    assert (
        json.loads(sent["messages"][-2]["tool_calls"][0]["function"]["arguments"]) == WEATHER_INPUT
    )


def test_openai_cached_tokens_become_cache_reads(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model="gpt-cache", max_tokens=100, messages=HELLO)
    assert (whole.usage.input_tokens, whole.usage.cache_read_input_tokens) == (400, 600)
    assert whole.usage.output_tokens == 7 and whole.usage.cache_creation_input_tokens == 0
    final, _, _ = stream_all(client, model="gpt-cache")
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (400, 600)
    expected = (400 * 0.15 + 600 * 0.075 + 7 * 0.60) / 1e6
    assert whole.usage.model_extra is not None
    assert whole.usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)


def test_converted_stream_cut_ends_with_error_event(
    client: anthropic.Anthropic, record: Path
) -> None:
    text, body, request_id = read_cut_stream(client, "gpt-drop")
    assert text == "x" * 12
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    [end] = ends(record, request_id)
    assert end["status"] == "upstream_error"


def test_unconvertible_block_is_400_naming_the_field(client: anthropic.Anthropic) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise"},
                # documents convert (tests/test_files_e2e.py); a container upload does not
                {"type": "container_upload", "file_id": "file_x"},
            ],
        }
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="gpt", max_tokens=10, messages=messages)
    body: Any = info.value.body
    assert body["error"]["message"].startswith("messages[0].content[1].type: 'container_upload'")


# -- across dialects: the openai SDK to a Claude model --------------------------------------------


def test_openai_sdk_to_claude_model(
    oai: openai.OpenAI, direct_claude: anthropic.Anthropic, fake_claude: FakeAnthropic
) -> None:
    messages: Any = [{"role": "system", "content": "Be terse."}, *HELLO]
    via = oai.chat.completions.create(model="claude-cache", messages=messages, max_tokens=100)
    sent = fake_claude.requests[-1].json
    raw = direct_claude.messages.create(model="cached", max_tokens=100, messages=HELLO)
    assert sent["system"] == [{"type": "text", "text": "Be terse."}]
    assert sent["max_tokens"] == 100 and sent["model"] == "cached"
    choice = via.choices[0]
    assert choice.message.content == raw.content[0].text  # type: ignore[union-attr]
    assert choice.finish_reason == "stop" and via.model == "cached"
    usage = via.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == 40 + 50 + 900
    assert usage.prompt_tokens_details.cached_tokens == 900
    assert usage.completion_tokens == raw.usage.output_tokens
    expected = (40 * 3 + 50 * 3.75 + 900 * 0.3 + usage.completion_tokens * 15) / 1e6
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)


def test_openai_sdk_streams_from_claude_model(oai: openai.OpenAI, record: Path) -> None:
    whole = oai.chat.completions.create(model="claude-cache", messages=HELLO)
    response = oai.chat.completions.with_raw_response.create(
        model="claude-cache", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage = "", None, None
    for chunk in response.parse():
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == whole.choices[0].message.content and finish == "stop"
    assert usage is not None and whole.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 900
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "ok" and end["usage"]["cache_write_tokens"] == 50


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_tool_round_trip_with_claude_model(
    oai: openai.OpenAI, fake_claude: FakeAnthropic, stream: bool
) -> None:
    def ask(messages: Any) -> tuple[str, list[dict[str, Any]], str | None]:
        kwargs: Any = {"model": "claude", "messages": messages, "tools": OAI_TOOLS}
        if not stream:
            choice = oai.chat.completions.create(**kwargs).choices[0]
            calls = [c.model_dump() for c in choice.message.tool_calls or ()]
            return choice.message.content or "", calls, choice.finish_reason
        text, calls, finish = "", {}, None
        for chunk in oai.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or ():
                    slot = calls.setdefault(
                        call.index,
                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                    )
                    slot["id"] = call.id or slot["id"]
                    if call.function is not None:
                        slot["function"]["name"] += call.function.name or ""
                        slot["function"]["arguments"] += call.function.arguments or ""
        return text, list(calls.values()), finish

    text, calls, finish = ask(HELLO)
    assert finish == "tool_calls" and text == "I'll use the get_weather tool."
    [call] = calls
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == WEATHER_INPUT
    messages: Any = [
        *HELLO,
        {"role": "assistant", "content": text, "tool_calls": calls},
        {"role": "tool", "tool_call_id": call["id"], "content": "21C"},
    ]
    text, calls, finish = ask(messages)
    assert finish == "stop" and calls == [] and text
    sent = fake_claude.requests[-1].json  # the fake checked tool_use/tool_result pairing too
    assert sent["messages"][-2]["content"][-1] == {
        "type": "tool_use",
        "id": call["id"],
        "name": "get_weather",
        "input": WEATHER_INPUT,
    }
    assert sent["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": call["id"],
                "content": [{"type": "text", "text": "21C"}],
            }
        ],
    }


def test_openai_sdk_n_above_one_streamed_is_400(oai: openai.OpenAI) -> None:
    """Whole answers with n > 1 fan out to Anthropic (tests/test_files_e2e.py); streams cannot."""
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="claude", messages=HELLO, n=2, stream=True)
    assert info.value.param == "n"


def test_openai_sdk_stream_cut_by_claude_is_billed_for_what_came(
    oai: openai.OpenAI, record: Path
) -> None:
    response = oai.chat.completions.with_raw_response.create(
        model="claude-drop", messages=HELLO, stream=True
    )
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in response.parse():
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "y" * 12
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "upstream_error"
    assert end["usage"]["estimated"] and end["usage"]["completion_tokens"] >= 3


def test_images_and_thinking_reach_an_openai_model(
    client: anthropic.Anthropic, fake_gpt: FakeOpenAI
) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "url", "url": "https://img.test/cat.png"}},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "text", "text": "What is in these?"},
            ],
        }
    ]
    answer = client.messages.create(
        model="gpt",
        max_tokens=4000,
        messages=messages,
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    assert answer.content[0].type == "text"
    sent = fake_gpt.requests[-1].json
    parts = sent["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[0]["image_url"]["url"] == "https://img.test/cat.png"
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
    assert sent["reasoning_effort"] == "medium", "a 2048-token thinking budget"
    assert sent["max_completion_tokens"] == 4000


def test_openai_sdk_reasoning_tool_loop_with_claude_model(
    oai: openai.OpenAI, fake_claude: FakeAnthropic
) -> None:
    """``reasoning_effort`` becomes a thinking budget, except on the turn that answers a tool
    call: the call came back without Claude's signed thinking, which Anthropic then refuses."""
    kwargs: Any = {"model": "claude", "tools": OAI_TOOLS, "reasoning_effort": "low"}
    first = oai.chat.completions.create(messages=HELLO, max_completion_tokens=3000, **kwargs)
    assert fake_claude.requests[-1].json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    [call] = first.choices[0].message.tool_calls or []
    messages: Any = [
        *HELLO,
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "21C"},
    ]
    second = oai.chat.completions.create(messages=messages, max_completion_tokens=3000, **kwargs)
    assert second.choices[0].finish_reason == "stop"
    assert "thinking" not in fake_claude.requests[-1].json
