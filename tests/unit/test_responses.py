"""The Responses dialect on its own: request checks, Responses → IR, IR → ``response`` objects and
typed event streams. Every rendered body and event is validated with the official openai SDK's
own models, and streams are fed through the SDK's stream accumulator (what
``client.responses.stream(...).get_final_response()`` uses)."""

from __future__ import annotations

import contextvars
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from lmrouter import ir
from lmrouter.config import Price
from lmrouter.dialects import responses as R
from lmrouter.errors import RouterError
from lmrouter.money import Rates
from lmrouter.sse import SSEDecoder
from lmrouter.usage import Usage

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
PNG = (  # a one-pixel PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def body(**doc: Any) -> bytes:
    return orjson.dumps({"model": "m", "input": "hi", **doc})


def refused(fn: Any, *args: Any) -> RouterError:
    with pytest.raises(RouterError) as info:
        fn(*args)
    assert info.value.status == 400
    return info.value


def convert(**doc: Any) -> ir.ChatRequest:
    return R.to_ir(R.parse(body(**doc)).doc)


# -- parse ------------------------------------------------------------------------------------


def test_parse_reads_what_routing_needs() -> None:
    parsed = R.parse(body(stream=True, max_output_tokens=64, store=True))
    assert (parsed.model, parsed.stream, parsed.max_output_tokens, parsed.n) == ("m", True, 64, 1)
    assert parsed.wants_usage, "a Responses stream always ends with its usage"
    assert parsed.prompt_chars == len(body(stream=True, max_output_tokens=64, store=True))
    assert not R.parse(body()).stream


def test_previous_response_id_needs_a_store_on_converted_routes() -> None:
    parsed = R.parse(body(previous_response_id="resp_123"))  # OpenAI routes keep their own
    err = refused(R.to_ir, parsed.doc)
    assert err.param == "previous_response_id"
    assert "needs stored responses" in err.message
    assert orjson.loads(R.RESPONSES.error_body(err)) == {
        "error": {
            "message": err.message,
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "invalid_request",
        }
    }
    del parsed.doc["previous_response_id"]  # a response store put the history in input
    assert R.to_ir(parsed.doc).messages


def test_previous_response_id_must_be_an_id() -> None:
    assert refused(R.parse, body(previous_response_id="")).param == "previous_response_id"


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"background": "yes"}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"store": "yes"}, "store"),
        ({"stream": "true"}, "stream"),
        ({"input": []}, "input"),
        ({"input": None}, "input"),
        ({"input": 3}, "input"),
        ({"model": ""}, "model"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": "16"}, "max_output_tokens"),
    ],
)
def test_parse_refusals_name_the_field(doc: dict[str, Any], param: str) -> None:
    assert refused(R.parse, body(**doc)).param == param


@pytest.mark.parametrize(
    ("doc", "param"),
    [({"background": True}, "background"), ({"conversation": "c"}, "conversation")],
)
def test_state_a_response_store_did_not_take_is_refused_at_conversion(
    doc: dict[str, Any], param: str
) -> None:
    """A response store (plugin) expands ``conversation`` and runs ``background`` itself:
    without one, a converted route cannot honour them."""
    parsed = R.parse(body(**doc))
    err = refused(R.to_ir, parsed.doc)
    assert err.param == param and "store" in err.message


@pytest.mark.parametrize("store", [True, False, None])
def test_store_echoes_what_the_request_says_after_the_store_set_it(store: bool | None) -> None:
    parsed = R.parse(body(store=store, background=False))
    answer = ir.ChatResponse(id="x", model="up", parts=[ir.Text(text="ok")])
    assert orjson.loads(R.render(answer, parsed.doc, 0))["store"] is (store is True)


def test_bad_json_is_a_400() -> None:
    assert refused(R.parse, b"{nope").status == 400


# -- to_ir ------------------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    req = convert(instructions="Be brief.", input="Hello")
    assert req.system == [ir.Text(text="Be brief.")]
    assert req.messages == [ir.Message(role="user", parts=[ir.Text(text="Hello")])]
    assert req.model == "m" and req.tools == [] and req.tool_choice is None


