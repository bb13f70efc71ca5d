"""The fake OpenAI upstream speaks the real wire format: checked with the official SDK, raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest

from lmrouter.testing.fake_openai import Behavior, FakeOpenAI

KEY = "sk-test"
PROMPT = "What is the weather like in Paris today, and should I bring an umbrella?"
MESSAGES: Any = [  # Any: the SDK's TypedDict params do not accept plain dicts
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]
DEFAULT_TEXT = "Hello! You said: " + PROMPT[:40]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "note": {"type": ["string", "null"]},
            },
            "required": ["city"],
        },
    },
}
OTHER = {
    "type": "function",
    "function": {"name": "other", "parameters": {"type": "object", "properties": {"x": {}}}},
}
WEATHER_ARGS = {
    "city": "test",
    "days": 1,
    "metric": True,
    "unit": "celsius",
    "tags": ["test"],
    "where": {"lat": 1},
    "note": "test",
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY)
    with fake.run_in_thread() as base_url:
        assert base_url == f"http://127.0.0.1:{fake.port}/v1" == fake.base_url
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=10)


def raw(
    fake: FakeOpenAI,
    path: str,
    body: dict[str, Any] | bytes | None = None,
    *,
    method: str = "POST",
    key: str | None = KEY,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request over plain http.client: status, headers, body bytes (de-chunked)."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, "/v1" + path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def events(body: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body (asserting the OpenAI framing on the way)."""
    out = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: "), block
        assert b"\nevent:" not in block and not block.startswith(b"event:")
        if block != b"data: [DONE]":
            out.append(json.loads(block[6:]))
    return out


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "messages": MESSAGES, **extra}


# -- chat completions ------------------------------------------------------------------------------


