"""The anthropic adapter alone: pass-through requests, IR → Messages requests, answers and
streams → IR."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
import pytest

from lmrouter import ir
from lmrouter.config import Route
from lmrouter.errors import RouterError
from lmrouter.providers import UpstreamFailure
from lmrouter.usage import Usage
from lmrouter_anthropic import AnthropicConfig, AnthropicProvider, MessagesStreamParser

ROUTE = Route(provider="claude", model="claude-upstream")


def provider(**extra: Any) -> AnthropicProvider:
    config = msgspec.convert(
        {"type": "anthropic", "base_url": "https://api.example.com/", "api_key": "k", **extra},
        AnthropicConfig,
    )
    return AnthropicProvider("claude", config)


def ctx(
    doc: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    limit: int | None = None,
    model_limit: int | None = None,
) -> Any:
    doc = doc or {"model": "mine", "max_tokens": 10, "messages": []}
    return SimpleNamespace(
        doc=doc,
        body=orjson.dumps(doc),
        stream=bool(doc.get("stream")),
        dialect="anthropic.messages",
        headers=headers or {},
        max_output_tokens=limit,
        model=SimpleNamespace(max_output_tokens=model_limit, reasoning=None),
        response_headers=[],
    )


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="user", parts=list(parts))


def assistant(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="assistant", parts=list(parts))


def build(request: ir.ChatRequest, **ctx_args: Any) -> dict[str, Any]:
    sent = provider().build(ctx(**ctx_args), request, ROUTE, "sk-ant-key")
    return orjson.loads(sent.body)


HI = user(ir.Text(text="hi"))


# -- pass-through -------------------------------------------------------------------------------


def test_prepare_renames_model_and_keeps_everything_else() -> None:
    doc = {"model": "mine", "max_tokens": 5, "messages": [], "top_k": 3, "x_vendor": [1]}
    sent = provider().prepare(ctx(doc), ROUTE, "sk-ant-key")
    assert sent.url == "https://api.example.com/v1/messages"
    assert orjson.loads(sent.body) == {**doc, "model": "claude-upstream"}
    assert sent.headers["x-api-key"] == "sk-ant-key"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in {k.lower() for k in sent.headers}


def test_prepare_same_model_sends_the_original_bytes() -> None:
    context = ctx({"model": "claude-upstream", "max_tokens": 5, "messages": []})
    assert provider().prepare(context, ROUTE, "k").body is context.body


SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("model", "extra", "setting", "passes"),
    [
        ("claude-sonnet-4-5", {"output_config": {"format": {"type": "json_schema"}}}, "auto", True),
        ("claude-3-5-haiku-latest", {"output_config": {"effort": "high"}}, "auto", True),
        ("claude-3-5-haiku-latest", {}, "auto", True),
        # structured output on a model without it: converted, answered by the forced tool
        (
            "claude-3-5-haiku-latest",
            {"output_config": {"format": {"schema": SCHEMA}}},
            "auto",
            False,
        ),
        ("claude-3-5-haiku-latest", {"output_format": {"schema": SCHEMA}}, "auto", False),
        ("claude-3-5-haiku-latest", {"output_format": {"schema": SCHEMA}}, "native", True),
        ("claude-sonnet-4-5", {"output_format": {"schema": SCHEMA}}, "tool", False),
    ],
)
def test_structured_output_passes_through_where_the_model_takes_it(
    model: str, extra: dict[str, Any], setting: str, passes: bool
) -> None:
    context = ctx({"model": "mine", "max_tokens": 10, "messages": [], **extra})
    route = Route(provider="claude", model=model)
    assert provider(structured_outputs=setting).passes_through(context, route) is passes
    other = SimpleNamespace(**{**vars(context), "dialect": "openai.chat"})
    assert provider().passes_through(other, route) is False  # not its dialect: converted


def test_version_from_config_and_beta_from_caller() -> None:
    p = provider(version="2024-01-01", base_url="https://proxy.example.com/anthropic/v1")
    sent = p.prepare(ctx(headers={"anthropic-beta": "files-api-2025-04-14"}), ROUTE, "")
    assert sent.url == "https://proxy.example.com/anthropic/v1/messages", "no doubled /v1"
    assert sent.headers["anthropic-version"] == "2024-01-01"
    assert sent.headers["anthropic-beta"] == "files-api-2025-04-14"
    assert "x-api-key" not in sent.headers


def test_unknown_config_key_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `versoin`"):
        msgspec.convert(
            {"type": "anthropic", "base_url": "https://x", "versoin": "1"}, AnthropicConfig
        )


# -- IR → Messages request ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_limit", "ctx_limit", "model_limit", "expected"),
    [(100, 200, 300, 100), (None, 200, 300, 200), (None, None, 300, 300), (None, None, None, 4096)],
)
def test_max_tokens_is_always_sent(
    request_limit: int | None, ctx_limit: int | None, model_limit: int | None, expected: int
) -> None:
    request = ir.ChatRequest(model="m", messages=[HI], max_tokens=request_limit)
    body = build(request, limit=ctx_limit, model_limit=model_limit)
    assert body["max_tokens"] == expected
    assert body["model"] == "claude-upstream"


def test_system_and_cache_breakpoints() -> None:
    request = ir.ChatRequest(
        model="m",
        system=[
            ir.Text(text="Be terse."),
            ir.Text(text="Long context", cache=True),
            ir.Text(text=""),
        ],
        messages=[user(ir.Text(text="hi", cache=True))],
    )
    body = build(request)
    assert body["system"] == [
        {"type": "text", "text": "Be terse."},
        {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}},
    ]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_turns_merge_and_start_with_the_user() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            assistant(ir.Text(text="I start.")),
            assistant(ir.Text(text="Twice.")),
            user(ir.Text(text="a")),
            user(ir.Text(text="")),  # empty: dropped, Anthropic refuses empty text
            user(ir.Text(text="b")),
        ],
    )
    turns = build(request)["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[0]["content"] == [{"type": "text", "text": "."}]
    assert [b["text"] for b in turns[1]["content"]] == ["I start.", "Twice."]
    assert [b["text"] for b in turns[2]["content"]] == ["a", "b"]


def test_tool_calls_and_results() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            HI,
            assistant(
                ir.Text(text="Let me look."),
                ir.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
                ir.ToolCall(id="call_2", name="get_weather", arguments="not json"),
            ),
            user(ir.Text(text="and also…")),  # OpenAI order: text may come before the results
            user(ir.ToolResult(id="call_1", content=[ir.Text(text="Sunny")])),
            user(ir.ToolResult(id="call_2", content=[], is_error=True)),
        ],
    )
    turns = build(request)["messages"]
    assert turns[1]["content"][1:] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert turns[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "call_1",
            "content": [{"type": "text", "text": "Sunny"}],
        },
        {"type": "tool_result", "tool_use_id": "call_2", "is_error": True},
        {"type": "text", "text": "and also…"},
    ], "tool results open the user turn"


def test_images() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            user(
                ir.Image(url="https://example.com/cat.png"),
                ir.Image(url="data:image/jpeg;base64,QUJD"),
                ir.Image(data="REVG", media_type="image/gif"),
            )
        ],
    )
    sources = [b["source"] for b in build(request)["messages"][0]["content"]]
    assert sources == [
        {"type": "url", "url": "https://example.com/cat.png"},
        {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"},
        {"type": "base64", "media_type": "image/gif", "data": "REVG"},
    ]


def test_thinking_parts_need_a_signature() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            HI,
            assistant(
                ir.Thinking(text="hmm", signature="sig"),
                ir.Thinking(redacted="opaque"),
                ir.Thinking(text="another provider's reasoning"),
                ir.Text(text="Answer."),
            ),
        ],
    )
    assert build(request)["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Answer."},
    ]


TOOL = ir.Tool(name="get_weather", description="Weather", parameters={"type": "object"})


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (ir.ToolChoice(mode="auto"), None, {"type": "auto"}),
        (ir.ToolChoice(mode="required"), None, {"type": "any"}),
        (ir.ToolChoice(mode="none"), None, {"type": "none"}),
        (
            ir.ToolChoice(mode="tool", name="get_weather"),
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ir.ToolChoice(mode="required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (ir.ToolChoice(mode="none"), False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_tool_choice(choice: ir.ToolChoice | None, parallel: bool | None, expected: Any) -> None:
    request = ir.ChatRequest(
        model="m", messages=[HI], tools=[TOOL], tool_choice=choice, parallel_tool_calls=parallel
    )
    body = build(request)
    assert body.get("tool_choice") == expected
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    ]


def test_tool_without_schema_gets_an_object_schema() -> None:
    bare = ir.ChatRequest(model="m", messages=[HI], tools=[ir.Tool(name="ping")])
    assert build(bare)["tools"] == [
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_no_tools_no_tool_choice() -> None:
    request = ir.ChatRequest(model="m", messages=[HI], tool_choice=ir.ToolChoice(mode="none"))
    assert "tool_choice" not in build(request) and "tools" not in build(request)


@pytest.mark.parametrize(
    ("effort", "budget", "max_tokens", "expected"),
    [
        ("low", None, 8000, 1024),
        ("medium", None, 8000, 4096),
        ("high", None, 8000, 7999),  # capped below max_tokens
        ("minimal", None, 8000, None),
        ("high", None, 1000, None),  # no room for Anthropic's minimum budget
        (None, 2048, 8000, 2048),
        ("low", 3000, 8000, 3000),  # an explicit budget wins
        (None, 0, 8000, None),
    ],
)
def test_thinking_budgets(
    effort: Any, budget: int | None, max_tokens: int, expected: int | None
) -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[HI],
        max_tokens=max_tokens,
        reasoning_effort=effort,
        thinking_budget=budget,
        temperature=0.2,
        top_p=0.5,
    )
    body = build(request)
    if expected is None:
        assert "thinking" not in body
        assert (body["temperature"], body["top_p"]) == (0.2, 0.5)
    else:
        assert body["thinking"] == {"type": "enabled", "budget_tokens": expected}
        assert "temperature" not in body and "top_p" not in body, "refused with thinking on"


def test_sampling_stops_user_stream() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[HI],
        temperature=1.7,
        top_p=0.9,
        stop=["END", " "],
        user="user-42",
        stream=True,
    )
    body = build(request)
    assert body["temperature"] == 1.0, "Anthropic's range ends at 1"
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"], "whitespace-only stop sequences are refused upstream"
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["stream"] is True


def test_n_above_one_fans_out_and_is_refused_streamed() -> None:
    sent = provider().build(ctx(), ir.ChatRequest(model="m", messages=[HI], n=2), ROUTE, "k")
    assert getattr(sent, "n", None) == 2 and "n" not in orjson.loads(sent.body)
    streamed = ctx({"model": "m", "max_tokens": 10, "messages": [], "stream": True})
    with pytest.raises(RouterError) as info:
        provider().build(streamed, ir.ChatRequest(model="m", messages=[HI], n=2), ROUTE, "k")
    assert info.value.status == 400 and info.value.param == "n"


# -- answers ------------------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_01abc",
    "type": "message",
    "role": "assistant",
    "model": "claude-upstream",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Calling."},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 40,
        "output_tokens_details": {"thinking_tokens": 5},
    },
}


def test_parse_message() -> None:
    answer = provider().parse(ctx(), None, orjson.dumps(MESSAGE))  # type: ignore[arg-type]
    assert answer.id == "msg_01abc" and answer.model == "claude-upstream"
    assert answer.parts == [
        ir.Thinking(text="hmm", signature="sig"),
        ir.Thinking(redacted="opaque"),
        ir.Text(text="Calling."),
        ir.ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}'),
    ]
    assert answer.finish_reason == "tool_calls"
    assert answer.usage == Usage(
        prompt_tokens=80,
        completion_tokens=20,
        cached_tokens=40,
        cache_write_tokens=30,
        reasoning_tokens=5,
    )


@pytest.mark.parametrize(
    ("reason", "sequence", "finish"),
    [
        ("end_turn", None, "stop"),
        ("stop_sequence", "END", "stop"),
        ("max_tokens", None, "length"),
        ("model_context_window_exceeded", None, "length"),
        ("refusal", None, "content_filter"),
        ("pause_turn", None, "stop"),
        (None, None, "stop"),
    ],
)
def test_parse_stop_reasons(reason: str | None, sequence: str | None, finish: str) -> None:
    body = orjson.dumps({**MESSAGE, "stop_reason": reason, "stop_sequence": sequence})
    answer = provider().parse(ctx(), None, body)  # type: ignore[arg-type]
    assert (answer.finish_reason, answer.stop_sequence) == (finish, sequence)


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"content": 5}', b""])
def test_unreadable_answer_is_an_upstream_failure(body: bytes) -> None:
    with pytest.raises(UpstreamFailure) as info:
        provider().parse(ctx(), None, body)  # type: ignore[arg-type]
    assert info.value.status == 502


# -- streams ------------------------------------------------------------------------------------


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(sse(name, data) for name, data in events)


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "claude-upstream",
            "content": [],
            "usage": {
                "input_tokens": 10,
                "output_tokens": 1,
                "cache_creation_input_tokens": 3,
                "cache_read_input_tokens": 7,
            },
        },
    },
)


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def delta(index: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": body}


def stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


FULL = stream(
    START,
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    ("ping", {"type": "ping"}),
    delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
    delta(0, {"type": "signature_delta", "signature": "sig"}),
    stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, {"type": "text_delta", "text": "Let me "}),
    delta(1, {"type": "text_delta", "text": "look."}),
    stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
    delta(2, {"type": "input_json_delta", "partial_json": ""}),
    delta(2, {"type": "input_json_delta", "partial_json": '{"city": '}),
    delta(2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
    stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_2", "name": "other", "input": {}}),
    stop(3),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 42},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)

FULL_EVENTS: list[ir.Event] = [
    ir.StreamStart(id="msg_1", model="claude-upstream"),
    ir.ThinkingDelta(text="hmm"),
    ir.ThinkingDelta(signature="sig"),
    ir.TextDelta(text="Let me "),
    ir.TextDelta(text="look."),
    ir.ToolCallStart(index=0, id="toolu_1", name="get_weather"),
    ir.ToolCallDelta(index=0, arguments='{"city": '),
    ir.ToolCallDelta(index=0, arguments='"Paris"}'),
    ir.ToolCallStart(index=1, id="toolu_2", name="other"),
    ir.UsageUpdate(
        usage=Usage(prompt_tokens=20, completion_tokens=42, cached_tokens=7, cache_write_tokens=3)
    ),
    ir.Finish(finish_reason="tool_calls"),
]


def test_stream_parser_whole() -> None:
    parser = MessagesStreamParser()
    assert parser.feed(FULL) + parser.close() == FULL_EVENTS


def test_stream_parser_any_chunking() -> None:
    for size in (1, 7, 64):
        parser = MessagesStreamParser()
        events: list[ir.Event] = []
        for i in range(0, len(FULL), size):
            events += parser.feed(FULL[i : i + size])
        assert events + parser.close() == FULL_EVENTS, size


def test_stream_parser_cumulative_delta_usage_wins() -> None:
    body = stream(
        START,
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 5, "input_tokens": 11, "cache_read_input_tokens": 0},
            },
        ),
    )
    parser = MessagesStreamParser()
    events = parser.feed(body)
    assert events[-2:] == [
        ir.UsageUpdate(usage=Usage(prompt_tokens=14, completion_tokens=5, cache_write_tokens=3)),
        ir.Finish(finish_reason="stop", stop_sequence="END"),
    ]


def test_stream_parser_error_event() -> None:
    parser = MessagesStreamParser()
    events = parser.feed(
        stream(
            START,
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
        )
    )
    assert events[-1] == ir.StreamError(message="Overloaded", status=502)
    bad = parser.feed(
        sse("error", {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}})
    )
    assert bad == [ir.StreamError(message="no", status=400)]


def test_stream_parser_ignores_what_it_does_not_know() -> None:
    parser = MessagesStreamParser()
    events = parser.feed(
        b": a comment\n\n"
        + sse("mystery", {"type": "mystery"})
        + b"data: not json\n\n"
        + sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta"}},
        )
    )
    assert events == []


def error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


@pytest.mark.parametrize(
    ("status", "body", "callers"),
    [
        (400, error("invalid_request_error", "max_tokens: Field required"), True),
        (
            400,
            error("invalid_request_error", "Your credit balance is too low to access the API."),
            False,
        ),
        (413, b"", True),
        (529, error("overloaded_error", "Overloaded"), False),
    ],
)
def test_whose_fault(status: int, body: bytes, callers: bool) -> None:
    assert provider().callers_fault(status, body) is callers


def test_thinking_is_left_off_for_an_unsigned_tool_turn() -> None:
    call = ir.ToolCall(id="call_1", name="get_weather", arguments="{}")
    result = user(ir.ToolResult(id="call_1", content=[ir.Text(text="21C")]))
    unsigned = ir.ChatRequest(
        model="m",
        messages=[HI, assistant(call), result],
        max_tokens=8000,
        reasoning_effort="low",
    )
    assert "thinking" not in build(unsigned), "Anthropic would refuse the tool turn"
    signed = ir.ChatRequest(
        model="m",
        messages=[HI, assistant(ir.Thinking(text="hmm", signature="sig"), call), result],
        max_tokens=8000,
        reasoning_effort="low",
    )
    assert build(signed)["thinking"] == {"type": "enabled", "budget_tokens": 1024}