def test_a_whole_conversation() -> None:
    items = [
        {"role": "developer", "content": "Rule one."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {
                    "type": "input_image",
                    "image_url": f"data:image/png;base64,{PNG}",
                    "detail": "auto",
                },
                {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "think"}],
            "encrypted_content": "sig-1",
        },
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Checking.", "annotations": []},
                {"type": "refusal", "refusal": "not that"},
            ],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_A",
            "name": "get_weather",
            "arguments": '{"city":"Oslo"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_A", "output": "12C"},
        {"role": "system", "content": [{"type": "input_text", "text": "Rule two."}]},
        {
            "type": "function_call_output",
            "call_id": "call_B",
            "output": [
                {"type": "input_text", "text": "part"},
                {"type": "input_image", "image_url": "http://example.com/x.png"},
            ],
        },
        {"role": "user", "content": "Thanks"},
    ]
    req = convert(instructions="Top.", input=items)
    assert [t.text for t in req.system] == ["Top.", "Rule one.", "Rule two."]
    assert [m.role for m in req.messages] == ["user", "assistant", "user"]
    user, assistant, results = req.messages
    assert user.parts == [
        ir.Text(text="Look:"),
        ir.Image(data=PNG, media_type="image/png"),
        ir.Image(url="https://example.com/cat.jpg"),
    ]
    assert assistant.parts == [
        ir.Thinking(text="think", signature="sig-1"),
        ir.Text(text="Checking."),
        ir.Text(text="not that"),
        ir.ToolCall(id="call_A", name="get_weather", arguments='{"city":"Oslo"}'),
    ]
    assert results.parts == [
        ir.ToolResult(id="call_A", content=[ir.Text(text="12C")], name="get_weather"),
        ir.ToolResult(
            id="call_B",
            content=[ir.Text(text="part"), ir.Image(url="http://example.com/x.png")],
        ),
        ir.Text(text="Thanks"),
    ]


def test_reasoning_items() -> None:
    def thinking(item: dict[str, Any]) -> list[ir.Part]:
        items = [{"role": "user", "content": "q"}, {"type": "reasoning", **item}]
        return convert(input=items).messages[1].parts

    content = {"content": [{"type": "reasoning_text", "text": "full"}]}
    summary = {"summary": [{"type": "summary_text", "text": t} for t in ("a", "b")]}
    assert thinking({**content, **summary}) == [ir.Thinking(text="full")]
    assert thinking(summary) == [ir.Thinking(text="a\n\nb")]
    assert thinking({"summary": [], "encrypted_content": R.REDACTED + "opaque"}) == [
        ir.Thinking(redacted="opaque")
    ]
    # An item with nothing a provider could use is dropped.
    req = convert(input=[{"role": "user", "content": "q"}, {"type": "reasoning", "summary": []}])
    assert len(req.messages) == 1


