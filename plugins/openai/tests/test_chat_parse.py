"""Chat Completions answers and streams → IR, from realistic bodies: the fake OpenAI upstream's
(built to the real wire format) and the quirks of OpenAI-compatible vendors."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson
import pytest

from lmrouter import ir
from lmrouter.config import Route
from lmrouter.providers import UpstreamFailure
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.usage import Usage
from lmrouter_openai import OpenAIConfig, OpenAIProvider
from lmrouter_openai.chat import ChatStreamParser, parse_completion

KEY = "sk-fake-upstream"
WEATHER = ir.Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIProvider]:
    fake = FakeOpenAI(api_key=KEY)
    fake.script("plain", Behavior(text="Hello from the fake upstream!", chunk_chars=5))
    fake.script("crlf", Behavior(text="CRLF lines, no DONE", crlf=True, omit_done=True))
    fake.script("vllm", Behavior(text="usage rides along", usage_in_last_choice_chunk=True))
    fake.script(
        "cached",
        Behavior(
            text="ok",
            usage={
                "prompt_tokens": 1200,
                "completion_tokens": 30,
                "cached_tokens": 1024,
                "reasoning_tokens": 12,
            },
        ),
    )
    with fake.run_in_thread() as base_url:
        config = msgspec.convert({"type": "openai", "base_url": base_url}, OpenAIConfig)
        yield OpenAIProvider("fake", config)


def send(provider: OpenAIProvider, request: ir.ChatRequest, model: str) -> bytes:
    upstream = provider.build(None, request, Route(provider="fake", model=model), KEY)  # type: ignore[arg-type]
    http = urllib.request.Request(upstream.url, upstream.body, upstream.headers, method="POST")
    with urllib.request.urlopen(http, timeout=10) as response:
        return response.read()


def ask(text: str, **options: Any) -> ir.ChatRequest:
    message = ir.Message(role="user", parts=[ir.Text(text=text)])
    return ir.ChatRequest(model="client-model", messages=[message], **options)


def stream_events(body: bytes, step: int | None = None) -> list[ir.Event]:
    """Feed ``body`` in ``step``-byte pieces (the upstream's own pieces don't matter)."""
    parser = ChatStreamParser()
    events: list[ir.Event] = []
    size = step or len(body) or 1
    for start in range(0, len(body), size):
        events += parser.feed(body[start : start + size])
    return events + parser.close()


def texts(events: list[ir.Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, ir.TextDelta))


def only(events: list[ir.Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# -- against the fake upstream ----------------------------------------------------------------


def test_whole_answer(upstream: OpenAIProvider) -> None:
    answer = upstream.parse(None, None, send(upstream, ask("hi"), "plain"))  # type: ignore[arg-type]
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == "plain"
    assert answer.parts == [ir.Text(text="Hello from the fake upstream!")]
    assert answer.finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 6  # the fake counts 5-character pieces
    assert answer.usage.prompt_tokens > 0


def test_whole_answer_with_a_tool_call(upstream: OpenAIProvider) -> None:
    request = ask("Weather?", tools=[WEATHER], tool_choice=ir.ToolChoice(mode="required"))
    answer = upstream.parse(None, request, send(upstream, request, "plain"))  # type: ignore[arg-type]
    [call] = answer.parts
    assert isinstance(call, ir.ToolCall)
    assert call.id.startswith("call_")
    assert call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "test", "days": 1}
    assert answer.finish_reason == "tool_calls"


def test_whole_answer_cut_by_the_limit(upstream: OpenAIProvider) -> None:
    request = ask("hi", max_tokens=2)
    answer = upstream.parse(None, request, send(upstream, request, "plain"))  # type: ignore[arg-type]
    assert answer.parts == [ir.Text(text="Hello from")]
    assert answer.finish_reason == "length"


def test_cached_and_reasoning_tokens(upstream: OpenAIProvider) -> None:
    answer = upstream.parse(None, None, send(upstream, ask("hi"), "cached"))  # type: ignore[arg-type]
    assert answer.usage == Usage(
        prompt_tokens=1200, completion_tokens=30, cached_tokens=1024, reasoning_tokens=12
    )


@pytest.mark.parametrize("step", [None, 1, 7])
def test_stream(upstream: OpenAIProvider, step: int | None) -> None:
    body = send(upstream, ask("hi", stream=True), "plain")
    assert b'"obfuscation"' in body  # the real padding field is there to be ignored
    events = stream_events(body, step)
    start = events[0]
    assert isinstance(start, ir.StreamStart)
    assert start.id.startswith("chatcmpl-")
    assert start.model == "plain"
    assert texts(events) == "Hello from the fake upstream!"
    assert only(events, ir.Finish) == [ir.Finish(finish_reason="stop")]
    [usage] = only(events, ir.UsageUpdate)
    assert usage.usage.completion_tokens == 6
    assert not only(events, ir.StreamError)


def test_stream_with_a_tool_call(upstream: OpenAIProvider) -> None:
    request = ask("Weather?", tools=[WEATHER], stream=True)
    events = stream_events(send(upstream, request, "plain"), 3)
    [start] = only(events, ir.ToolCallStart)
    assert (start.index, start.name) == (0, "get_weather")
    assert start.id.startswith("call_")
    deltas = only(events, ir.ToolCallDelta)
    assert len(deltas) > 1
    assert {d.index for d in deltas} == {0}
    assert orjson.loads("".join(d.arguments for d in deltas)) == {"city": "test", "days": 1}
    assert only(events, ir.Finish) == [ir.Finish(finish_reason="tool_calls")]


def test_stream_with_crlf_and_no_done(upstream: OpenAIProvider) -> None:
    body = send(upstream, ask("hi", stream=True), "crlf")
    assert b"\r\n" in body
    assert b"[DONE]" not in body
    events = stream_events(body, 2)  # cuts between CR and LF too
    assert texts(events) == "CRLF lines, no DONE"
    assert only(events, ir.Finish) == [ir.Finish(finish_reason="stop")]
    assert len(only(events, ir.UsageUpdate)) == 1


def test_stream_with_usage_on_the_last_choice_chunk(upstream: OpenAIProvider) -> None:
    events = stream_events(send(upstream, ask("hi", stream=True), "vllm"))
    assert texts(events) == "usage rides along"
    [usage] = only(events, ir.UsageUpdate)
    assert usage.usage.completion_tokens > 0
    # The finish comes before the usage that rode on the same chunk.
    kinds = [type(e) for e in events]
    assert kinds.index(ir.Finish) < kinds.index(ir.UsageUpdate)


def test_stream_cut_by_the_limit(upstream: OpenAIProvider) -> None:
    events = stream_events(send(upstream, ask("hi", stream=True, max_tokens=1), "plain"))
    assert texts(events) == "Hello"
    assert only(events, ir.Finish) == [ir.Finish(finish_reason="length")]


# -- vendor quirks: whole answers -------------------------------------------------------------


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> bytes:
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    doc = {"id": "c-1", "object": "chat.completion", "created": 1, "model": "v-model"}
    return orjson.dumps({**doc, "choices": [choice], **extra}, option=orjson.OPT_INDENT_2)


def test_deepseek_reasoning_and_cache_hits() -> None:
    body = completion(
        {"role": "assistant", "content": "42", "reasoning_content": "Think: 6*7."},
        usage={
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "prompt_cache_hit_tokens": 64,
            "prompt_cache_miss_tokens": 36,
            "completion_tokens_details": {"reasoning_tokens": 15},
        },
    )
    answer = parse_completion(body)
    assert answer.parts == [ir.Thinking(text="Think: 6*7."), ir.Text(text="42")]
    assert answer.usage == Usage(
        prompt_tokens=100, completion_tokens=20, cached_tokens=64, reasoning_tokens=15
    )


def test_openrouter_reasoning_field() -> None:
    answer = parse_completion(
        completion({"role": "assistant", "content": "Hi", "reasoning": "greet back"})
    )
    assert answer.parts == [ir.Thinking(text="greet back"), ir.Text(text="Hi")]


def test_refusal_becomes_text() -> None:
    answer = parse_completion(
        completion({"role": "assistant", "content": None, "refusal": "I can't help with that."})
    )
    assert answer.parts == [ir.Text(text="I can't help with that.")]


def test_mistral_content_parts() -> None:
    message = {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "x"}]}
    assert parse_completion(completion(message)).parts == [ir.Text(text="a")]


def test_tool_call_quirks_object_arguments_empty_arguments_missing_id() -> None:
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "a", "arguments": {"x": 1}}},
            {"id": "call_b", "type": "function", "function": {"name": "b", "arguments": ""}},
        ],
    }
    # Ollama and Gemini's compatible API say "stop" after tool calls.
    answer = parse_completion(completion(message, "stop"))
    first, second = answer.parts
    assert isinstance(first, ir.ToolCall)
    assert (first.name, first.arguments) == ("a", '{"x":1}')
    assert first.id.startswith("call_")
    assert second == ir.ToolCall(id="call_b", name="b", arguments="{}")
    assert answer.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("eos", "stop"),
        ("max_tokens", "length"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(wire: str | None, reason: str) -> None:
    answer = parse_completion(completion({"role": "assistant", "content": "x"}, wire))
    assert answer.finish_reason == reason


def test_vllm_stop_reason_names_the_stop_sequence() -> None:
    body = orjson.loads(completion({"role": "assistant", "content": "1, 2, 3"}))
    body["choices"][0]["stop_reason"] = "\n\n"
    answer = parse_completion(orjson.dumps(body))
    assert (answer.finish_reason, answer.stop_sequence) == ("stop", "\n\n")


def test_only_choice_zero_is_read() -> None:
    body = orjson.loads(completion({"role": "assistant", "content": "zero"}))
    other = {**body["choices"][0], "index": 1, "message": {"role": "assistant", "content": "one"}}
    body["choices"].insert(0, other)
    assert parse_completion(orjson.dumps(body)).parts == [ir.Text(text="zero")]


def test_no_choices_is_an_empty_answer() -> None:
    answer = parse_completion(b'{"id":"x","model":"m","choices":[]}')
    assert (answer.parts, answer.finish_reason, answer.usage) == ([], "stop", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "unreadable"),
        (b'{"choices": "nope"}', "unreadable"),
        (b'{"error": {"message": "model overloaded", "code": 503}}', "model overloaded"),
    ],
)
def test_unreadable_bodies_fail_the_attempt(body: bytes, message: str) -> None:
    with pytest.raises(UpstreamFailure, match=message) as caught:
        parse_completion(body)
    assert caught.value.status == 502
    assert caught.value.retryable


# -- vendor quirks: streams -------------------------------------------------------------------


def sse(*chunks: dict[str, Any] | str, eol: str = "\n") -> bytes:
    lines = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else orjson.dumps(chunk).decode()
        lines.append(f"data: {data}{eol}{eol}")
    return "".join(lines).encode()


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "s-1", "object": "chat.completion.chunk", "model": "v", "choices": [choice]} | (
        extra
    )


def test_groq_usage_in_x_groq() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    body = sse(
        chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_1"}),
        chunk({"content": "Hi"}),
        chunk({}, "stop", x_groq={"id": "req_1", "usage": usage}),
        "[DONE]",
    )
    events = stream_events(body)
    assert events == [
        ir.StreamStart(id="s-1", model="v"),
        ir.TextDelta(text="Hi"),
        ir.Finish(finish_reason="stop"),
        ir.UsageUpdate(usage=Usage(prompt_tokens=9, completion_tokens=3)),
    ]


def test_reasoning_deltas() -> None:
    body = sse(
        chunk({"role": "assistant", "reasoning_content": "hmm"}),
        chunk({"reasoning": "also"}),  # OpenRouter, Ollama
        chunk({"content": "ok", "reasoning_content": None}),
        chunk({}, "stop"),
    )
    events = stream_events(body)
    assert events[1:] == [
        ir.ThinkingDelta(text="hmm"),
        ir.ThinkingDelta(text="also"),
        ir.TextDelta(text="ok"),
        ir.Finish(finish_reason="stop"),
    ]


def test_parallel_tool_calls_interleaved_by_index() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    body = sse(
        call(0, id="c_a", type="function", function={"name": "a", "arguments": ""}),
        call(1, id="c_b", type="function", function={"name": "b", "arguments": ""}),
        call(0, function={"arguments": '{"x":'}),
        call(1, function={"arguments": '{"y":2}'}),
        call(0, function={"arguments": "1}"}),
        chunk({}, "tool_calls"),
    )
    events = stream_events(body)
    assert events[1:] == [
        ir.ToolCallStart(index=0, id="c_a", name="a"),
        ir.ToolCallStart(index=1, id="c_b", name="b"),
        ir.ToolCallDelta(index=0, arguments='{"x":'),
        ir.ToolCallDelta(index=1, arguments='{"y":2}'),
        ir.ToolCallDelta(index=0, arguments="1}"),
        ir.Finish(finish_reason="tool_calls"),
    ]


def test_whole_tool_calls_in_one_chunk_without_index() -> None:
    """Mistral and Gemini's compatible API: each call complete, sometimes without ``index``."""
    body = sse(
        chunk({"tool_calls": [{"id": "1", "function": {"name": "a", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"id": "2", "function": {"name": "b", "arguments": {"k": 1}}}]}),
        chunk({}, "stop"),
    )
    events = stream_events(body)
    assert events[1:] == [
        ir.ToolCallStart(index=0, id="1", name="a"),
        ir.ToolCallDelta(index=0, arguments="{}"),
        ir.ToolCallStart(index=1, id="2", name="b"),
        ir.ToolCallDelta(index=1, arguments='{"k":1}'),
        ir.Finish(finish_reason="tool_calls"),
    ]


def test_tool_call_id_repeated_in_every_fragment() -> None:
    fragment = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
    body = sse(
        chunk({"tool_calls": [fragment]}),
        chunk({"tool_calls": [{**fragment, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    )
    events = stream_events(body)
    assert only(events, ir.ToolCallStart) == [ir.ToolCallStart(index=0, id="c1", name="f")]
    assert only(events, ir.ToolCallDelta) == [ir.ToolCallDelta(index=0, arguments="{}")]


def test_error_chunk_mid_stream() -> None:
    body = sse(
        chunk({"content": "partial"}),
        {"error": {"message": "The server had an error", "type": "server_error"}},
        chunk({"content": "after"}, "stop"),
        "[DONE]",
    )
    events = stream_events(body)
    assert events[-1] == ir.StreamError(message="The server had an error")
    assert texts(events) == "partial"
    assert not only(events, ir.Finish)


def test_error_event_line() -> None:
    body = sse(chunk({"content": "x"})) + b"event: error\ndata: upstream exploded\n\n"
    assert stream_events(body)[-1] == ir.StreamError(message="upstream exploded")


def test_done_without_finish_reason_still_finishes() -> None:
    events = stream_events(sse(chunk({"content": "x"}), "[DONE]"))
    assert events[-1] == ir.Finish(finish_reason="stop")


def test_cut_stream_has_no_finish() -> None:
    body = sse(chunk({"content": "partial"}))[:-5]  # cut inside the last event
    events = stream_events(body)
    assert not only(events, ir.Finish)


def test_comments_and_keepalives_are_ignored() -> None:
    body = b": OPENROUTER PROCESSING\n\n" + sse(chunk({"content": "x"}), "ping", chunk({}, "stop"))
    events = stream_events(body)
    assert texts(events) == "x"
    assert only(events, ir.Finish) == [ir.Finish(finish_reason="stop")]


def test_other_choices_are_skipped() -> None:
    other = chunk({"content": "one"})
    other["choices"][0]["index"] = 1
    events = stream_events(sse(chunk({"content": "zero"}), other, chunk({}, "stop")))
    assert texts(events) == "zero"


def test_vllm_continuous_usage_every_chunk() -> None:
    def usage(n: int) -> dict[str, int]:
        return {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}

    events = stream_events(
        sse(chunk({"content": "a"}, usage=usage(1)), chunk({}, "stop", usage=usage(2)))
    )
    assert [u.usage.completion_tokens for u in only(events, ir.UsageUpdate)] == [1, 2]
