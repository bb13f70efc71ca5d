"""Structured outputs in the IR: every dialect reads its own form into ``response_format``, every
provider writes its own, and the forced-tool fallback gives back exactly the JSON the model
produced, whole or streamed in any pieces."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter import ir, structured
from lmrouter.dialects import anthropic as anthropic_dialect
from lmrouter.dialects import openai as openai_dialect
from lmrouter.dialects import responses as responses_dialect
from lmrouter_anthropic import messages_request, native_structured_outputs
from lmrouter_google import answers_by_tool
from lmrouter_google import chat as gemini_chat
from lmrouter_openai.chat import request_body

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}
USER = {"role": "user", "content": "hi"}


# -- dialects in ------------------------------------------------------------------------------


def test_chat_response_format_in() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "Person", "schema": SCHEMA, "strict": True, "description": "d"},
    }
    request = openai_dialect.to_ir({"model": "m", "messages": [USER], "response_format": fmt})
    assert request.response_format == ir.ResponseFormat(
        type="json_schema", schema=SCHEMA, name="Person", description="d", strict=True
    )
    plain = {"model": "m", "messages": [USER], "response_format": {"type": "text"}}
    assert openai_dialect.to_ir(plain).response_format is None
    json_object = {**plain, "response_format": {"type": "json_object"}}
    assert openai_dialect.to_ir(json_object).response_format == ir.ResponseFormat(
        type="json_object"
    )


def test_responses_text_format_in() -> None:
    fmt = {"type": "json_schema", "name": "Person", "schema": SCHEMA, "strict": False}
    request = responses_dialect.to_ir({"model": "m", "input": "hi", "text": {"format": fmt}})
    assert request.response_format == ir.ResponseFormat(
        type="json_schema", schema=SCHEMA, name="Person", strict=False
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
        {"output_format": {"type": "json_schema", "schema": SCHEMA}},
    ],
)
def test_anthropic_output_format_in(extra: dict[str, Any]) -> None:
    doc = {"model": "m", "max_tokens": 10, "messages": [USER], **extra}
    request = anthropic_dialect.to_ir(doc)
    assert request.response_format == ir.ResponseFormat(type="json_schema", schema=SCHEMA)


# -- providers out ----------------------------------------------------------------------------


def chat(fmt: ir.ResponseFormat, **extra: Any) -> ir.ChatRequest:
    messages = [ir.Message(role="user", parts=[ir.Text(text="hi")])]
    return ir.ChatRequest(model="m", messages=messages, response_format=fmt, **extra)


def test_openai_out_names_the_schema_as_openai_allows() -> None:
    fmt = ir.ResponseFormat(type="json_schema", schema=SCHEMA, name="my schema/é")
    body = request_body(chat(fmt), "up")
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "my_schema__", "schema": SCHEMA},
    }


def test_openai_json_object_says_json() -> None:
    """OpenAI refuses ``json_object`` unless the messages say "JSON"; a caller of another API
    had no such rule, so the converted request says it (once, and only when needed)."""
    body = request_body(chat(ir.ResponseFormat(type="json_object")), "up")
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "Answer in JSON."}
    said = ir.ChatRequest(
        model="m",
        messages=[ir.Message(role="user", parts=[ir.Text(text="Reply in json")])],
        response_format=ir.ResponseFormat(type="json_object"),
    )
    assert [m["role"] for m in request_body(said, "up")["messages"]] == ["user"]


def test_anthropic_out_native() -> None:
    fmt = ir.ResponseFormat(type="json_schema", schema=SCHEMA)
    body = messages_request(chat(fmt), "claude-sonnet-4-5", 100)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_anthropic_forced_tool_turns_thinking_off() -> None:
    """Anthropic refuses thinking with a forced tool choice, so the answer tool goes without."""
    fmt = ir.ResponseFormat(type="json_object")
    request = structured.as_tool_request(chat(fmt, thinking_budget=2048))
    body = messages_request(request, "claude-3-5-haiku", 4096)
    assert body["tool_choice"] == {"type": "tool", "name": structured.ANSWER_TOOL}
    assert "thinking" not in body and "output_config" not in body


@pytest.mark.parametrize(
    ("model", "native"),
    [
        ("claude-sonnet-4-5", True),
        ("claude-sonnet-4-5-20250929", True),
        ("claude-haiku-4-5@20251001", True),
        ("claude-opus-4-1-20250805", True),
        ("claude-opus-4-6", True),
        ("claude-sonnet-5", True),
        ("claude-sonnet-4-20250514", False),
        ("claude-opus-4-20250514", False),
        ("claude-3-7-sonnet-latest", False),
        ("us.anthropic.claude-sonnet-4-5-v1:0", True),
        ("my-model", False),
    ],
)
def test_native_structured_outputs_by_model_name(model: str, native: bool) -> None:
    assert native_structured_outputs(model) is native


def test_gemini_out() -> None:
    fmt = ir.ResponseFormat(type="json_schema", schema=SCHEMA)
    config = gemini_chat.build(chat(fmt))["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    tool = ir.Tool(name="f", parameters={"type": "object", "properties": {"a": {}}})
    assert not answers_by_tool(chat(fmt))
    assert answers_by_tool(chat(fmt, tools=[tool]))


def test_as_tool_request_keeps_the_callers_tools() -> None:
    tool = ir.Tool(name="lookup")
    fmt = ir.ResponseFormat(type="json_schema", schema=SCHEMA)
    request = structured.as_tool_request(chat(fmt, tools=[tool]))
    assert [t.name for t in request.tools] == ["lookup", structured.ANSWER_TOOL]
    assert request.tool_choice == ir.ToolChoice(mode="required")
    assert request.response_format is None
    named = ir.ToolChoice(mode="tool", name="lookup")
    assert structured.as_tool_request(chat(fmt, tools=[tool], tool_choice=named)).tool_choice == (
        named
    )


# -- the answer tool's answer back as text ----------------------------------------------------


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    _containers,
    max_leaves=8,
)
schemas = st.sampled_from([SCHEMA, {"type": "array"}, {"type": "string"}, None])


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


class ListParser:
    """A provider parser stand-in: each fed chunk is one list of events, given in advance."""

    def __init__(self, batches: list[list[ir.Event]]) -> None:
        self.batches = batches

    def feed(self, chunk: bytes) -> list[ir.Event]:
        return self.batches.pop(0)

    def close(self) -> list[ir.Event]:
        return []


@settings(max_examples=150, deadline=None)
@given(json_values, schemas, st.lists(st.integers(0, 200), max_size=6), st.booleans())
def test_tool_answer_round_trip(value: Any, schema: Any, cuts: list[int], other: bool) -> None:
    """Whatever the answer and however its input is cut into fragments, the text that comes out
    is the answer's JSON; a call to another tool before it keeps index 0 and its arguments."""
    fmt = ir.ResponseFormat(type="json_schema" if schema else "json_object", schema=schema)
    if fmt.type == "json_object" or not structured.wrapped(fmt):
        value = {"v": value}
    answer = orjson.dumps(value).decode()
    arguments = orjson.dumps({"value": value}).decode() if structured.wrapped(fmt) else answer
    events: list[ir.Event] = [ir.StreamStart(id="x", model="m")]
    if other:
        events += [
            ir.ToolCallStart(index=0, id="c0", name="f"),
            ir.ToolCallDelta(index=0, arguments="{}"),
        ]
    index = 1 if other else 0
    events.append(ir.ToolCallStart(index=index, id="c1", name=structured.ANSWER_TOOL))
    events += [ir.ToolCallDelta(index=index, arguments=piece) for piece in split(arguments, cuts)]
    events.append(ir.Finish(finish_reason="tool_calls"))
    stream = structured.ToolAnswerStream(ListParser([events]), fmt)  # type: ignore[arg-type]
    out = stream.feed(b"")
    text = "".join(e.text for e in out if isinstance(e, ir.TextDelta))
    assert orjson.loads(text) == value
    calls = [e for e in out if isinstance(e, ir.ToolCallStart)]
    assert [(c.index, c.name) for c in calls] == ([(0, "f")] if other else [])
    assert out[-1] == ir.Finish(finish_reason="tool_calls" if other else "stop")

    whole = ir.ChatResponse(
        id="x",
        model="m",
        parts=[ir.ToolCall(id="c1", name=structured.ANSWER_TOOL, arguments=arguments)],
        finish_reason="tool_calls",
    )
    back = structured.from_tool_answer(whole, fmt)
    assert back.finish_reason == "stop"
    assert [orjson.loads(p.text) for p in back.parts if isinstance(p, ir.Text)] == [value]