def test_settings_map_to_ir() -> None:
    req = convert(
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=1,
        max_output_tokens=99,
        reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "text"}, "verbosity": "low"},
        user="u-1",
        stream=True,
        store=False,
        include=["reasoning.encrypted_content"],
        metadata={"k": "v"},
    )
    assert req.tools == [
        ir.Tool(
            name="get_weather", description="Weather for a city", parameters=WEATHER["parameters"]
        )
    ]
    assert req.tool_choice == ir.ToolChoice(mode="tool", name="get_weather")
    assert (req.parallel_tool_calls, req.temperature, req.top_p) == (False, 0.5, 1.0)
    assert (req.max_tokens, req.reasoning_effort, req.user, req.stream) == (99, "low", "u-1", True)
    assert convert(safety_identifier="s-1").user == "s-1"
    for mode in ("auto", "required", "none"):
        assert convert(tool_choice=mode).tool_choice == ir.ToolChoice(mode=mode)


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("none", None),
        ("minimal", "minimal"),
        ("medium", "medium"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_effort(effort: str, expected: str | None) -> None:
    assert convert(reasoning={"effort": effort}).reasoning_effort == expected


def _msg(*content: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": list(content)}


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"tools": [{"type": "custom", "name": "patch"}]}, "tools[0].type"),
        ({"tools": [WEATHER, {"type": "namespace", "name": "n", "tools": []}]}, "tools[1].tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{**WEATHER, "parameters": "x"}]}, "tools[0].parameters"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({"text": {"verbosity": "loud"}}, "text.verbosity"),
        ({"tools": [{**WEATHER, "strict": "yes"}]}, "tools[0].strict"),
        ({"metadata": {"a": 1}}, "metadata"),
        ({"temperature": "hot"}, "temperature"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"instructions": ["x"]}, "instructions"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": "a"}, {"type": "web_search_call"}]},
            "input[1].type",
        ),
        ({"input": ["text"]}, "input[0]"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        (
            {
                "input": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    _msg({"type": "input_audio"}),
                ]
            },
            "input[2].content[0].type",
        ),
        (
            {"input": [_msg({"type": "input_file", "filename": "a.pdf"})]},
            "input[0].content[0]",
        ),
        ({"input": [_msg({"type": "input_text"})]}, "input[0].content[0].text"),
        (
            {"input": [_msg({"type": "input_image", "file_id": "file_1"})]},
            "input[0].content[0].file_id",
        ),
        (
            {"input": [_msg({"type": "input_image", "image_url": "ftp://x"})]},
            "input[0].content[0].image_url",
        ),
        (
            {"input": [_msg({"type": "input_image", "image_url": "data:image/png;base64,!!"})]},
            "input[0].content[0].image_url",
        ),
        (
            {"input": [_msg({"type": "input_image", "image_url": "data:text/plain,hi"})]},
            "input[0].content[0].image_url",
        ),
        (
            {
                "input": [
                    _msg({"type": "input_image", "image_url": "https://x/y.png"}, role="assistant")
                ]
            },
            "input[0].content[0].type",
        ),
        (
            {
                "input": [
                    _msg({"type": "input_image", "image_url": "https://x/y.png"}, role="system")
                ]
            },
            "input[0].content[0].type",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
            "input[0].output",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_file"}],
                    }
                ]
            },
            "input[0].output[0]",
        ),
        (
            {"input": [{"type": "reasoning", "summary": [{"type": "other"}]}]},
            "input[0].summary[0].type",
        ),
        (
            {"input": [{"type": "reasoning", "summary": [], "encrypted_content": 1}]},
            "input[0].encrypted_content",
        ),
        ({"input": [{"role": "system", "content": "only rules"}]}, "input"),
    ],
)
def test_unconvertible_input_names_the_field(doc: dict[str, Any], param: str) -> None:
    parsed = R.parse(body(**doc))
    assert refused(R.to_ir, parsed.doc).param == param


def test_an_item_reference_left_unresolved_says_what_can_be_referenced() -> None:
    parsed = R.parse(body(input=[{"type": "item_reference", "id": "msg_1"}]))
    assert "items of responses and conversations this router keeps" in (
        refused(R.to_ir, parsed.doc).message
    )


# -- render -----------------------------------------------------------------------------------

USAGE = Usage(
    prompt_tokens=100,
    completion_tokens=40,
    cached_tokens=30,
    cache_write_tokens=5,
    reasoning_tokens=12,
)
RATES = Rates(input=150_000, output=600_000, cache_read=75_000, cache_write=150_000, request=0)


def rendered(answer: ir.ChatResponse, doc: dict[str, Any] | None = None) -> tuple[dict, Response]:
    doc = doc or R.parse(body()).doc
    cost = RATES.cost(answer.usage) if answer.usage else 0
    raw = R.render(answer, doc, cost)
    return orjson.loads(raw), Response.model_validate_json(raw)


def test_render_text_answer() -> None:
    answer = ir.ChatResponse(
        id="chatcmpl-1",
        model="up-model",
        parts=[ir.Text(text="Hel"), ir.Text(text="lo")],
        usage=USAGE,
    )
    doc, response = rendered(answer)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.completed_at is not None
    assert response.incomplete_details is None and response.error is None
    assert response.model == "up-model"
    assert response.output_text == "Hello"
    assert "output_text" not in doc, "output_text is the SDK's own convenience property"
    [message] = response.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.status == "completed" and message.role == "assistant"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (100, 40, 140)
    assert usage.input_tokens_details.cached_tokens == 30
    assert usage.input_tokens_details.cache_write_tokens == 5
    assert usage.output_tokens_details.reasoning_tokens == 12
    # cost = (65 * 0.15 + 30 * 0.075 + 5 * 0.15 + 40 * 0.60) / 1e6 USD, exactly, as a plain number.
    assert json.loads(R.render(answer, R.parse(body()).doc, RATES.cost(USAGE)))["usage"][
        "cost"
    ] == pytest.approx(0.00003675, rel=1e-12)
    assert b'"cost":0.00003675' in R.render(answer, R.parse(body()).doc, RATES.cost(USAGE))


