"""The fake Anthropic upstream speaks the real Messages API: checked with the official anthropic
SDK (which validates every response and event against its own types) and with raw HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from lmrouter.testing.fake_anthropic import Behavior, FakeAnthropic

KEY = "sk-ant-test"
PROMPT = "What is the weather like in Paris today, and should I bring an umbrella?"
HELLO: Any = [{"role": "user", "content": PROMPT}]  # Any: the SDK's TypedDicts
DEFAULT_TEXT = "Hello! You said: " + PROMPT[:40]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
OTHER: Any = {"name": "other", "input_schema": {"type": "object", "properties": {"x": {}}}}
WEATHER_INPUT = {"city": "test", "days": 1, "unit": "celsius"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=KEY)
    fake.script(
        "cached",
        Behavior(usage={"cache_read_input_tokens": 900, "cache_creation_input_tokens": 50}),
    )
    fake.script("fixed", Behavior(text="The quick brown fox. STOP here. Then more."))
    fake.script("e402", Behavior(status=402))
    fake.script("scripted-input", Behavior(tool_input={"city": "Paris", "days": 3}))
    fake.script("e429", Behavior(status=429, retry_after=7))
    fake.script("e529", Behavior(status=529))
    fake.script("broken", Behavior(text="z" * 80, error_after_chunks=3))
    fake.script("cut", Behavior(text="y" * 80, drop_after_chunks=2))
    # 200 s of stream: a client slow to read its first chunks (a busy machine) still leaves it
    # long before its end (a 2 s one could be all sent, into the socket's buffers, by then)
    fake.script("endless", Behavior(text="s" * 40_000, chunk_delay=0.02))
    fake.script("late", Behavior(first_byte_delay=1.0))
    with fake.run_in_thread() as base_url:
        assert base_url == f"http://127.0.0.1:{fake.port}" == fake.base_url
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic) -> FakeAnthropic:
    server.reset()
    return server


@pytest.fixture
def client(server: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0)


def blocks(message: Any) -> list[dict[str, Any]]:
    """Content blocks as plain dicts (a streamed message's blocks are Parsed… subclasses)."""
    return [block.model_dump(exclude={"parsed_output"}) for block in message.content]


def raw_events(fake: FakeAnthropic, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The stream as (event line, data) pairs, read with plain HTTP."""
    response = httpx.post(
        f"{fake.base_url}/v1/messages",
        json={"stream": True, **body},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in response.text.split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        name, data = lines[0][7:], orjson.loads(lines[1][6:])
        assert data["type"] == name, "the event line names the data's type"
        events.append((name, data))
    return events


# -- answers ------------------------------------------------------------------------------------


def test_message_object(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    message = client.messages.create(model="claude-x", max_tokens=200, messages=HELLO)
    assert message.id.startswith("msg_01") and message.type == "message"
    assert message.role == "assistant" and message.model == "claude-x"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == DEFAULT_TEXT  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == len(PROMPT) // 4 + 4
    assert message.usage.output_tokens == -(-len(DEFAULT_TEXT) // 4)  # one per 4-char delta
    assert message.usage.cache_read_input_tokens == 0
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages" and sent.json["model"] == "claude-x"
    assert sent.headers["anthropic-version"]


def test_stream_agrees_with_non_stream(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model="claude-x", max_tokens=200, messages=HELLO)
    with client.messages.stream(model="claude-x", max_tokens=200, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert blocks(final) == blocks(whole)
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.stop_reason == "end_turn"


def test_stream_framing_and_cumulative_usage(fake: FakeAnthropic) -> None:
    events = raw_events(fake, {"model": "cached", "max_tokens": 100, "messages": HELLO})
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["cache_read_input_tokens"] == 900
    assert start["usage"]["cache_creation_input_tokens"] == 50
    assert start["usage"]["output_tokens"] == 1
    deltas = [data for name, data in events if name == "content_block_delta"]
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == len(deltas), "cumulative, not the last increment"
    assert final["usage"]["input_tokens"] == start["usage"]["input_tokens"]
    assert final["usage"]["cache_read_input_tokens"] == 900


def test_cache_usage_when_scripted(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="cached", max_tokens=100, messages=HELLO)
    assert message.usage.cache_read_input_tokens == 900
    assert message.usage.cache_creation_input_tokens == 50
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 50


def test_max_tokens_truncates(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="claude-x", max_tokens=3, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == DEFAULT_TEXT[:12]  # type: ignore[union-attr]
    assert message.usage.output_tokens == 3


def test_stop_sequence(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="fixed", max_tokens=100, messages=HELLO, stop_sequences=["NEVER", "STOP"]
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"
    assert message.content[0].text == "The quick brown fox. "  # type: ignore[union-attr]


# -- tools and thinking -------------------------------------------------------------------------


def test_tool_use_auto_has_text_first(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-x", max_tokens=200, messages=HELLO, tools=[WEATHER, OTHER]
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    call = message.content[1]
    assert call.type == "tool_use" and call.id.startswith("toolu_01")
    assert call.name == "get_weather" and call.input == WEATHER_INPUT
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("choice", "name"),
    [({"type": "any"}, "get_weather"), ({"type": "tool", "name": "other"}, "other")],
)
def test_tool_choice_forces_a_call(client: anthropic.Anthropic, choice: Any, name: str) -> None:
    message = client.messages.create(
        model="claude-x", max_tokens=200, messages=HELLO, tools=[WEATHER, OTHER], tool_choice=choice
    )
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.content[0].name == name  # type: ignore[union-attr]


def test_scripted_tool_input(client: anthropic.Anthropic) -> None:
    """``tool_input`` replaces the input built from the schema, whatever the schema says."""
    message = client.messages.create(
        model="scripted-input",
        max_tokens=200,
        messages=HELLO,
        tools=[{"name": "answer", "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": "answer"},
    )
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.content[0].input == {"city": "Paris", "days": 3}  # type: ignore[union-attr]


def test_tool_choice_none_answers_with_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-x",
        max_tokens=200,
        messages=HELLO,
        tools=[WEATHER],
        tool_choice={"type": "none"},
    )
    assert [block.type for block in message.content] == ["text"]


def test_streamed_tool_use(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    with client.messages.stream(
        model="claude-x", max_tokens=200, messages=HELLO, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[1].input == WEATHER_INPUT  # type: ignore[union-attr]
    events = raw_events(
        fake, {"model": "claude-x", "max_tokens": 200, "messages": HELLO, "tools": [WEATHER]}
    )
    tool_deltas = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert tool_deltas[0] == {"type": "input_json_delta", "partial_json": ""}, "as the real API"
    assert orjson.loads("".join(d["partial_json"] for d in tool_deltas)) == WEATHER_INPUT


def test_tool_round_trip(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="claude-x", max_tokens=200, messages=HELLO, tools=[WEATHER]
    )
    call = first.content[1]
    assert call.type == "tool_use"
    messages: Any = [
        *HELLO,
        {"role": "assistant", "content": [block.to_dict() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21C"}],
        },
    ]
    second = client.messages.create(
        model="claude-x", max_tokens=200, messages=messages, tools=[WEATHER]
    )
    assert [block.type for block in second.content] == ["text"]
    assert second.stop_reason == "end_turn"


def test_tool_use_must_be_answered(client: anthropic.Anthropic) -> None:
    messages: Any = [
        *HELLO,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": "well?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks") as info:
        client.messages.create(model="claude-x", max_tokens=100, messages=messages, tools=[WEATHER])
    assert "messages.2" in str(info.value) and "toolu_1" in str(info.value)
    stray: Any = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}]
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        client.messages.create(model="claude-x", max_tokens=100, messages=stray)


def test_thinking_block_with_signature(client: anthropic.Anthropic) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(
        model="claude-x", max_tokens=2000, messages=HELLO, thinking=thinking
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    block = message.content[0]
    assert block.type == "thinking" and block.thinking.startswith("Let me think about")
    assert len(block.signature) > 40
    with client.messages.stream(
        model="claude-x", max_tokens=2000, messages=HELLO, thinking=thinking
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    assert blocks(final) == blocks(message)


@pytest.mark.parametrize(
    ("thinking", "words"),
    [
        ({"type": "enabled", "budget_tokens": 500}, "greater than or equal to 1024"),
        ({"type": "enabled", "budget_tokens": 4000}, "`max_tokens` must be greater"),
        ({"type": "sometimes"}, "thinking"),
    ],
)
def test_thinking_budget_checks(client: anthropic.Anthropic, thinking: Any, words: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match=words):
        client.messages.create(model="claude-x", max_tokens=2000, messages=HELLO, thinking=thinking)


def test_thinking_needs_the_tool_turn_to_open_with_thinking(client: anthropic.Anthropic) -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    messages: Any = [
        *HELLO,
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    kwargs: Any = {"model": "claude-x", "max_tokens": 2000, "tools": [WEATHER]}
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        client.messages.create(messages=messages, thinking=thinking, **kwargs)
    messages[1]["content"].insert(0, {"type": "thinking", "thinking": "x", "signature": "s"})
    answer = client.messages.create(messages=messages, thinking=thinking, **kwargs)
    assert [b.type for b in answer.content] == ["thinking", "text"]


# -- the caller's mistakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 10, "messages": HELLO}, "model: Field required"),
        ({"model": "m", "messages": HELLO}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 0, "messages": HELLO}, "max_tokens: Input should be greater"),
        ({"model": "m", "max_tokens": 10}, "messages: Field required"),
        ({"model": "m", "max_tokens": 10, "messages": []}, "at least one message"),
        (
            {"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            },
            "text content blocks must be non-empty",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "video"}]}],
            },
            "messages.0.content.0: Input tag 'video'",
        ),
        ({"model": "m", "max_tokens": 10, "messages": HELLO, "temperature": 1.5}, "temperature"),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": HELLO,
                "tools": [{"name": "t", "input_schema": {"type": "string"}}],
            },
            "tools.0.custom.input_schema.type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": HELLO,
                "tools": [WEATHER],
                "tool_choice": {"type": "tool", "name": "nope"},
            },
            "Tool 'nope' not found",
        ),
    ],
)
def test_validation_like_anthropic(fake: FakeAnthropic, body: dict[str, Any], message: str) -> None:
    response = httpx.post(
        f"{fake.base_url}/v1/messages",
        json=body,
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]
    assert error["request_id"].startswith("req_") and response.headers["request-id"]


def test_keys_and_version_header(fake: FakeAnthropic) -> None:
    url = f"{fake.base_url}/v1/messages"
    body = {"model": "m", "max_tokens": 10, "messages": HELLO}
    version = {"anthropic-version": "2023-06-01"}
    assert httpx.post(url, json=body, headers={"x-api-key": KEY, **version}).status_code == 200
    assert (
        httpx.post(
            url, json=body, headers={"authorization": f"Bearer {KEY}", **version}
        ).status_code
        == 200
    )
    missing = httpx.post(url, json=body, headers=version)
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    wrong = httpx.post(url, json=body, headers={"x-api-key": "sk-ant-wrong", **version})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid x-api-key"
    unversioned = httpx.post(url, json=body, headers={"x-api-key": KEY})
    assert unversioned.status_code == 400
    assert "anthropic-version" in unversioned.json()["error"]["message"]
    elsewhere = httpx.post(
        f"{fake.base_url}/v1/complete", json=body, headers={"x-api-key": KEY, **version}
    )
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["type"] == "not_found_error"


def test_sdk_raises_authentication_error(server: FakeAnthropic) -> None:
    bad = anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="m", max_tokens=10, messages=HELLO)


# -- scripted failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "exception", "kind"),
    [
        ("e402", anthropic.PaymentRequiredError, "billing_error"),
        ("e429", anthropic.RateLimitError, "rate_limit_error"),
        ("e529", anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_scripted_errors(
    client: anthropic.Anthropic, model: str, exception: type[Exception], kind: str
) -> None:
    with pytest.raises(exception) as info:
        client.messages.create(model=model, max_tokens=10, messages=HELLO)
    error: Any = info.value
    assert error.body["type"] == "error" and error.body["error"]["type"] == kind
    assert error.body["error"]["message"]
    if model == "e429":
        assert error.response.headers["retry-after"] == "7"


def test_mid_stream_error_event(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    text = ""
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model="broken", max_tokens=100, messages=HELLO) as stream,
    ):
        for piece in stream.text_stream:
            text += piece
    assert text == "z" * 12, "three deltas came before the error"
    body: Any = info.value.body
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    names = [
        name
        for name, _ in raw_events(fake, {"model": "broken", "max_tokens": 100, "messages": HELLO})
    ]
    assert names[-1] == "error" and "message_delta" not in names


def test_dropped_stream(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    text = ""
    with (
        pytest.raises(Exception) as info,  # the SDK lets its transport's error through
        client.messages.stream(model="cut", max_tokens=100, messages=HELLO) as stream,
    ):
        for piece in stream.text_stream:
            text += piece
    assert type(info.value).__name__ == "RemoteProtocolError"  # the cut chunked body
    assert text == "y" * 8


def test_client_disconnect_is_recorded(fake: FakeAnthropic) -> None:
    body = {"model": "endless", "max_tokens": 1000, "messages": HELLO, "stream": True}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", f"{fake.base_url}/v1/messages", json=body, headers=headers) as response,
    ):
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("event: content_block_delta")
            if seen >= 3:
                break
    deadline = time.monotonic() + 60  # only catches a disconnect never noticed
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    [gone] = fake.disconnects
    assert gone.model == "endless" and 3 <= gone.chunks_sent < 10_000  # noticed before the end


def test_first_byte_delay(server: FakeAnthropic) -> None:
    impatient = anthropic.Anthropic(
        base_url=server.base_url, api_key=KEY, max_retries=0, timeout=0.3
    )
    # the first byte comes after 1 s: the client's 0.3 s timeout fires first
    with pytest.raises(anthropic.APITimeoutError):
        impatient.messages.create(model="late", max_tokens=10, messages=HELLO)


def test_reset_forgets_requests(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    client.messages.create(model="claude-x", max_tokens=10, messages=HELLO)
    assert len(fake.requests) == 1
    fake.reset()
    assert fake.requests == [] and fake.disconnects == []
