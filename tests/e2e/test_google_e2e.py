"""The Gemini path end to end: the official openai and anthropic SDKs → the real router (granian)
→ a fake Gemini upstream on loopback, every request converted through the IR."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_gemini import Behavior, FakeGemini
from lmrouter.testing.server import RouterServer
from lmrouter_probe.records import ends

ADMIN = "sk-admin-gemini-e2e"
KEY = "AIza-upstream-secret-77"
HELLO: Any = [{"role": "user", "content": "Hello there, Gemini!"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "strict": True,
            "parameters": {  # strict-mode JSON Schema: Gemini's parser refuses these extras
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": ["string", "null"], "enum": ["C", "F", None]},
                },
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    }
]
PRICE = {"input": 0.30, "output": 2.50, "cache_read": 0.075}


def config(upstream: str, record: Path) -> str:
    routes = {
        "gemini": [("gem", "gemini-2.5-flash")],
        "gemini-cached": [("gem", "cached")],
        "gemini-thinker": [("gem", "thinker")],
        "gemini-unsafe": [("gem", "unsafe")],
        "gemini-blocked": [("gem", "blocked")],
        "gemini-busy": [("gem", "busy"), ("gem2", "gemini-2.5-flash")],
        "gemini-badkey": [("badkey", "gemini-2.5-flash"), ("gem", "gemini-2.5-flash")],
        "gemini-drop": [("gem", "drop")],
        "gemini-flaky": [("gem", "flaky")],
        "gemini-embed": [("gem", "text-embedding-004")],
    }
    return kit.config(
        admin=ADMIN,
        routing={"backoff": 0.01},
        probe={"record": record},
        providers={
            name: kit.provider("google", upstream, key)
            for name, key in (("gem", KEY), ("gem2", KEY), ("badkey", "AIza-wrong"))
        },
        models={
            model: [kit.route(p, m, price=PRICE) for p, m in chain]
            for model, chain in routes.items()
        },
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key=KEY)
    fake.script(
        "cached",
        Behavior(
            text="From the cache.",
            usage={
                "promptTokenCount": 1000,
                "cachedContentTokenCount": 800,
                "toolUsePromptTokenCount": 5,
                "candidatesTokenCount": 20,
                "thoughtsTokenCount": 30,
            },
        ),
    )
    fake.script("thinker", Behavior(text="It is 42.", thoughts="Six times seven is 42."))
    fake.script("unsafe", Behavior(text="Some text", finish_reason="SAFETY"))
    fake.script("blocked", Behavior(block_reason="PROHIBITED_CONTENT"))
    fake.script("busy", Behavior(status=429, retry_delay=20))
    fake.script("drop", Behavior(text="y" * 64, chunk_chars=8, drop_after_chunks=3))
    fake.script("flaky", Behavior(text="z" * 64, chunk_chars=8, error_after_chunks=2))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(fake: FakeGemini, probe_path: str, record: Path) -> Iterator[RouterServer]:
    with RouterServer(config(fake.base_url, record), python_path=[probe_path]) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def claude(router: RouterServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)


def gemini_usage(fake: FakeGemini, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the fake reports for ``body`` when asked directly."""
    response = httpx.post(
        f"{fake.base_url}/v1beta/models/{model}:generateContent",
        json=body,
        headers={"x-goog-api-key": KEY},
    )
    return response.json()["usageMetadata"]


def collect(stream: Any) -> tuple[str, dict[int, dict[str, str]], str | None, Any]:
    text = ""
    tools: dict[int, dict[str, str]] = {}
    finish = usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                slot = tools.setdefault(call.index, {"id": "", "name": "", "args": ""})
                slot["id"] += call.id or ""
                slot["name"] += (call.function.name or "") if call.function else ""
                slot["args"] += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    return text, tools, finish, usage


# -- chat through the openai SDK ---------------------------------------------------------------


def test_non_stream_text_and_usage(client: openai.OpenAI, fake: FakeGemini) -> None:
    fake.reset()
    messages = [{"role": "system", "content": "Be brief."}, *HELLO]
    completion = client.chat.completions.create(model="gemini", messages=messages)
    assert completion.choices[0].message.content == "Hello! You said: Hello there, Gemini!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gemini-2.5-flash", "the upstream's own model name"
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY and "key=" not in sent.path
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "Hello there, Gemini!"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }
    direct = gemini_usage(fake, "gemini-2.5-flash", sent.json)
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        direct["promptTokenCount"],
        direct["candidatesTokenCount"],
    )


def test_stream_text_finish_and_usage(client: openai.OpenAI, fake: FakeGemini) -> None:
    fake.reset()
    stream = client.chat.completions.create(
        model="gemini", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    text, tools, finish, usage = collect(stream)
    assert text == "Hello! You said: Hello there, Gemini!" and not tools
    assert finish == "stop"
    assert fake.requests[-1].path.endswith(":streamGenerateContent?alt=sse")
    direct = gemini_usage(fake, "gemini-2.5-flash", fake.requests[-1].json)
    assert usage is not None
    assert usage.prompt_tokens == direct["promptTokenCount"]
    assert usage.completion_tokens == direct["candidatesTokenCount"]
    expected = (usage.prompt_tokens * 0.30 + usage.completion_tokens * 2.50) / 1e6
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)