def test_render_tools_and_reasoning() -> None:
    answer = ir.ChatResponse(
        id="x",
        model="up",
        parts=[
            ir.Thinking(text="let me see", signature="sig"),
            ir.Thinking(redacted="blob"),
            ir.Text(text="Calling."),
            ir.ToolCall(id="call_1", name="get_weather", arguments='{"city":"Oslo"}'),
            ir.ToolCall(id="call_2", name="get_weather", arguments='{"city":"Rome"}'),
        ],
        finish_reason="tool_calls",
    )
    doc, response = rendered(answer, R.parse(body(tools=[WEATHER], tool_choice="required")).doc)
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "reasoning", "message", "function_call", "function_call"]
    first, second = response.output[0], response.output[1]
    assert first.summary[0].text == "let me see" and first.encrypted_content == "sig"  # type: ignore[union-attr]
    assert second.summary == [] and second.encrypted_content == R.REDACTED + "blob"  # type: ignore[union-attr]
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments, c.status) for c in calls] == [
        ("call_1", "get_weather", '{"city":"Oslo"}', "completed"),
        ("call_2", "get_weather", '{"city":"Rome"}', "completed"),
    ]
    assert all(c.id and c.id.startswith("fc_") for c in calls)
    assert response.status == "completed" and response.usage is None
    assert doc["tool_choice"] == "required" and response.tools[0].name == "get_weather"  # type: ignore[union-attr]


def test_rendered_reasoning_goes_back_in_unchanged() -> None:
    """A stateless client sends output items back as input: thinking must survive the trip."""
    parts: list[ir.Part] = [
        ir.Thinking(text="hmm", signature="sig-9"),
        ir.Thinking(redacted="r-data"),
        ir.ToolCall(id="call_1", name="f", arguments="{}"),
    ]
    answer = ir.ChatResponse(id="x", model="up", parts=parts)
    doc, _ = rendered(answer)
    items = [{"role": "user", "content": "q"}, *doc["output"]]
    req = convert(input=items)
    assert req.messages[1].parts == parts


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_render_incomplete(finish: ir.FinishReason, reason: str) -> None:
    answer = ir.ChatResponse(
        id="x", model="up", parts=[ir.Text(text="cut sh")], finish_reason=finish, usage=USAGE
    )
    _, response = rendered(answer, R.parse(body(max_output_tokens=16)).doc)
    assert response.status == "incomplete" and response.completed_at is None
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason
    assert response.output[-1].status == "incomplete"  # type: ignore[union-attr]
    assert response.max_output_tokens == 16


def test_render_echoes_the_request() -> None:
    doc = R.parse(
        body(
            instructions="Be nice.",
            temperature=0.2,
            top_p=0.9,
            metadata={"a": "b"},
            parallel_tool_calls=False,
            tools=[WEATHER],
            reasoning={"effort": "high"},
            user="u",
            text={"format": {"type": "text"}, "verbosity": "high"},
        )
    ).doc
    _, response = rendered(ir.ChatResponse(id="x", model="up", parts=[]), doc)
    assert response.instructions == "Be nice."
    assert (response.temperature, response.top_p) == (0.2, 0.9)
    assert response.metadata == {"a": "b"} and response.parallel_tool_calls is False
    assert response.reasoning is not None and response.reasoning.effort == "high"
    assert response.text is not None and response.text.verbosity == "high"
    assert response.user == "u" and response.output == [] and response.output_text == ""
    tool = response.tools[0]
    assert tool.type == "function" and tool.strict is True  # type: ignore[union-attr]
    assert tool.parameters == WEATHER["parameters"]  # type: ignore[union-attr]


def test_finish_json_reads_a_native_response() -> None:
    answer = ir.ChatResponse(id="x", model="up", parts=[ir.Text(text="hi")], usage=USAGE)
    native = R.render(answer, R.parse(body()).doc, 0)
    out, usage, cost = R.finish_json(native, RATES)
    assert usage is not None and usage.prompt_tokens == 100 and usage.cached_tokens == 30
    assert cost == RATES.cost(USAGE) and orjson.loads(out)["usage"]["cost"] == 0.00003675
    assert R.finish_json(b"not json", RATES) == (b"not json", None, 0)


