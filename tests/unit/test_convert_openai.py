"""The OpenAI Chat Completions converters, both directions.

Inbound (``lmrouter.dialects.openai``): a chat request → IR, and IR answers and streams →
``chat.completion`` / ``chat.completion.chunk`` bytes, checked with the official openai SDK's own
types. Outbound (``lmrouter_openai``): IR → a chat request, and chat answers → IR. Round trips
with hypothesis: request → IR → request is the original up to the documented normalisations, and
IR events → rendered stream → parsed stream are the same events.
"""

from __future__ import annotations

import base64
import string
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from lmrouter import ir
from lmrouter.config import Price, Route
from lmrouter.convert import ConvertingRelay
from lmrouter.dialects.openai import CHAT, ChatRenderer, error_body, parse_chat, render, to_ir
from lmrouter.errors import RouterError
from lmrouter.usage import Usage
from lmrouter_openai import OpenAIConfig, OpenAIProvider
from lmrouter_openai.chat import ChatStreamParser

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


def convert(doc: dict[str, Any]) -> ir.ChatRequest:
    """As the pipeline does it: the dialect's checks on the body, then ``to_ir``."""
    parsed = parse_chat(orjson.dumps(doc))
    return to_ir(parsed.doc)


def refused(doc: dict[str, Any]) -> RouterError:
    with pytest.raises(RouterError) as caught:
        convert(doc)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_request"
    return caught.value


def test_the_dialect_converts() -> None:
    assert CHAT.kind == "chat"
    assert CHAT.to_ir is to_ir
    assert CHAT.render is render
    assert CHAT.renderer is ChatRenderer
    assert CHAT.stream_relay is not None  # the pass-through is still there


# -- requests in ------------------------------------------------------------------------------


def test_an_agent_conversation() -> None:
    doc = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are a travel agent."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/b.jpg", "detail": "high"},
                    },
                ],
                "name": "ann",
            },
            {
                "role": "assistant",
                "content": "Let me look both up.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q":"a"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "geo", "arguments": '{"q":"b"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_2", "content": "Rome"},
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "Paris"}],
            },
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Thanks!"},
            {"role": "user", "content": "Which is bigger?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Search",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "geo"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "geo"}},
        "parallel_tool_calls": False,
        "max_tokens": 300,
        "temperature": 0.5,
        "top_p": 1,
        "stop": "###",
        "reasoning_effort": "low",
        "user": "user-7",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 3,  # no place in the IR: ignored
    }
    assert convert(doc) == ir.ChatRequest(
        model="claude",
        system=[ir.Text(text="You are a travel agent."), ir.Text(text="Be brief.")],
        messages=[
            ir.Message(
                role="user",
                parts=[
                    ir.Text(text="Where is this?"),
                    ir.Image(data=PNG, media_type="image/png"),
                    ir.Image(url="https://example.com/b.jpg"),
                ],
            ),
            ir.Message(
                role="assistant",
                parts=[
                    ir.Text(text="Let me look both up."),
                    ir.ToolCall(id="call_1", name="lookup", arguments='{"q":"a"}'),
                    ir.ToolCall(id="call_2", name="geo", arguments='{"q":"b"}'),
                ],
            ),
            ir.Message(
                role="user",
                parts=[
                    ir.ToolResult(id="call_2", content=[ir.Text(text="Rome")], name="geo"),
                    ir.ToolResult(id="call_1", content=[ir.Text(text="Paris")], name="lookup"),
                    ir.Text(text="Thanks!"),
                    ir.Text(text="Which is bigger?"),
                ],
            ),
        ],
        tools=[
            ir.Tool(
                name="lookup",
                description="Search",
                parameters={"type": "object", "properties": {"q": {"type": "string"}}},
            ),
            ir.Tool(name="geo"),
        ],
        tool_choice=ir.ToolChoice(mode="tool", name="geo"),
        parallel_tool_calls=False,
        max_tokens=300,
        temperature=0.5,
        top_p=1.0,
        stop=["###"],
        stream=True,
        reasoning_effort="low",
        user="user-7",
    )


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    doc = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "max_completion_tokens": 9,
    }
    assert convert(doc).max_tokens == 9