def test_non_stream_text(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-x"
    assert completion.service_tier == "default"
    assert completion.system_fingerprint and completion.system_fingerprint.startswith("fp_")
    [choice] = completion.choices
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant"
    assert choice.message.content == DEFAULT_TEXT
    assert choice.message.tool_calls is None and choice.message.refusal is None
    usage = completion.usage
    assert usage is not None
    chars = len("You are terse.") + len(PROMPT)
    assert usage.prompt_tokens == chars // 4 + 4 * 2
    assert usage.completion_tokens == math.ceil(len(DEFAULT_TEXT) / 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    details = usage.completion_tokens_details
    assert details and details.reasoning_tokens == 0

    [recorded] = fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.json == {"model": "gpt-x", "messages": MESSAGES}
    assert recorded.at <= time.monotonic()


def test_non_stream_wire_shape(fake: FakeOpenAI) -> None:
    status, headers, body = raw(fake, "/chat/completions", chat())
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_")
    assert body.startswith(b'{\n  "id": "chatcmpl-')  # pretty-printed, like the real API
    data = json.loads(body)
    assert list(data) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ]
    assert isinstance(data["created"], int)
    [choice] = data["choices"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": DEFAULT_TEXT,
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert data["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert data["usage"]["completion_tokens_details"] == {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }


def test_stream_reassembles_to_the_same_text(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True))
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None and last.choices[0].delta.role is None
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == DEFAULT_TEXT
    assert all(c.usage is None for c in chunks)
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert all(p and len(p) <= 4 for p in pieces)


def test_stream_usage_only_with_include_usage(fake: FakeOpenAI) -> None:
    status, headers, body = raw(fake, "/chat/completions", chat(stream=True))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert body.endswith(b"data: [DONE]\n\n")
    plain = events(body)
    assert all("usage" not in e for e in plain)
    assert all(len(e["choices"]) == 1 for e in plain)
    assert plain[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert plain[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(isinstance(e["obfuscation"], str) for e in plain)

    _, _, body = raw(
        fake, "/chat/completions", chat(stream=True, stream_options={"include_usage": True})
    )
    with_usage = events(body)
    *choice_chunks, usage_chunk = with_usage
    assert all(e["usage"] is None for e in choice_chunks)
    assert usage_chunk["choices"] == []
    _, _, plain_body = raw(fake, "/chat/completions", chat())
    assert usage_chunk["usage"] == json.loads(plain_body)["usage"]

    options = {"include_usage": True, "include_obfuscation": False}
    _, _, body = raw(fake, "/chat/completions", chat(stream=True, stream_options=options))
    assert all("obfuscation" not in e for e in events(body))


def test_tool_call_stream_matches_non_stream(client: openai.OpenAI) -> None:
    tools: Any = [WEATHER, OTHER]
    completion = client.chat.completions.create(model="gpt-x", messages=MESSAGES, tools=tools)
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS

    stream = client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    [head] = first.tool_calls or []
    assert head.index == 0 and head.id and head.id.startswith("call_") and head.type == "function"
    assert head.function and head.function.name == "get_weather" and head.function.arguments == ""
    arguments = ""
    for chunk in chunks[1:]:
        for fragment in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert fragment.index == 0 and fragment.id is None and fragment.function
            arguments += fragment.function.arguments or ""
    assert arguments == call.function.arguments
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage == completion.usage

    named: Any = {"type": "function", "function": {"name": "other"}}
    forced = client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        tools=tools,
        tool_choice=named,
    )
    [other] = forced.choices[0].message.tool_calls or []
    assert other.function.name == "other" and json.loads(other.function.arguments) == {"x": "test"}

    none = client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        tools=tools,
        tool_choice="none",
    )
    assert none.choices[0].message.content == DEFAULT_TEXT

    round_trip: Any = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = client.chat.completions.create(model="gpt-x", messages=round_trip, tools=tools)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == DEFAULT_TEXT
    assert answer.choices[0].message.tool_calls is None


def test_n_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-x", messages=MESSAGES, n=2)
    texts = [c.message.content for c in completion.choices]
    assert texts == [DEFAULT_TEXT, DEFAULT_TEXT + " (choice 1)"]
    assert [c.index for c in completion.choices] == [0, 1]

    stream = client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    indexes = [c.choices[0].index for c in chunks if c.choices]
    assert indexes[:4] == [0, 1, 0, 1]  # interleaved, one choice per chunk
    joined = ["", ""]
    finishes = {}
    for chunk in chunks:
        for choice in chunk.choices:
            joined[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert joined == texts
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1].usage == completion.usage


def test_max_tokens_truncates_with_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-x",
        messages=MESSAGES,
        max_completion_tokens=2,
    )
    assert completion.choices[0].message.content == DEFAULT_TEXT[:8]
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage and completion.usage.completion_tokens == 2


def test_usage_override_and_vendor_variant(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    numbers = {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 30}
    behavior = Behavior(
        text="abcdefgh",
        usage={**numbers, "reasoning_tokens": 5},
        usage_in_last_choice_chunk=True,
        finish_reason="content_filter",
        chunk_chars=3,
    )
    fake.script("vendor", behavior)
    completion = client.chat.completions.create(model="vendor", messages=MESSAGES)
    usage = completion.usage
    assert usage and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        100,
        20,
        120,
    )
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 30
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert completion.choices[0].finish_reason == "content_filter"

    _, _, body = raw(
        fake, "/chat/completions", {"model": "vendor", "messages": MESSAGES, "stream": True}
    )
    chunks = events(body)
    assert [e["choices"][0]["delta"].get("content") for e in chunks[1:-1]] == ["abc", "def", "gh"]
    assert all(e["choices"] for e in chunks)  # no separate usage chunk
    assert all("usage" not in e for e in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["usage"]["total_tokens"] == 120


# -- errors and validation -------------------------------------------------------------------------


def error_of(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    assert list(data) == ["error"]
    assert sorted(data["error"]) == ["code", "message", "param", "type"]
    return data["error"]


def test_stream_options_need_stream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-x",
            messages=MESSAGES,
            stream_options={"include_usage": True},
        )
    assert caught.value.status_code == 400
    assert caught.value.param == "stream_options"
    assert "only allowed when 'stream' is enabled" in caught.value.message

    status, _, body = raw(fake, "/chat/completions", chat(stream=False, stream_options={}))
    assert status == 400 and error_of(body)["param"] == "stream_options"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": MESSAGES}, "model", "missing_required_parameter"),
        ({"model": "gpt-x"}, "messages", "missing_required_parameter"),
        ({"model": "gpt-x", "messages": []}, "messages", "empty_array"),
        ({"model": "gpt-x", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "gpt-x", "messages": [{"content": "x"}]}, "messages[0].role", None),
        ({"model": "gpt-x", "messages": MESSAGES, "n": 0}, "n", "integer_below_min_value"),
        ({"model": "gpt-x", "messages": MESSAGES, "tool_choice": "auto"}, "tool_choice", None),
    ],
)
def test_validation_errors(
    fake: FakeOpenAI, body: dict[str, Any], param: str, code: str | None
) -> None:
    status, headers, data = raw(fake, "/chat/completions", body)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = error_of(data)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_malformed_json_and_unknown_path(fake: FakeOpenAI) -> None:
    status, _, body = raw(fake, "/chat/completions", b'{"model": "gpt-x",')
    assert status == 400
    assert "could not parse the JSON body" in error_of(body)["message"]
    assert fake.requests[-1].json is None and fake.requests[-1].body == b'{"model": "gpt-x",'

    status, _, body = raw(fake, "/nope", chat())
    assert status == 404
    assert error_of(body)["message"] == "Invalid URL (POST /v1/nope)"


def test_wrong_or_missing_key(fake: FakeOpenAI) -> None:
    bad = openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert "sk-wrong-key" not in caught.value.message  # the key is masked

    status, _, body = raw(fake, "/chat/completions", chat(), key=None)
    assert status == 401
    assert error_of(body)["message"].startswith("You didn't provide an API key")