# -- streams ----------------------------------------------------------------------------------


def run_stream(
    batches: list[list[ir.Event]], usage: Usage | None = USAGE, doc: dict[str, Any] | None = None
) -> tuple[list[Any], ResponseStreamState[Any], bytes]:
    """Render in a fresh context; check the framing; feed the SDK's stream accumulator."""
    doc = doc or R.parse(body(stream=True)).doc

    def go() -> bytes:
        renderer = R.RESPONSES.renderer(doc, True)  # type: ignore[misc]
        out = b"".join(renderer.render(batch) for batch in batches)
        return out + renderer.finish(usage, RATES.cost(usage) if usage else 0)

    raw = contextvars.copy_context().run(go)
    assert b"[DONE]" not in raw
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    events = []
    for sse_event in SSEDecoder().feed(raw):
        event = EVENTS.validate_json(sse_event.data)
        assert sse_event.event == event.type, "every event has an event: line naming its type"
        state.handle_event(event)
        events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events, state, raw


def test_stream_text() -> None:
    events, state, _ = run_stream(
        [
            [ir.StreamStart(id="c1", model="up-model"), ir.TextDelta(text="Hel")],
            [ir.TextDelta(text="lo"), ir.Finish(finish_reason="stop")],
        ]
    )
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, completed = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    assert created.id == completed.id and created.model == completed.model == "up-model"
    assert events[6].text == "Hello"
    final = state._completed_response
    assert final is not None and final.output_text == "Hello" and final.status == "completed"
    assert final.usage is not None and final.usage.input_tokens == 100
    assert final.usage.model_extra == {"cost": pytest.approx(0.00003675, rel=1e-12)}


def test_stream_tool_calls_interleaved() -> None:
    events, state, _ = run_stream(
        [
            [
                ir.StreamStart(id="c1", model="up"),
                ir.TextDelta(text="Let me check."),
                ir.ToolCallStart(index=0, id="call_a", name="get_weather"),
                ir.ToolCallStart(index=1, id="call_b", name="get_time"),
                ir.ToolCallDelta(index=0, arguments='{"city":'),
                ir.ToolCallDelta(index=1, arguments="{"),
                ir.ToolCallDelta(index=0, arguments='"Oslo"}'),
                ir.ToolCallDelta(index=1, arguments="}"),
                ir.Finish(finish_reason="tool_calls"),
            ]
        ]
    )
    final = state._completed_response
    assert final is not None and final.output_text == "Let me check."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_a", "get_weather", '{"city":"Oslo"}'),
        ("call_b", "get_time", "{}"),
    ]
    dones = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [d.arguments for d in dones] == ['{"city":"Oslo"}', "{}"]


def test_stream_reasoning_blocks_and_signatures() -> None:
    _, state, _ = run_stream(
        [
            [
                ir.ThinkingDelta(text="first "),
                ir.ThinkingDelta(text="block"),
                ir.ThinkingDelta(signature="sig-1"),
                ir.ThinkingDelta(text="second"),
                ir.ThinkingDelta(signature="sig-2"),
                ir.TextDelta(text="Answer"),
                ir.Finish(finish_reason="stop"),
            ]
        ]
    )
    final = state._completed_response
    assert final is not None
    first, second, message = final.output
    assert first.type == second.type == "reasoning" and message.type == "message"
    assert [s.text for s in first.summary] == ["first block"]  # type: ignore[union-attr]
    assert (first.encrypted_content, second.encrypted_content) == ("sig-1", "sig-2")  # type: ignore[union-attr]
    assert final.model == "m", "without a StreamStart the model is the requested one"


def test_stream_incomplete() -> None:
    events, state, _ = run_stream(
        [
            [
                ir.StreamStart(id="c", model="up"),
                ir.TextDelta(text="cut"),
                ir.Finish(finish_reason="length"),
            ]
        ]
    )
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output[0].status == "incomplete"
    assert last.response.output_text == "cut"
    assert state._completed_response is None, "as with OpenAI, only completed is 'final'"


def test_stream_without_usage_and_without_finish_event() -> None:
    events, state, _ = run_stream([[ir.TextDelta(text="x")]], usage=None)
    assert events[-1].type == "response.completed" and events[-1].response.usage is None
    assert state._completed_response is not None
    assert state._completed_response.output_text == "x"