@pytest.mark.parametrize(
    ("effort", "ir_effort", "budget"),
    [
        ("none", None, 0),
        ("minimal", "minimal", None),
        ("medium", "medium", None),
        ("high", "high", None),
        ("xhigh", "high", None),
    ],
)
def test_reasoning_effort(effort: str, ir_effort: str | None, budget: int | None) -> None:
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    request = convert({**doc, "reasoning_effort": effort})
    assert (request.reasoning_effort, request.thinking_budget) == (ir_effort, budget)


def test_refusals_and_content_arrays_in_assistant_turns() -> None:
    doc = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "?"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
            },
            {"role": "assistant", "content": None, "refusal": "still no"},
        ],
    }
    assert convert(doc).messages[1] == ir.Message(
        role="assistant",
        parts=[ir.Text(text="a"), ir.Text(text="no"), ir.Text(text="still no")],
    )


def test_percent_encoded_data_url() -> None:
    url = "data:image/SVG+xml,%3Csvg%20xmlns%3D%22x%22%2F%3E"
    doc = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
        ],
    }
    [image] = convert(doc).messages[0].parts
    assert image == ir.Image(
        data=base64.b64encode(b'<svg xmlns="x"/>').decode(), media_type="image/svg+xml"
    )


def test_only_system_messages_and_safety_identifier() -> None:
    doc = {
        "model": "m",
        "messages": [{"role": "system", "content": "x"}],
        "safety_identifier": "hash-1",
        "tool_choice": "none",
        "stop": ["a", "b"],
    }
    request = convert(doc)
    assert request.messages == []
    assert request.system == [ir.Text(text="x")]
    assert request.user == "hash-1"
    assert request.tool_choice == ir.ToolChoice(mode="none")
    assert request.stop == ["a", "b"]


def test_cache_breakpoints_on_text_parts() -> None:
    """OpenRouter's and LiteLLM's way to reach Anthropic's prompt caching in this dialect."""
    ephemeral = {"type": "ephemeral"}
    doc = {
        "model": "m",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "long", "cache_control": ephemeral}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "doc", "cache_control": ephemeral},
                    {"type": "text", "text": "q"},
                ],
            },
        ],
    }
    request = convert(doc)
    assert request.system == [ir.Text(text="long", cache=True)]
    assert request.messages[0].parts == [ir.Text(text="doc", cache=True), ir.Text(text="q")]


def test_tool_result_for_an_unknown_call_has_no_name() -> None:
    doc = {"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}
    [result] = convert(doc).messages[0].parts
    assert result == ir.ToolResult(id="x", content=[ir.Text(text="r")], name="")


USER = {"role": "user", "content": "hi"}


def user_part(part: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [USER, {"role": "user", "content": [part]}]}


@pytest.mark.parametrize(
    ("doc", "param", "words"),
    [
        (user_part({"type": "video", "video": {}}), "messages[1].content[0].type", "video"),
        (
            user_part({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}),
            "messages[1].content[0].input_audio.data",
            "base64",
        ),
        (
            user_part({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}),
            "messages[1].content[0].input_audio.format",
            "'wav' or 'mp3'",
        ),
        (
            user_part({"type": "file", "file": {"filename": "a.pdf"}}),
            "messages[1].content[0].file",
            "file_data or file_id",
        ),
        (user_part({"type": "text"}), "messages[1].content[0].text", "missing"),
        (
            user_part({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}),
            "messages[1].content[0].image_url.url",
            "data URLs",
        ),
        (
            user_part({"type": "image_url", "image_url": {"url": "data:image/png;base64"}}),
            "messages[1].content[0].image_url.url",
            "data URLs",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {}}]}
                ],
            },
            "messages[0].content[0].type",
            "image_url",
        ),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", ""),
        (
            {"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]},
            "messages[0].role",
            "tool",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", ""),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x"}}],
                    }
                ],
            },
            "messages[0].tool_calls[0].type",
            "custom",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}
                ],
            },
            "messages[0].function_call",
            "tool_calls",
        ),
        (
            {"model": "m", "messages": [USER], "tools": [{"type": "custom", "custom": {}}]},
            "tools[0].type",
            "only function tools",
        ),
        (
            {"model": "m", "messages": [USER], "tools": [{"type": "function"}]},
            "tools[0].function",
            "",
        ),
        ({"model": "m", "messages": [USER], "tool_choice": "sometimes"}, "tool_choice", ""),
        (
            {
                "model": "m",
                "messages": [USER],
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {}},
            },
            "tool_choice.type",
            "allowed_tools",
        ),
        (
            {"model": "m", "messages": [USER], "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "json_schema",
        ),
        ({"model": "m", "messages": [USER], "modalities": ["text", "audio"]}, "modalities", ""),
        ({"model": "m", "messages": [USER], "functions": [{"name": "f"}]}, "functions", "tools"),
        ({"model": "m", "messages": [USER], "temperature": "hot"}, "temperature", "float"),
        ({"model": "m", "messages": [USER], "stop": 5}, "stop", ""),
        ({"model": "m", "messages": [USER], "reasoning_effort": "huge"}, "reasoning_effort", ""),
    ],
)
def test_what_cannot_be_converted_is_a_400_naming_the_field(
    doc: dict[str, Any], param: str, words: str
) -> None:
    err = refused(doc)
    assert err.param == param
    assert words in err.message
    sent = orjson.loads(error_body(err))["error"]
    assert (sent["param"], sent["type"]) == (param, "invalid_request_error")