def test_rate_limited_with_retry_after(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script("limited", Behavior(status=429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="limited", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    assert len(fake.requests) == 1

    fake.script("broken", Behavior(status=503, error_message="down", error_code="overloaded"))
    with pytest.raises(openai.InternalServerError) as server_error:
        client.chat.completions.create(model="broken", messages=MESSAGES, stream=True)
    assert server_error.value.status_code == 503
    assert server_error.value.body == {
        "message": "down",
        "type": "server_error",
        "param": None,
        "code": "overloaded",
    }


# -- connection behaviour --------------------------------------------------------------------------


def test_drop_after_chunks_makes_the_sdk_raise(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    for delay in (0.0, 0.01):
        fake.script("flaky", Behavior(drop_after_chunks=2, chunk_delay=delay))
        received: list[str] = []
        stream = client.chat.completions.create(model="flaky", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIConnectionError):
            received.extend(chunk.choices[0].delta.content or "" for chunk in stream)
        assert "".join(received) == DEFAULT_TEXT[:8]

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="flaky", messages=MESSAGES)
    assert fake.disconnects == []  # the fake's own drops are not client disconnects


def test_omit_done_and_crlf_still_parse(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script("nodone", Behavior(omit_done=True))
    fake.script("crlf", Behavior(crlf=True))
    for model in ("nodone", "crlf"):
        stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == DEFAULT_TEXT

    _, _, body = raw(
        fake, "/chat/completions", {"model": "nodone", "messages": MESSAGES, "stream": True}
    )
    assert b"[DONE]" not in body and body.endswith(b"}\n\n")
    _, _, body = raw(
        fake, "/chat/completions", {"model": "crlf", "messages": MESSAGES, "stream": True}
    )
    assert body.endswith(b"data: [DONE]\r\n\r\n")
    assert body.count(b"\n") == body.count(b"\r\n")


def test_delays(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script("slow", Behavior(first_byte_delay=0.15, chunk_delay=0.02, text="abcdefgh"))
    started = time.monotonic()
    client.chat.completions.create(model="slow", messages=MESSAGES)
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    stream = client.chat.completions.create(model="slow", messages=MESSAGES, stream=True)
    stamps = [time.monotonic() - started for _ in stream]
    assert stamps[0] >= 0.15
    assert stamps[-1] >= 0.15 + 0.02 * 3  # role, 2 pieces, finish: three gaps at least


def test_client_disconnect_is_recorded(fake: FakeOpenAI) -> None:
    fake.script("long", Behavior(chunk_delay=0.05, chunk_chars=1))
    body = json.dumps({"model": "long", "messages": MESSAGES, "stream": True}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        seen = b""
        while seen.count(b"data: ") < 3:  # the role chunk and two content deltas
            seen += sock.recv(65536)
    closed_at = time.monotonic()
    deadline = closed_at + 2
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.005)
    [gone] = fake.disconnects
    assert gone.model == "long"
    assert 2 <= gone.chunks_sent < len(DEFAULT_TEXT)
    assert closed_at <= gone.at  # noticed before the end: chunks_sent above


# -- embeddings, models ----------------------------------------------------------------------------


def test_embeddings(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    default = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    assert fake.requests[-1].json["encoding_format"] == "base64"  # the SDK's default
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["hello", "world"], encoding_format="float"
    )
    assert fake.requests[-1].json["encoding_format"] == "float"
    assert default.object == "list" and default.model == "text-embedding-3-small"
    assert [d.index for d in default.data] == [0, 1]
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    first, second = (d.embedding for d in default.data)
    assert len(first) == 8 and first != second
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-5)
    assert default.usage.prompt_tokens == default.usage.total_tokens == 4

    tokens = client.embeddings.create(model="e", input=[1, 2, 3], dimensions=16)
    assert len(tokens.data) == 1 and len(tokens.data[0].embedding) == 16
    assert tokens.usage.prompt_tokens == 3

    status, _, body = raw(
        fake, "/embeddings", {"model": "e", "input": "hello", "encoding_format": "base64"}
    )
    assert status == 200
    [item] = json.loads(body)["data"]
    decoded = struct.unpack("<8f", base64.b64decode(item["embedding"]))
    assert list(decoded) == first

    status, _, body = raw(fake, "/embeddings", {"model": "e", "input": []})
    assert status == 400 and error_of(body)["param"] == "input"


def test_models(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script("listed-model", Behavior())
    models = client.models.list()
    assert "listed-model" in [m.id for m in models.data]
    model = client.models.retrieve("listed-model")
    assert (model.id, model.object, model.owned_by) == ("listed-model", "model", "openai")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("never-scripted")


# -- other ways to run it --------------------------------------------------------------------------


def test_async_start_and_stop() -> None:
    async def scenario() -> None:
        fake = FakeOpenAI()  # no key: anything goes
        fake.default = Behavior(text="async!")
        base_url = await fake.start()
        try:
            async with aiohttp.ClientSession() as session:
                payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with session.post(f"{base_url}/chat/completions", json=payload) as resp:
                    assert resp.status == 200
                    data = await resp.json()
            assert data["choices"][0]["message"]["content"] == "async!"
            assert fake.requests[0].headers.get("authorization") is None
        finally:
            await fake.stop()

    asyncio.run(scenario())