def test_stream_error_continues_the_numbering() -> None:
    renderer = R.ResponsesStreamRenderer(R.parse(body(stream=True)).doc)
    out = renderer.render([ir.TextDelta(text="partial")])
    error = renderer.error(RouterError(502, "upstream went away", code="upstream_error"))
    seen = [EVENTS.validate_json(e.data) for e in SSEDecoder().feed(out)]
    [frame] = SSEDecoder().feed(error)
    assert frame.event == "error"
    event = EVENTS.validate_json(frame.data)
    assert event.type == "error" and event.message == "upstream went away"
    assert event.code == "upstream_error"
    assert event.sequence_number == seen[-1].sequence_number + 1
    # The openai SDK raises APIError on a data object with an "error" member.
    assert orjson.loads(frame.data)["error"]["message"] == "upstream went away"


# -- properties -------------------------------------------------------------------------------

texts = st.text(max_size=20)
names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
call_ids = st.from_regex(r"call_[A-Za-z0-9]{1,8}", fullmatch=True)
arguments = st.dictionaries(names, st.integers() | texts, max_size=3).map(json.dumps)
data_url = st.just(f"data:image/png;base64,{PNG}")
http_url = st.from_regex(r"https?://[a-z]{1,10}\.com/[a-z]{0,8}", fullmatch=True)

user_parts = st.one_of(
    st.builds(lambda t: {"type": "input_text", "text": t}, texts),
    st.builds(lambda u: {"type": "input_image", "image_url": u}, data_url | http_url),
)
assistant_parts = st.one_of(
    st.builds(lambda t: {"type": "output_text", "text": t, "annotations": []}, texts),
    st.builds(lambda t: {"type": "refusal", "refusal": t}, texts),
)
message_items = st.one_of(
    st.builds(
        lambda r, t: {"role": r, "content": t},
        st.sampled_from(["user", "assistant", "system", "developer"]),
        texts,
    ),
    st.builds(
        lambda c: {"type": "message", "role": "user", "content": c},
        st.lists(user_parts, max_size=3),
    ),
    st.builds(
        lambda c: {"type": "message", "role": "assistant", "content": c},
        st.lists(assistant_parts, max_size=3),
    ),
    st.builds(
        lambda r, c: {"role": r, "content": [{"type": "input_text", "text": c}]},
        st.sampled_from(["system", "developer"]),
        texts,
    ),
)
function_items = st.one_of(
    st.builds(
        lambda c, n, a: {"type": "function_call", "call_id": c, "name": n, "arguments": a},
        call_ids,
        names,
        arguments,
    ),
    st.builds(
        lambda c, o: {"type": "function_call_output", "call_id": c, "output": o},
        call_ids,
        texts | st.lists(user_parts, max_size=2),
    ),
    st.builds(
        lambda s, e: {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": s}],
            **({"encrypted_content": e} if e else {}),
        },
        texts,
        texts,
    ),
)
items = st.lists(message_items | function_items, min_size=1, max_size=8)
tools = st.lists(
    st.builds(
        lambda n, d, strict: {
            "type": "function",
            "name": n,
            "description": d,
            "parameters": {"type": "object", "properties": {}},
            "strict": strict,
        },
        names,
        texts | st.none(),
        st.booleans() | st.none(),
    ),
    max_size=3,
)
settings_ = st.fixed_dictionaries(
    {},
    optional={
        "instructions": texts,
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_output_tokens": st.integers(16, 10_000),
        "parallel_tool_calls": st.booleans(),
        "tool_choice": st.sampled_from(["auto", "required", "none"]),
        "reasoning": st.fixed_dictionaries(
            {},
            optional={
                "effort": st.sampled_from(list(R._EFFORTS)),
                "summary": st.sampled_from(["auto", "concise", "detailed"]),
            },
        ),
        "text": st.fixed_dictionaries(
            {},
            optional={
                "format": st.just({"type": "text"}),
                "verbosity": st.sampled_from(["low", "medium", "high"]),
            },
        ),
        "store": st.booleans(),
        "stream": st.booleans(),
        "user": texts,
        "metadata": st.dictionaries(names, texts, max_size=2),
    },
)
user_first = st.builds(lambda t: {"role": "user", "content": t}, texts)