def test_text_response_format_is_fine() -> None:
    doc = {"model": "m", "messages": [USER], "response_format": {"type": "text"}}
    assert convert(doc).messages == [ir.Message(role="user", parts=[ir.Text(text="hi")])]


# -- answers out ------------------------------------------------------------------------------


def test_render_a_text_answer() -> None:
    answer = ir.ChatResponse(
        id="msg_01",
        model="claude-x",
        parts=[ir.Text(text="Hello"), ir.Text(text=" world")],
        finish_reason="length",
        stop_sequence=None,
        usage=Usage(prompt_tokens=120, completion_tokens=8, cached_tokens=100),
    )
    body = render(answer, {"model": "mine"}, 1_500_000)
    assert b'"cost":0.0000015' in body  # an exact decimal, not a float's rendering
    completion = ChatCompletion.model_validate(orjson.loads(body))
    assert completion.id == "msg_01"
    assert completion.object == "chat.completion"
    assert completion.model == "claude-x"
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "length", None)
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello world"
    assert choice.message.refusal is None
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 8, 128)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_render_tool_calls_and_thinking() -> None:
    answer = ir.ChatResponse(
        id="msg_02",
        model="claude-x",
        parts=[
            ir.Thinking(text="The user wants weather.", signature="sig"),
            ir.Thinking(redacted="opaque"),
            ir.ToolCall(id="toolu_1", name="weather", arguments='{"city":"Oslo"}'),
            ir.ToolCall(id="toolu_2", name="time", arguments="{}"),
        ],
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=10, completion_tokens=40, reasoning_tokens=25),
    )
    doc = orjson.loads(render(answer, {"model": "mine"}, 0))
    assert doc["usage"]["cost"] == 0
    completion = ChatCompletion.model_validate(doc)
    message = completion.choices[0].message
    assert message.content is None
    assert message.model_extra == {"reasoning_content": "The user wants weather."}
    assert message.tool_calls is not None
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("toolu_1", "function", "weather", '{"city":"Oslo"}'),
        ("toolu_2", "function", "time", "{}"),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 25


def test_render_without_usage_id_or_model() -> None:
    answer = ir.ChatResponse(id="", model="", parts=[], usage=None)
    doc = orjson.loads(render(answer, {"model": "mine"}, 0))
    completion = ChatCompletion.model_validate(doc)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "mine"
    assert completion.choices[0].message.content == ""
    assert "usage" not in doc
    assert "reasoning_content" not in doc["choices"][0]["message"]


def frames(stream: bytes) -> list[bytes]:
    """The ``data:`` payloads of a stream, checking the framing on the way."""
    assert stream.endswith(b"data: [DONE]\n\n")
    events = stream.split(b"\n\n")
    assert events[-1] == b""
    out = []
    for event in events[:-1]:
        assert event.startswith(b"data: ")
        assert b"\n" not in event
        out.append(event[6:])
    return out


