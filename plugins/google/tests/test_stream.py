"""Gemini SSE streams → IR events, whatever the chunking."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from lmrouter import ir
from lmrouter.usage import Usage
from lmrouter_google import chat

RESPONSE_ID = "8RFkaKnWJ9mbkdUPu_q7sQ0"


def event(doc: dict[str, Any], eol: bytes = b"\r\n\r\n") -> bytes:
    # Google's own spacing: a space after colons, none after commas.
    return b"data: " + json.dumps(doc, separators=(",", ": ")).encode() + eol


def chunk(parts: list[dict[str, Any]], finish: str | None = None, **usage: int) -> dict:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 10, **usage},
        "modelVersion": "gemini-2.5-flash",
        "responseId": RESPONSE_ID,
    }


TEXT_STREAM = b"".join(
    [
        event(chunk([{"text": "Thinking about the sky", "thought": True}], thoughtsTokenCount=40)),
        event(chunk([{"text": "The sky"}], candidatesTokenCount=2, thoughtsTokenCount=40)),
        event(
            chunk([{"text": " is blue."}], "STOP", candidatesTokenCount=5, thoughtsTokenCount=40)
        ),
    ]
)


def run(data: bytes, step: int | None = None) -> list[ir.Event]:
    parser = chat.StreamParser("route-model")
    events: list[ir.Event] = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
    return events + parser.close()


def without_usage(events: list[ir.Event]) -> list[ir.Event]:
    return [e for e in events if not isinstance(e, ir.UsageUpdate)]


@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_text_and_thoughts_any_chunking(step: int | None) -> None:
    events = run(TEXT_STREAM, step)
    assert without_usage(events) == [
        ir.StreamStart(id=RESPONSE_ID, model="gemini-2.5-flash"),
        ir.ThinkingDelta(text="Thinking about the sky"),
        ir.TextDelta(text="The sky"),
        ir.TextDelta(text=" is blue."),
        ir.Finish(finish_reason="stop"),
    ]
    usages = [e.usage for e in events if isinstance(e, ir.UsageUpdate)]
    assert len(usages) == 3, "usage is cumulative and reported on each chunk"
    assert usages[-1] == Usage(prompt_tokens=10, completion_tokens=45, reasoning_tokens=40)


def test_plain_lf_framing_and_a_last_event_without_blank_line() -> None:
    data = event(chunk([{"text": "a"}]), b"\n\n") + event(chunk([{"text": "b"}], "STOP"), b"")
    assert [e for e in run(data) if isinstance(e, ir.TextDelta | ir.Finish)] == [
        ir.TextDelta(text="a"),
        ir.TextDelta(text="b"),
        ir.Finish(finish_reason="stop"),
    ]


def test_function_calls_arrive_whole() -> None:
    data = event(chunk([{"text": "Checking."}])) + event(
        chunk(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "CiQB0e2Kb7",
                },
                {"functionCall": {"name": "get_time", "args": {}, "id": "fc-7"}},
            ],
            "STOP",
            candidatesTokenCount=12,
        )
    )
    events = without_usage(run(data))
    start0, delta0, start1, delta1, finish = events[2:]
    assert isinstance(start0, ir.ToolCallStart) and start0.index == 0
    assert start0.name == "get_weather" and start0.id.startswith("call_")
    assert delta0 == ir.ToolCallDelta(index=0, arguments='{"city":"Paris"}')
    assert start1 == ir.ToolCallStart(index=1, id="fc-7", name="get_time")
    assert delta1 == ir.ToolCallDelta(index=1, arguments="{}")
    assert finish == ir.Finish(finish_reason="tool_calls")


def test_stream_ids_match_the_whole_answer() -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    events = run(event(chunk([call], "STOP")))
    [start] = [e for e in events if isinstance(e, ir.ToolCallStart)]
    whole = chat.parse(orjson.dumps(chunk([call], "STOP")), "m")
    assert isinstance(whole.parts[0], ir.ToolCall) and whole.parts[0].id == start.id


@pytest.mark.parametrize(
    ("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter")]
)
def test_finish_reasons(reason: str, finish: str) -> None:
    data = event(chunk([{"text": "partial"}])) + event(
        {"candidates": [{"finishReason": reason, "index": 0}], "responseId": RESPONSE_ID}
    )
    assert run(data)[-1] == ir.Finish(finish_reason=finish)


def test_usage_after_the_finish_still_counts() -> None:
    data = event(chunk([{"text": "done"}], "STOP", candidatesTokenCount=1)) + event(
        {"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4}}
    )
    events = run(data)
    assert sum(isinstance(e, ir.Finish) for e in events) == 1
    assert events[-1] == ir.UsageUpdate(usage=Usage(prompt_tokens=10, completion_tokens=4))


def test_blocked_prompt() -> None:
    data = event(
        {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": "gemini-2.5-flash",
            "responseId": RESPONSE_ID,
        }
    )
    events = run(data)
    assert events[0] == ir.StreamStart(id=RESPONSE_ID, model="gemini-2.5-flash")
    assert events[-1] == ir.Finish(finish_reason="content_filter")
    assert not [e for e in events if isinstance(e, ir.TextDelta)]


def test_error_event_mid_stream() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    events = run(event(chunk([{"text": "Hel"}])) + event(error))
    assert events[-1] == ir.StreamError(message="UNAVAILABLE: The model is overloaded.")
    assert not [e for e in events if isinstance(e, ir.Finish)]


def test_garbage_is_an_error_and_a_cut_stream_has_no_finish() -> None:
    assert run(event(chunk([{"text": "a"}])) + b"data: <html>\r\n\r\n")[-1] == ir.StreamError(
        message="Gemini sent an unreadable stream event."
    )
    cut = run(event(chunk([{"text": "a"}])) + b'data: {"candidates": [{"content": {"par')
    assert isinstance(cut[-1], ir.StreamError), "a truncated last event is not valid JSON"
    assert not [e for e in run(event(chunk([{"text": "a"}]))) if isinstance(e, ir.Finish)]


def test_model_and_id_fall_back() -> None:
    events = run(event({"candidates": [{"content": {"parts": [{"text": "x"}]}, "index": 0}]}))
    start = events[0]
    assert isinstance(start, ir.StreamStart)
    assert start.model == "route-model" and start.id.startswith("gen-")