@given(first=user_first, rest=items, tools=tools, extra=settings_)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_valid_requests_always_convert(
    first: dict[str, Any],
    rest: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    extra: dict[str, Any],
) -> None:
    inputs = [first, *rest]
    req = R.to_ir(R.parse(body(input=inputs, tools=tools, **extra)).doc)
    calls = [p for m in req.messages for p in m.parts if isinstance(p, ir.ToolCall)]
    results = [p for m in req.messages for p in m.parts if isinstance(p, ir.ToolResult)]
    assert len(calls) == sum(i.get("type") == "function_call" for i in inputs)
    assert len(results) == sum(i.get("type") == "function_call_output" for i in inputs)
    assert all(a.role != b.role for a, b in zip(req.messages, req.messages[1:], strict=False))
    assert all(
        isinstance(p, ir.ToolResult | ir.Text | ir.Image)
        for m in req.messages
        if m.role == "user"
        for p in m.parts
    )
    assert len(req.tools) == len(tools)
    # Whatever a valid request set, the response that echoes it validates with the SDK.
    answer = ir.ChatResponse(id="x", model="up", parts=[ir.Text(text="ok")])
    echoed = Response.model_validate_json(
        R.render(answer, R.parse(body(tools=tools, **extra)).doc, 0)
    )
    assert len(echoed.tools) == len(tools) and echoed.output_text == "ok"


KNOWN_ITEMS = {"message", "function_call", "function_call_output", "reasoning"}
KNOWN_CONTENT = {"input_text", "output_text", "refusal", "input_image"}


@given(
    before=st.lists(message_items, max_size=4),
    after=st.lists(message_items, max_size=2),
    kind=st.text(min_size=1, max_size=15).filter(lambda k: k not in KNOWN_ITEMS),
)
@settings(max_examples=100)
def test_unknown_item_types_name_the_field(
    before: list[dict[str, Any]], after: list[dict[str, Any]], kind: str
) -> None:
    inputs = [*before, {"type": kind, "role": "user", "content": "x"}, *after]
    err = refused(R.to_ir, R.parse(body(input=inputs)).doc)
    assert err.param == f"input[{len(before)}].type"


@given(
    before=st.lists(message_items, max_size=4),
    good=st.lists(user_parts, max_size=3),
    kind=st.text(max_size=15).filter(lambda k: k not in KNOWN_CONTENT) | st.none(),
)
@settings(max_examples=100)
def test_unknown_content_types_name_the_field(
    before: list[dict[str, Any]], good: list[dict[str, Any]], kind: str | None
) -> None:
    bad = {"type": "message", "role": "user", "content": [*good, {"type": kind, "text": "x"}]}
    err = refused(R.to_ir, R.parse(body(input=[*before, bad])).doc)
    assert err.param == f"input[{len(before)}].content[{len(good)}].type"


usages = st.builds(
    lambda p, c, cached, reasoning: Usage(
        prompt_tokens=p,
        completion_tokens=c,
        cached_tokens=min(cached, p),
        reasoning_tokens=min(reasoning, c),
    ),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
answer_parts = st.lists(
    st.one_of(
        st.builds(lambda t: ir.Text(text=t), texts),
        st.builds(lambda t, s: ir.Thinking(text=t, signature=s), texts, texts),
        st.builds(lambda d: ir.Thinking(redacted=d), st.text(min_size=1, max_size=10)),
        st.builds(
            lambda i, n, a: ir.ToolCall(id=i, name=n, arguments=a), call_ids, names, arguments
        ),
    ),
    max_size=8,
)
finishes = st.sampled_from(["stop", "length", "tool_calls", "content_filter"])


@given(parts=answer_parts, finish=finishes, usage=usages | st.none())
@settings(max_examples=150)
def test_rendered_answers_validate(
    parts: list[ir.Part], finish: ir.FinishReason, usage: Usage | None
) -> None:
    answer = ir.ChatResponse(id="x", model="up", parts=parts, finish_reason=finish, usage=usage)
    _, response = rendered(answer)
    assert response.output_text == "".join(p.text for p in parts if isinstance(p, ir.Text))
    calls = [(p.id, p.name, p.arguments) for p in parts if isinstance(p, ir.ToolCall)]
    out = [item for item in response.output if item.type == "function_call"]
    assert [(i.call_id, i.name, i.arguments) for i in out] == calls  # type: ignore[union-attr]
    expected = "incomplete" if finish in ("length", "content_filter") else "completed"
    assert response.status == expected
    if usage is not None:
        assert response.usage is not None and response.usage.total_tokens == usage.total_tokens
        assert response.usage.model_extra is not None
        assert response.usage.model_extra["cost"] == pytest.approx(RATES.cost(usage) / 1e12)


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[list[list[ir.Event]], ir.FinishReason | None]:
    events: list[ir.Event] = []
    if draw(st.booleans()):
        events.append(ir.StreamStart(id="c", model=draw(names)))
    started = 0
    for _ in range(draw(st.integers(0, 25))):
        choice = draw(st.sampled_from(["text", "think", "sign", "tool", "args"]))
        if choice == "text":
            events.append(ir.TextDelta(text=draw(texts)))
        elif choice == "think":
            events.append(ir.ThinkingDelta(text=draw(texts)))
        elif choice == "sign":
            events.append(ir.ThinkingDelta(signature=draw(st.text(min_size=1, max_size=5))))
        elif choice == "tool":
            call_id = f"{draw(call_ids)}_{started}"  # unique, as real call ids are
            events.append(ir.ToolCallStart(index=started, id=call_id, name=draw(names)))
            started += 1
        elif started:
            index = draw(st.integers(0, started - 1))
            events.append(ir.ToolCallDelta(index=index, arguments=draw(texts)))
    finish = draw(finishes | st.none())
    if finish is not None:
        events.append(ir.Finish(finish_reason=finish))
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=4)))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    return batches, finish