def sdk_chunks(stream: bytes) -> list[ChatCompletionChunk]:
    payloads = frames(stream)
    assert payloads[-1] == b"[DONE]"
    return [ChatCompletionChunk.model_validate(orjson.loads(p)) for p in payloads[:-1]]


def accumulate(chunks: list[ChatCompletionChunk]) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state.get_final_completion()


STREAM = [
    ir.StreamStart(id="msg_9", model="claude-x"),
    ir.ThinkingDelta(text="Let me"),
    ir.ThinkingDelta(text=" think."),
    ir.ThinkingDelta(signature="sig=="),
    ir.TextDelta(text="Sure"),
    ir.TextDelta(text=", calling."),
    ir.ToolCallStart(index=0, id="toolu_a", name="weather"),
    ir.ToolCallDelta(index=0, arguments='{"city":'),
    ir.ToolCallDelta(index=0, arguments='"Oslo"}'),
    ir.ToolCallStart(index=1, id="toolu_b", name="time"),
    ir.ToolCallDelta(index=1, arguments="{}"),
    ir.Finish(finish_reason="tool_calls"),
]


def test_renderer_streams_like_openai_with_usage() -> None:
    renderer = ChatRenderer({"model": "mine", "stream": True}, True)
    stream = renderer.render(STREAM[:3]) + renderer.render(STREAM[3:])
    usage = Usage(prompt_tokens=50, completion_tokens=20, cached_tokens=30, reasoning_tokens=5)
    stream += renderer.finish(usage, 42_000_000)
    raw = [orjson.loads(p) for p in frames(stream)[:-1]]
    assert all("usage" in chunk for chunk in raw)  # null on every chunk but the last
    assert [chunk["usage"] is None for chunk in raw] == [True] * (len(raw) - 1) + [False]
    assert raw[-1]["choices"] == []
    assert raw[-1]["usage"]["cost"] == 0.000042
    assert raw[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert raw[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert {chunk["id"] for chunk in raw} == {"msg_9"}
    assert {chunk["model"] for chunk in raw} == {"claude-x"}
    assert {chunk["object"] for chunk in raw} == {"chat.completion.chunk"}
    assert len({chunk["created"] for chunk in raw}) == 1
    assert raw[5]["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "toolu_a",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ]
    }

    chunks = sdk_chunks(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 30
    final = accumulate(chunks)
    message = final.choices[0].message
    assert message.content == "Sure, calling."
    assert message.model_extra["reasoning_content"] == "Let me think."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("toolu_a", "weather", '{"city":"Oslo"}'),
        ("toolu_b", "time", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.total_tokens == 70


def test_renderer_without_usage() -> None:
    renderer = ChatRenderer({"model": "mine"}, False)
    events = [
        ir.StreamStart(id="x", model="m"),
        ir.TextDelta(text="hi"),
        ir.Finish(finish_reason="stop"),
    ]
    stream = renderer.render(events) + renderer.finish(Usage(prompt_tokens=1), 5)
    raw = [orjson.loads(p) for p in frames(stream)[:-1]]
    assert len(raw) == 3
    assert not any("usage" in chunk for chunk in raw)
    final = accumulate(sdk_chunks(stream))
    assert final.choices[0].message.content == "hi"
    assert final.choices[0].finish_reason == "stop"


def test_renderer_usage_asked_but_never_reported() -> None:
    renderer = ChatRenderer({"model": "mine"}, True)
    stream = renderer.render([ir.Finish(finish_reason="stop")]) + renderer.finish(None, 0)
    chunks = sdk_chunks(stream)
    assert [c.choices[0].finish_reason for c in chunks] == [None, "stop"]
    assert chunks[0].id.startswith("chatcmpl-")  # no StreamStart: the renderer made one up
    assert chunks[0].model == "mine"


def test_renderer_skips_empty_deltas_and_relay_events() -> None:
    renderer = ChatRenderer({"model": "m"}, False)
    renderer.render([ir.StreamStart(id="x", model="m")])
    skipped = [
        ir.TextDelta(text=""),
        ir.ThinkingDelta(signature="s"),
        ir.ToolCallDelta(index=0, arguments=""),
        ir.UsageUpdate(usage=Usage()),
        ir.StreamError(message="x"),
    ]
    assert renderer.render(skipped) == b""


UPSTREAM_STREAM = (
    b'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
    b'"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"ab"}\r\n\r\n'
    b'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
    b'"choices":[{"index":0,"delta":{"content":"Hi!"},"logprobs":null,"finish_reason":null}],'
    b'"usage":null,"obfuscation":"cdefg"}\r\n\r\n'
    b'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
    b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}'
    b"\r\n\r\n"
    b'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
    b'"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":2,"total_tokens":1002,'
    b'"prompt_tokens_details":{"cached_tokens":200}}}\r\n\r\n'
)


@pytest.mark.parametrize("wants_usage", [True, False])
def test_an_openai_stream_through_the_converting_relay(wants_usage: bool) -> None:
    """Both halves joined as the pipeline joins them, on an upstream without ``[DONE]``."""
    route = Route(
        provider="p", model="gpt-x", price=msgspec.convert({"input": 1, "output": 2}, Price)
    )
    relay = ConvertingRelay(
        ChatStreamParser(), ChatRenderer({"model": "mine"}, wants_usage), CHAT, route.rates
    )
    out = b"".join(relay.feed(UPSTREAM_STREAM[i : i + 50]) for i in range(0, 2000, 50))
    out += relay.close()
    assert relay.complete
    assert relay.usage == Usage(prompt_tokens=1000, completion_tokens=2, cached_tokens=200)
    chunks = sdk_chunks(out)
    final = accumulate(chunks)
    assert final.choices[0].message.content == "Hi!"
    assert final.id == "chatcmpl-up"
    if wants_usage:
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.model_extra == {"cost": 0.001004}
    else:
        assert all(chunk.usage is None for chunk in chunks)


# -- round trips ------------------------------------------------------------------------------

ROUTE = Route(provider="p", model="upstream-model")
PROVIDER = OpenAIProvider(
    "p", msgspec.convert({"type": "openai", "base_url": "http://x/v1"}, OpenAIConfig)
)

names = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
texts = st.text(max_size=24)
text_parts = st.builds(
    lambda t, cache: {"type": "text", "text": t, **cache},
    texts,
    st.sampled_from([{}, {"cache_control": {"type": "ephemeral"}}]),
)
b64 = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())
image_urls = st.one_of(
    names.map(lambda n: f"https://img.example/{n}.png"),
    st.builds(
        lambda media, data: f"data:{media};base64,{data}",
        st.sampled_from(["image/png", "image/jpeg", "image/webp", "image/gif"]),
        b64,
    ),
)
image_parts = st.builds(
    lambda url, detail: {"type": "image_url", "image_url": {"url": url, **detail}},
    image_urls,
    st.sampled_from([{}, {"detail": "low"}, {"detail": "high"}, {"detail": "auto"}]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), texts)
schemas = st.dictionaries(names, json_scalars, max_size=3).map(
    lambda props: {"type": "object", "properties": props} if props else {}
)


def text_content(draw: Any) -> str | list[dict[str, Any]]:
    return draw(st.one_of(texts, st.lists(text_parts, min_size=1, max_size=3)))


@st.composite
def conversations(draw: Any, tools: list[str]) -> list[dict[str, Any]]:
    """Valid message lists: tool messages answer the calls of the assistant turn before them."""
    messages: list[dict[str, Any]] = []
    calls = 0
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["system", "user", "assistant", "tools"]))
        if kind == "system":
            role = draw(st.sampled_from(["system", "developer"]))
            messages.append({"role": role, "content": text_content(draw)})
        elif kind == "user":
            content = draw(
                st.one_of(
                    texts, st.lists(st.one_of(text_parts, image_parts), min_size=1, max_size=4)
                )
            )
            messages.append({"role": "user", "content": content})
        elif kind == "assistant" or not tools:
            messages.append({"role": "assistant", "content": text_content(draw)})
        else:
            turn: dict[str, Any] = {"role": "assistant"}
            turn["content"] = draw(st.one_of(st.none(), texts))
            ids = []
            turn["tool_calls"] = []
            for _ in range(draw(st.integers(1, 3))):
                calls += 1
                ids.append(f"call_{calls}")
                arguments = orjson.dumps(draw(st.dictionaries(names, json_scalars, max_size=3)))
                turn["tool_calls"].append(
                    {
                        "id": ids[-1],
                        "type": "function",
                        "function": {
                            "name": draw(st.sampled_from(tools)),
                            "arguments": arguments.decode(),
                        },
                    }
                )
            messages.append(turn)
            messages.extend(  # the results, in any order
                {"role": "tool", "tool_call_id": call_id, "content": text_content(draw)}
                for call_id in draw(st.permutations(ids))
            )
    return messages


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    tools = draw(st.lists(names, max_size=3, unique=True))
    doc: dict[str, Any] = {"model": draw(names), "messages": draw(conversations(tools))}
    if tools:
        doc["tools"] = []
        for name in tools:
            function: dict[str, Any] = {"name": name}
            if draw(st.booleans()):
                function["description"] = draw(texts)
            if draw(st.booleans()):
                function["parameters"] = draw(schemas)
            doc["tools"].append({"type": "function", "function": function})
        choice = draw(
            st.sampled_from(
                [
                    None,
                    "auto",
                    "required",
                    "none",
                    {"type": "function", "function": {"name": tools[0]}},
                ]
            )
        )
        if choice is not None:
            doc["tool_choice"] = choice
        parallel = draw(st.sampled_from([None, True, False]))
        if parallel is not None:
            doc["parallel_tool_calls"] = parallel
    optional = {
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.one_of(texts, st.lists(texts, max_size=4)),
        "max_tokens": st.integers(1, 100_000),
        "max_completion_tokens": st.integers(1, 100_000),
        "n": st.just(1),
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"]),
        "user": texts,
        "safety_identifier": texts,
        "stream": st.booleans(),
        "seed": st.integers(0, 10),
        "metadata": st.dictionaries(names, texts, max_size=2),
        "response_format": st.just({"type": "text"}),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    if doc.get("stream") and draw(st.booleans()):
        doc["stream_options"] = {"include_usage": draw(st.booleans())}
    return doc


# The normalisations a round trip makes, as documented in the converters.
EFFORTS = {"none": None, "xhigh": "high"}


def canonical_content(content: Any) -> list[dict[str, Any]]:
    """A message's content as parts: a string is one text part; image ``detail`` is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [
        {"type": "image_url", "image_url": {"url": p["image_url"]["url"]}}
        if p["type"] == "image_url"
        else {"type": "text", "text": p["text"]}
        for p in content
    ]


def joined(content: Any) -> str:
    return "\n\n".join(p["text"] for p in canonical_content(content))


def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System and developer messages become one system message first; consecutive user turns
    and consecutive assistant turns merge; tool messages carry their text joined."""
    system = [m for m in messages if m["role"] in ("system", "developer")]
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": "\n\n".join(joined(m["content"]) for m in system)})
    for m in messages:
        role = m["role"]
        if role in ("system", "developer"):
            continue
        if role == "tool":
            out.append(
                {"role": "tool", "tool_call_id": m["tool_call_id"], "content": joined(m["content"])}
            )
            continue
        content = canonical_content(m.get("content"))
        calls = m.get("tool_calls", [])
        if out and out[-1]["role"] == role:
            out[-1]["content"] += content
            out[-1]["tool_calls"] += calls
        else:
            out.append({"role": role, "content": content, "tool_calls": calls})
    for m in out:
        if m["role"] == "assistant" and not m["content"] and not m["tool_calls"]:
            raise AssertionError("the generator makes no empty assistant turns")
    return out


def canonical_built(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m["role"] in ("user", "assistant"):
            m = {
                "role": m["role"],
                "content": canonical_content(m["content"]),
                "tool_calls": m.get("tool_calls", []),
            }
        out.append(m)
    return out


def expected_body(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "upstream-model",
        "messages": canonical_messages(doc["messages"]),
    }
    if "tools" in doc:
        out["tools"] = []
        for tool in doc["tools"]:
            function = {k: v for k, v in tool["function"].items() if v not in ("", {})}
            out["tools"].append({"type": "function", "function": function})
        for name in ("tool_choice", "parallel_tool_calls"):
            if name in doc:
                out[name] = doc[name]
    limit = doc.get("max_completion_tokens") or doc.get("max_tokens")
    if limit:
        out["max_completion_tokens"] = limit
    for name in ("temperature", "top_p"):
        if name in doc:
            out[name] = doc[name]
    effort = EFFORTS.get(doc.get("reasoning_effort", ""), doc.get("reasoning_effort"))
    if effort:
        out["reasoning_effort"] = effort
    user = doc.get("user", doc.get("safety_identifier"))
    if user is not None:
        out["user"] = user
    stop = doc.get("stop")
    if stop is not None and stop != []:
        out["stop"] = [stop] if isinstance(stop, str) else stop
    if doc.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_request_round_trip(doc: dict[str, Any]) -> None:
    request = convert(doc)
    upstream = PROVIDER.build(None, request, ROUTE, "k")  # type: ignore[arg-type]
    built = orjson.loads(upstream.body)
    built["messages"] = canonical_built(built["messages"])
    assert built == expected_body(doc)


usages = st.builds(
    lambda p, c, cached, written, reasoning: Usage(
        prompt_tokens=p + cached + written,
        completion_tokens=c + reasoning,
        cached_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    ),
    *[st.integers(0, 10_000)] * 5,
)


@st.composite
def event_streams(draw: Any) -> list[ir.Event]:
    events: list[ir.Event] = [ir.StreamStart(id=draw(names), model=draw(names))]
    started = 0
    for kind in draw(
        st.lists(st.sampled_from(["text", "thinking", "signature", "call", "args"]), max_size=20)
    ):
        if kind == "text":
            events.append(ir.TextDelta(text=draw(texts)))
        elif kind == "thinking":
            events.append(ir.ThinkingDelta(text=draw(texts)))
        elif kind == "signature":
            events.append(ir.ThinkingDelta(signature=draw(names)))
        elif kind == "call" or not started:
            events.append(
                ir.ToolCallStart(index=started, id=f"call_{draw(names)}", name=draw(names))
            )
            started += 1
        else:
            index = draw(st.integers(0, started - 1))
            events.append(ir.ToolCallDelta(index=index, arguments=draw(texts)))
    reason = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    events.append(ir.Finish(finish_reason=reason))
    return events


def visible(event: ir.Event) -> bool:
    if isinstance(event, ir.TextDelta | ir.ThinkingDelta):
        return bool(event.text)
    if isinstance(event, ir.ToolCallDelta):
        return bool(event.arguments)
    return True


@settings(max_examples=200, deadline=None)
@given(
    event_streams(),
    st.one_of(st.none(), usages),
    st.integers(0, 10**9),
    st.lists(st.integers(1, 400), min_size=1, max_size=20),
)
def test_stream_round_trip(
    events: list[ir.Event], usage: Usage | None, cost: int, cuts: list[int]
) -> None:
    renderer = ChatRenderer({"model": "mine", "stream": True}, True)
    half = len(events) // 2
    stream = renderer.render(events[:half]) + renderer.render(events[half:])
    stream += renderer.finish(usage, cost)
    for chunk in sdk_chunks(stream):  # every chunk is one the official SDK reads
        assert chunk.object == "chat.completion.chunk"

    parser = ChatStreamParser()
    parsed: list[ir.Event] = []
    position = 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        parsed += parser.feed(stream[position : position + size])
        position += size
        if position >= len(stream):
            break
    parsed += parser.close()

    expected = [e for e in events if visible(e)]
    finish = expected[-1]
    assert isinstance(finish, ir.Finish)
    if finish.finish_reason == "stop" and any(isinstance(e, ir.ToolCallStart) for e in events):
        expected[-1] = ir.Finish(finish_reason="tool_calls")  # the parser's documented rule
    if usage is not None:
        expected.append(ir.UsageUpdate(usage=usage))
    assert parsed == expected
