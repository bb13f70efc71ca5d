"""Gemini's API as an inbound dialect: the pass-through relay at any chunking, the stream
renderer, and the request converter's corners (field-name spellings, call ids, schemas)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter import ir
from lmrouter.config import Price
from lmrouter.dialects import gemini
from lmrouter.errors import RouterError
from lmrouter.money import Rates
from lmrouter.sse import SSEDecoder
from lmrouter.usage import Usage

RATES = Rates.from_price(Price(input=Decimal(1), output=Decimal(2)))


def chunk(texts: list[str], finish: bool, usage: dict[str, int] | None) -> bytes:
    candidate: dict[str, object] = {
        "content": {"role": "model", "parts": [{"text": t} for t in texts]},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = "STOP"
    doc: dict[str, object] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
    if usage:
        doc["usageMetadata"] = usage
    return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    finished=st.booleans(),
)
def test_relay_passes_bytes_and_reads_usage_at_any_chunking(
    texts: list[str], cuts: list[int], finished: bool
) -> None:
    events = [
        chunk(
            [t],
            finished and i == len(texts) - 1,
            {"promptTokenCount": 5, "candidatesTokenCount": i + 1, "thoughtsTokenCount": 3},
        )
        for i, t in enumerate(texts)
    ]
    data = b"".join(events)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]
    relay = gemini.GenerateStreamRelay(True, RATES)
    out = b"".join(relay.feed(p) for p in pieces) + relay.close()
    assert out == data, "a Google route's stream reaches the client byte for byte"
    assert relay.complete is finished
    assert relay.usage == Usage(
        prompt_tokens=5, completion_tokens=len(texts) + 3, reasoning_tokens=3
    )


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.text(min_size=1, max_size=8), max_size=8),
    arguments=st.dictionaries(
        st.text(min_size=1, max_size=5), st.integers(-(2**53), 2**53), max_size=4
    ),
    split=st.integers(min_value=0, max_value=60),
)
def test_renderer_streams_text_and_whole_function_calls(
    texts: list[str], arguments: dict[str, int], split: int
) -> None:
    encoded = orjson.dumps(arguments).decode()
    cut = split % (len(encoded) + 1)
    renderer = gemini.GenerateRenderer({"model": "openai/gpt-4o-mini"}, True)
    events: list[ir.Event] = [ir.StreamStart(id="resp-1", model="gpt-4o-mini")]
    events += [ir.TextDelta(text=t) for t in texts]
    events += [
        ir.ToolCallStart(index=0, id="call_1", name="lookup"),
        ir.ToolCallDelta(index=0, arguments=encoded[:cut]),
        ir.ToolCallDelta(index=0, arguments=encoded[cut:]),
        ir.Finish(finish_reason="tool_calls"),
    ]
    usage = Usage(prompt_tokens=7, completion_tokens=9, reasoning_tokens=2)
    out = renderer.render(events) + renderer.finish(usage, 0)
    docs = [orjson.loads(e.data) for e in SSEDecoder().feed(out)]
    parts = [p for d in docs for p in d["candidates"][0]["content"]["parts"]]
    assert "".join(p.get("text", "") for p in parts) == "".join(texts)
    [call] = [p["functionCall"] for p in parts if "functionCall" in p]
    assert call == {"name": "lookup", "args": arguments, "id": "call_1"}
    last = docs[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {
        "promptTokenCount": 7,
        "candidatesTokenCount": 7,
        "totalTokenCount": 16,
        "thoughtsTokenCount": 2,
    }
    assert all(d["responseId"] == "resp-1" and d["modelVersion"] == "gpt-4o-mini" for d in docs)


def test_snake_case_and_camel_case_fields_convert_alike() -> None:
    schema = {"type": "object", "properties": {"max_items": {"type": "integer"}}}
    camel = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 9, "stopSequences": ["END"]},
        "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": schema}]}],
    }
    snake = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "generation_config": {"max_output_tokens": 9, "stop_sequences": ["END"]},
        "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": schema}]}],
    }
    assert gemini.to_ir(camel) == gemini.to_ir(snake)
    request = gemini.to_ir(snake)
    assert request.max_tokens == 9 and request.stop == ["END"]
    assert request.tools[0].parameters == schema, "names inside a schema are the caller's"


def test_calls_without_ids_pair_with_their_responses_in_order() -> None:
    def call(city: str) -> dict[str, object]:
        return {"functionCall": {"name": "weather", "args": {"city": city}}}

    def answer(temp: int) -> dict[str, object]:
        return {"functionResponse": {"name": "weather", "response": {"t": temp}}}

    doc = {
        "contents": [
            {"role": "user", "parts": [{"text": "Paris and Rome?"}]},
            {"role": "model", "parts": [call("Paris"), call("Rome")]},
            {"role": "user", "parts": [answer(21), answer(25)]},
        ]
    }
    request = gemini.to_ir(doc)
    calls = request.messages[1].parts
    results = request.messages[2].parts
    assert [c.id for c in calls] == [r.id for r in results]  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2  # type: ignore[union-attr]
    assert request.messages[1].role == "assistant"


def test_gemini_schemas_become_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "nullable": True},
            "days": {"type": "ARRAY", "items": {"type": "INTEGER"}},
        },
        "required": ["city"],
        "propertyOrdering": ["city", "days"],
    }
    assert gemini.json_schema(schema) == {
        "type": "object",
        "properties": {
            "city": {"type": ["string", "null"]},
            "days": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["city"],
    }


def test_google_search_is_hosted_other_google_tools_dropped_by_name() -> None:
    base = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    request = gemini.to_ir({**base, "tools": [{"googleSearch": {}}, {"codeExecution": {}}]})
    assert request.hosted_tools == [("tools[0].googleSearch", "web_search")]
    assert request.dropped_tools == [("tools[1].codeExecution", "codeExecution")]
    assert gemini.to_ir({**base, "generationConfig": {"candidateCount": 2}}).n == 2


def test_json_answers_become_the_response_format() -> None:
    base = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}

    def fmt(config: dict[str, object]) -> ir.ResponseFormat | None:
        return gemini.to_ir({**base, "generationConfig": config}).response_format

    assert fmt({}) is None and fmt({"responseMimeType": "text/plain"}) is None
    assert fmt({"responseMimeType": "application/json"}) == ir.ResponseFormat(type="json_object")
    json_schema = fmt({"responseMimeType": "application/json", "responseJsonSchema": schema})
    assert json_schema == ir.ResponseFormat(type="json_schema", schema=schema)
    gemini_schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}
    converted = fmt({"response_mime_type": "application/json", "response_schema": gemini_schema})
    assert converted == ir.ResponseFormat(type="json_schema", schema=schema)


def test_errors_have_gemini_shape() -> None:
    err = RouterError(429, "Slow down.", code="rate_limit_exceeded")
    assert orjson.loads(gemini.error_body(err)) == {
        "error": {"code": 429, "message": "Slow down.", "status": "RESOURCE_EXHAUSTED"}
    }
    [event] = SSEDecoder().feed(gemini.stream_error(err))
    assert orjson.loads(event.data)["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_the_path_decides_the_stream_and_bad_bodies_are_400() -> None:
    body = orjson.dumps({"contents": [{"parts": [{"text": "hi"}]}]})
    assert gemini.parse_stream(body).stream and not gemini.parse_generate(body).stream
    for bad in (b"not json", b"[]", b'{"contents": []}'):
        with pytest.raises(RouterError) as caught:
            gemini.parse_generate(bad)
        assert caught.value.status == 400
