"""Gemini answers → IR: parts, ids, finish reasons, usage, error bodies."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from lmrouter import ir
from lmrouter.providers import UpstreamFailure
from lmrouter.usage import Usage
from lmrouter_google import GoogleConfig, GoogleProvider, _ours

REQUEST = ir.ChatRequest(model="mine", messages=[])


class RouteStub:
    model = "gemini-2.5-flash"


class Ctx:
    stream = False
    route = RouteStub()


def provider() -> GoogleProvider:
    raw = {"type": "google", "base_url": "https://generativelanguage.googleapis.com"}
    return GoogleProvider("gemini", msgspec.convert(raw, GoogleConfig))


def parse(doc: dict[str, Any]) -> ir.ChatResponse:
    return provider().parse(Ctx(), REQUEST, orjson.dumps(doc, option=orjson.OPT_INDENT_2))  # type: ignore[arg-type]


def answer(parts: list[dict[str, Any]], finish: str | None = "STOP", **extra: Any) -> dict:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "mSVkaOv5IM6ZkdUPt8TFiQo",
        **extra,
    }


def test_text_with_thoughts_and_usage() -> None:
    doc = answer(
        [
            {"text": "**Weighing it**\n\nThe user asks", "thought": True},
            {"text": "It is sunny"},
            {"text": " in Paris."},
        ]
    )
    doc["usageMetadata"] = {
        "promptTokenCount": 120,
        "candidatesTokenCount": 7,
        "totalTokenCount": 239,
        "cachedContentTokenCount": 100,
        "thoughtsTokenCount": 101,
        "toolUsePromptTokenCount": 11,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
    }
    result = parse(doc)
    assert result.id == "mSVkaOv5IM6ZkdUPt8TFiQo"
    assert result.model == "gemini-2.5-flash-001"
    assert result.parts == [
        ir.Thinking(text="**Weighing it**\n\nThe user asks"),
        ir.Text(text="It is sunny in Paris."),
    ]
    assert result.finish_reason == "stop"
    # Thoughts are counted apart from candidates by Gemini and billed as output.
    assert result.usage == Usage(
        prompt_tokens=131, completion_tokens=108, cached_tokens=100, reasoning_tokens=101
    )


def test_function_calls_with_and_without_ids() -> None:
    parts = [
        {"text": "Let me check."},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc-1"},
            "thoughtSignature": "CiQB0e2Kb7",
        },
        {"functionCall": {"name": "get_time", "args": {"zone": "CET", "n": [1, 2]}}},
        {"functionCall": {"name": "ping"}},
    ]
    first = parse(answer(parts))
    assert first.finish_reason == "tool_calls"
    assert first.parts[0] == ir.Text(text="Let me check.")
    paris, time, ping = first.parts[1:]
    assert paris == ir.ToolCall(id="fc-1", name="get_weather", arguments='{"city":"Paris"}')
    assert isinstance(time, ir.ToolCall) and isinstance(ping, ir.ToolCall)
    assert orjson.loads(time.arguments) == {"zone": "CET", "n": [1, 2]}
    assert ping.arguments == "{}"
    assert time.id.startswith("call_") and ping.id.startswith("call_") and time.id != ping.id
    assert parse(answer(parts)).parts[2:] == [time, ping], "generated ids are stable"
    other = answer(parts)
    other["responseId"] = "another-answer"
    assert parse(other).parts[2] != time, "and differ between answers"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, finish: str) -> None:
    assert parse(answer([{"text": "x"}], reason)).finish_reason == finish


def test_safety_stop_without_content() -> None:
    doc = answer([], "SAFETY")
    del doc["candidates"][0]["content"]
    doc["candidates"][0]["safetyRatings"] = [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    ]
    result = parse(doc)
    assert (result.parts, result.finish_reason) == ([], "content_filter")


def test_blocked_prompt_has_no_candidates() -> None:
    doc = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 20, "totalTokenCount": 20},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "blocked-1",
    }
    result = parse(doc)
    assert (result.parts, result.finish_reason) == ([], "content_filter")
    assert result.usage == Usage(prompt_tokens=20)


def test_model_falls_back_to_the_route_model() -> None:
    doc = answer([{"text": "x"}])
    del doc["modelVersion"], doc["responseId"]
    result = parse(doc)
    assert result.model == "gemini-2.5-flash"
    assert result.id.startswith("gen-")


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"candidates": "nope"}', b""])
def test_unreadable_answer_is_an_upstream_failure(body: bytes) -> None:
    with pytest.raises(UpstreamFailure) as info:
        provider().parse(Ctx(), REQUEST, body)  # type: ignore[arg-type]
    assert info.value.status == 502 and info.value.retryable


def test_error_messages() -> None:
    p = provider()
    body = b'{"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}'
    assert p.error_message(429, body) == "RESOURCE_EXHAUSTED: Quota exceeded."
    wrapped = b'[{"error": {"code": 503, "message": "Overloaded.", "status": "UNAVAILABLE"}}]'
    assert p.error_message(503, wrapped) == "UNAVAILABLE: Overloaded."
    assert p.error_message(502, b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"


def test_400s_about_our_key_or_project_are_recognised() -> None:
    bad_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
    assert _ours(orjson.dumps(bad_key))
    bad_request = {"error": {"code": 400, "message": "Bad field", "status": "INVALID_ARGUMENT"}}
    assert not _ours(orjson.dumps(bad_request))
    assert not _ours(b"not json")
    region = {
        "error": {
            "code": 400,
            "message": "User location is not supported for the API use.",
            "status": "FAILED_PRECONDITION",
        }
    }
    assert _ours(orjson.dumps(region))