@given(stream=event_streams(), usage=usages | st.none())
@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
def test_random_streams_render_valid_events(
    stream: tuple[list[list[ir.Event]], ir.FinishReason | None], usage: Usage | None
) -> None:
    batches, finish = stream
    events, state, _ = run_stream(batches, usage)
    flat = [e for batch in batches for e in batch]
    last = events[-1]
    incomplete = finish in ("length", "content_filter")
    assert last.type == ("response.incomplete" if incomplete else "response.completed")
    final = last.response
    assert final.output_text == "".join(e.text for e in flat if isinstance(e, ir.TextDelta))
    args: dict[int, str] = {}
    for e in flat:
        if isinstance(e, ir.ToolCallDelta):
            args[e.index] = args.get(e.index, "") + e.arguments
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.arguments for c in calls] == [args.get(i, "") for i in range(len(calls))]
    thinking = "".join(e.text for e in flat if isinstance(e, ir.ThinkingDelta))
    reasoning = [item for item in final.output if item.type == "reasoning"]
    assert "".join(s.text for r in reasoning for s in r.summary) == thinking
    assert all(item.status in ("completed", None) for item in final.output[:-1])
    if not incomplete:
        done = state._completed_response
        assert done is not None, "get_final_response() would succeed"
        assert done.output_text == final.output_text
        assert [(i.type, i.id, i.status) for i in done.output] == [
            (i.type, i.id, i.status) for i in final.output
        ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == final.output_text


def test_native_stream_relay_prices_the_final_event() -> None:
    """A Responses stream passed through from OpenAI: events go out as they came, the final
    event's usage gets ``cost``, and a stream cut before it is not complete."""
    rates = Rates.from_price(Price(input=Decimal(1), output=Decimal(2)))
    delta = {"type": "response.output_text.delta", "sequence_number": 0, "delta": "Hello"}
    usage = {"input_tokens": 10, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 4}}
    final = {"type": "response.completed", "sequence_number": 1, "response": {"usage": usage}}
    frames = [
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in (delta, final)
    ]
    relay = R.ResponsesStreamRelay(True, rates)
    assert relay.feed(frames[0]) == frames[0]
    assert not relay.complete
    assert relay.estimated_usage(40).completion_tokens == 2  # "Hello", estimated
    out = relay.feed(frames[1]) + relay.close()
    sent = json.loads(out.split(b"data: ", 1)[1])
    assert sent["response"]["usage"]["cost"] == pytest.approx((10 * 1 + 5 * 2) / 1e6)
    assert relay.complete and relay.usage is not None
    assert (relay.usage.prompt_tokens, relay.usage.cached_tokens) == (10, 4)
    failed = R.ResponsesStreamRelay(True, rates)
    failed.feed(b'event: error\ndata: {"type":"error","message":"boom"}\n\n')
    assert failed.failed and not failed.complete