def test_stream_without_usage_asked_has_none(client: openai.OpenAI) -> None:
    text, _, finish, usage = collect(
        client.chat.completions.create(model="gemini", messages=HELLO, stream=True)
    )
    assert text.startswith("Hello!") and finish == "stop" and usage is None


def test_tool_call_round_trip(client: openai.OpenAI, fake: FakeGemini) -> None:
    fake.reset()
    first = client.chat.completions.create(model="gemini", messages=HELLO, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "test", "unit": "C"}  # type: ignore[union-attr]
    declared = fake.requests[-1].json["tools"][0]["functionDeclarations"][0]
    assert "additionalProperties" not in declared["parameters"], "stripped for Gemini"

    history = [
        *HELLO,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    final = client.chat.completions.create(model="gemini", messages=history, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "Hello! You said: Hello there, Gemini!"
    contents = fake.requests[-1].json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    [model_part] = contents[1]["parts"]
    assert model_part["functionCall"] == {
        "name": "get_weather",
        "args": {"city": "test", "unit": "C"},
        "id": call.id,
    }
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}, "id": call.id}}
    ]


def test_tool_call_stream(client: openai.OpenAI) -> None:
    _, tools, finish, _ = collect(
        client.chat.completions.create(
            model="gemini",
            messages=HELLO,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    assert finish == "tool_calls"
    assert tools[0]["name"] == "get_weather" and tools[0]["id"]
    assert json.loads(tools[0]["args"]) == {"city": "test", "unit": "C"}


@pytest.mark.parametrize("stream", [False, True])
def test_cached_and_reasoning_usage_is_exact(
    client: openai.OpenAI, router: RouterServer, stream: bool
) -> None:
    body: dict[str, Any] = {"model": "gemini-cached", "messages": HELLO}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
        _, _, _, usage = collect(client.chat.completions.create(**body))
    else:
        usage = client.chat.completions.create(**body).usage
    assert usage is not None
    assert usage.prompt_tokens == 1005  # promptTokenCount + toolUsePromptTokenCount
    assert usage.completion_tokens == 50  # candidates + thoughts
    assert usage.total_tokens == 1055
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 800
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 30
    # 205 uncached at 0.30 + 800 cached at 0.075 + 50 out at 2.50 per 1M tokens, exactly.
    raw = httpx.post(
        f"{router.openai_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert '"cost":0.0002465' in raw.text


def test_reasoning_effort_thinks_without_showing_thoughts(
    client: openai.OpenAI, fake: FakeGemini
) -> None:
    fake.reset()
    completion = client.chat.completions.create(
        model="gemini-thinker", messages=HELLO, reasoning_effort="low"
    )
    assert fake.requests[-1].json["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024}
    }
    assert completion.choices[0].message.content == "It is 42."
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert usage.completion_tokens == 2 + 3  # two pieces of text, three of thought


@pytest.mark.parametrize("stream", [False, True])
def test_length_finish(client: openai.OpenAI, stream: bool) -> None:
    kwargs: dict[str, Any] = {"model": "gemini", "messages": HELLO, "max_completion_tokens": 2}
    if stream:
        text, _, finish, _ = collect(client.chat.completions.create(stream=True, **kwargs))
    else:
        completion = client.chat.completions.create(**kwargs)
        text = completion.choices[0].message.content or ""
        finish = completion.choices[0].finish_reason
    assert (text, finish) == ("Hello! You said:", "length")  # two pieces of 8 characters


@pytest.mark.parametrize("model", ["gemini-unsafe", "gemini-blocked"])
@pytest.mark.parametrize("stream", [False, True])
def test_content_filter_finish(client: openai.OpenAI, model: str, stream: bool) -> None:
    if stream:
        _, _, finish, _ = collect(
            client.chat.completions.create(model=model, messages=HELLO, stream=True)
        )
    else:
        completion = client.chat.completions.create(model=model, messages=HELLO)
        finish = completion.choices[0].finish_reason
        assert not completion.choices[0].message.content
    assert finish == "content_filter"


# -- failures ------------------------------------------------------------------------------------


def test_429_falls_back_to_the_next_route(client: openai.OpenAI, record: Path) -> None:
    response = client.chat.completions.with_raw_response.create(model="gemini-busy", messages=HELLO)
    assert response.parse().choices[0].message.content == "Hello! You said: Hello there, Gemini!"
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "ok" and end["route"] == "gem2"
    assert end["attempts"] == [["gem", 429], ["gem2", 200]]


def test_a_rejected_key_falls_back_and_is_never_shown(
    client: openai.OpenAI, router: RouterServer, record: Path
) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="gemini-badkey", messages=HELLO
    )
    assert response.parse().choices[0].message.content
    [end] = ends(record, response.headers["x-request-id"])
    assert end["attempts"] == [["badkey", 400], ["gem", 200]]
    assert KEY not in router.logs() and "AIza-wrong" not in router.logs()


def test_stream_cut_midway(client: openai.OpenAI, record: Path) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="gemini-drop", messages=HELLO, stream=True
    )
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in response.parse():
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "y" * 24, "what came before the cut reached the client"
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "upstream_error"
    # Gemini reports cumulative usage on every chunk: the last one seen is what was generated.
    assert not end["usage"]["estimated"] and end["usage"]["completion_tokens"] == 3


def test_error_event_mid_stream(client: openai.OpenAI, record: Path) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="gemini-flaky", messages=HELLO, stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as info:
        for chunk in response.parse():
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "z" * 16
    assert "UNAVAILABLE" in str(info.value.message)
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "upstream_error"


def test_unconvertible_request_is_a_400(client: openai.OpenAI) -> None:
    bad_history: Any = [
        *HELLO,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini", messages=bad_history)
    assert "JSON object" in info.value.message


# -- embeddings ------------------------------------------------------------------------------


def direct_embedding(fake: FakeGemini, text: str, dims: int | None = None) -> list[float]:
    body: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
    if dims:
        body["outputDimensionality"] = dims
    response = httpx.post(
        f"{fake.base_url}/v1beta/models/text-embedding-004:embedContent",
        json=body,
        headers={"x-goog-api-key": KEY},
    )
    return response.json()["embedding"]["values"]


def test_embeddings_base64_by_default(
    client: openai.OpenAI, fake: FakeGemini, router: RouterServer
) -> None:
    texts = ["alpha", "beta gamma"]
    result = client.embeddings.create(model="gemini-embed", input=texts)  # SDK asks for base64
    assert [d.index for d in result.data] == [0, 1]
    for item, text in zip(result.data, texts, strict=True):
        assert item.embedding == pytest.approx(direct_embedding(fake, text), abs=1e-7)
    assert result.usage.prompt_tokens == 2 + 3  # estimated: Gemini reports no token counts
    # The wire really carried base64 little-endian float32.
    raw = httpx.post(
        f"{router.openai_url}/embeddings",
        json={"model": "gemini-embed", "input": "alpha", "encoding_format": "base64"},
        headers={"authorization": f"Bearer {ADMIN}"},
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(
        direct_embedding(fake, "alpha"), abs=1e-7
    )
    assert raw["usage"]["cost"] == pytest.approx(2 * 0.30 / 1e6, rel=1e-12)


def test_embeddings_float_with_dimensions(client: openai.OpenAI, fake: FakeGemini) -> None:
    fake.reset()
    result = client.embeddings.create(
        model="gemini-embed", input="alpha", encoding_format="float", dimensions=16
    )
    sent = fake.requests[-1].json
    assert sent["requests"][0]["outputDimensionality"] == 16
    [item] = result.data
    head = direct_embedding(fake, "alpha", 16)
    norm = math.sqrt(math.fsum(x * x for x in head))
    assert item.embedding == pytest.approx([x / norm for x in head], abs=1e-9)
    assert math.fsum(x * x for x in item.embedding) == pytest.approx(1.0)


def test_token_array_embeddings_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="gemini-embed", input=[[1, 2, 3]])
    assert info.value.param == "input"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": [1, 2, 3]}, "input"),
        ({"input": ["fine", ""]}, "input"),
        ({"input": ["fine", {"text": "x"}]}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": "16"}, "dimensions"),
        ({"input": ["x"] * 101}, "input"),  # Gemini's batch limit
    ],
)
def test_unconvertible_embeddings_name_the_field(
    router: RouterServer, fake: FakeGemini, extra: dict[str, Any], param: str
) -> None:
    fake.reset()
    response = httpx.post(
        f"{router.openai_url}/embeddings",
        json={"model": "gemini-embed", **extra},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert not fake.requests, "refused before going upstream"


# -- the anthropic SDK → Gemini ------------------------------------------------------------------


def test_anthropic_messages_to_gemini(claude: anthropic.Anthropic, fake: FakeGemini) -> None:
    fake.reset()
    message = claude.messages.create(
        model="gemini",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there, Gemini!"}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello! You said: Hello there, Gemini!"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    sent = fake.requests[-1].json
    assert sent["generationConfig"] == {"maxOutputTokens": 200}
    direct = gemini_usage(fake, "gemini-2.5-flash", sent)
    assert message.usage.input_tokens == direct["promptTokenCount"]
    assert message.usage.output_tokens == direct["candidatesTokenCount"]


def test_anthropic_stream_to_gemini(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="gemini",
        max_tokens=200,
        messages=[{"role": "user", "content": "Hello there, Gemini!"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello! You said: Hello there, Gemini!"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_anthropic_thinking_gets_gemini_thoughts(
    claude: anthropic.Anthropic, fake: FakeGemini
) -> None:
    fake.reset()
    message = claude.messages.create(
        model="gemini-thinker",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "What is six times seven?"}],
    )
    assert fake.requests[-1].json["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048,
        "includeThoughts": True,
    }
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text"]
    assert message.content[0].thinking == "Six times seven is 42."  # type: ignore[union-attr]
    assert message.content[1].text == "It is 42."  # type: ignore[union-attr]
