"""The fake Gemini upstream speaks the real REST API: checked with raw HTTP (google-genai is not a
dependency), against what Google's service answers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lmrouter.testing.fake_gemini import Behavior, FakeGemini

KEY = "AIza-fake-key"
HELLO = {"contents": [{"role": "user", "parts": [{"text": "Hello there, Gemini!"}]}]}
WEATHER_TOOL = {
    "functionDeclarations": [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "OBJECT",
                "properties": {
                    "city": {"type": "STRING"},
                    "days": {"type": "INTEGER"},
                    "unit": {"type": "STRING", "enum": ["C", "F"]},
                },
                "required": ["city"],
            },
        },
        {"name": "get_time"},
    ]
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key=KEY)
    fake.script("slow", Behavior(text="abcdefgh" * 4, chunk_chars=8, chunk_delay=0.1))
    fake.script("drop", Behavior(text="y" * 64, chunk_chars=8, drop_after_chunks=3))
    fake.script("flaky", Behavior(text="z" * 64, chunk_chars=8, error_after_chunks=2))
    fake.script("busy", Behavior(status=429, retry_delay=20))
    fake.script("down", Behavior(status=503))
    fake.script("thinker", Behavior(text="It is 42.", thoughts="Six times seven is 42.."))
    fake.script("unsafe", Behavior(text="Some text", finish_reason="SAFETY"))
    fake.script("blocked", Behavior(block_reason="PROHIBITED_CONTENT"))
    fake.script(
        "cached",
        Behavior(
            text="ok",
            usage={
                "promptTokenCount": 1000,
                "cachedContentTokenCount": 800,
                "candidatesTokenCount": 20,
                "thoughtsTokenCount": 30,
            },
        ),
    )
    fake.script("anonymous-calls", Behavior(function_call_ids=False))
    with fake.run_in_thread() as base_url:
        assert base_url == f"http://127.0.0.1:{fake.port}" == fake.base_url
        yield fake


@pytest.fixture
def fake(server: FakeGemini) -> FakeGemini:
    server.reset()
    return server


def url(fake: FakeGemini, model: str, method: str = "generateContent") -> str:
    return f"{fake.base_url}/v1beta/models/{model}:{method}"


def post(
    fake: FakeGemini, model: str, body: Any, method: str = "generateContent"
) -> httpx.Response:
    return httpx.post(url(fake, model, method), json=body, headers={"x-goog-api-key": KEY})


def stream(fake: FakeGemini, model: str, body: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    response = post(fake, model, body, "streamGenerateContent?alt=sse")
    return response, events(response.content)


def events(raw: bytes) -> list[dict[str, Any]]:
    assert b"[DONE]" not in raw
    frames = raw.split(b"\r\n\r\n")
    assert frames[-1] == b"", "every event ends with CRLF CRLF"
    out = []
    for frame in frames[:-1]:
        assert frame.startswith(b"data: ") and b"\n" not in frame
        out.append(json.loads(frame[len(b"data: ") :]))
    return out


def text_of(chunks: list[dict[str, Any]], thought: bool = False) -> str:
    return "".join(
        part.get("text", "")
        for chunk in chunks
        for candidate in chunk.get("candidates", [])
        for part in candidate.get("content", {}).get("parts", [])
        if bool(part.get("thought")) == thought
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == response.status_code
    return error


# -- generateContent ---------------------------------------------------------------------------


def test_whole_answer_shape(fake: FakeGemini) -> None:
    response = post(fake, "gemini-2.5-flash", HELLO)
    assert response.status_code == 200
    assert response.text.startswith('{\n  "candidates"'), "pretty-printed like Google's"
    body = response.json()
    assert set(body) == {"candidates", "usageMetadata", "modelVersion", "responseId"}
    [candidate] = body["candidates"]
    assert candidate == {
        "content": {"parts": [{"text": "Hello! You said: Hello there, Gemini!"}], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert "thoughtsTokenCount" not in usage and "cachedContentTokenCount" not in usage
    assert body["modelVersion"] == "gemini-2.5-flash" and len(body["responseId"]) == 22
    assert fake.requests[-1].json == HELLO


def test_stream_matches_whole_answer(fake: FakeGemini) -> None:
    whole = post(fake, "gemini-2.5-flash", HELLO).json()
    response, chunks = stream(fake, "gemini-2.5-flash", HELLO)
    assert response.headers["content-type"] == "text/event-stream"
    assert len(chunks) > 2
    assert text_of(chunks) == whole["candidates"][0]["content"]["parts"][0]["text"]
    assert [c["candidates"][0].get("finishReason") for c in chunks[:-1]] == [None] * (
        len(chunks) - 1
    )
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    counts = [c["usageMetadata"].get("candidatesTokenCount", 0) for c in chunks]
    assert counts == sorted(counts) and counts[0] < counts[-1], "usage is cumulative"
    assert chunks[-1]["usageMetadata"] == whole["usageMetadata"]
    assert len({c["responseId"] for c in chunks}) == 1


def test_stream_without_sse_is_one_json_array(fake: FakeGemini) -> None:
    response = post(fake, "gemini-2.5-flash", HELLO, "streamGenerateContent")
    chunks = response.json()
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert text_of(chunks).startswith("Hello! You said:")


def test_v1_path_and_snake_case_fields(fake: FakeGemini) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "generation_config": {"max_output_tokens": 2},
    }
    response = httpx.post(
        f"{fake.base_url}/v1/models/gemini-x:generateContent", json=body, params={"key": KEY}
    )
    assert response.status_code == 200
    assert response.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"


# -- keys and errors ----------------------------------------------------------------------------


def test_keys(fake: FakeGemini) -> None:
    assert httpx.post(url(fake, "m"), json=HELLO, params={"key": KEY}).status_code == 200
    missing = httpx.post(url(fake, "m"), json=HELLO)
    assert missing.status_code == 403
    assert error_of(missing)["status"] == "PERMISSION_DENIED"
    wrong = httpx.post(url(fake, "m"), json=HELLO, headers={"x-goog-api-key": "AIza-wrong"})
    error = error_of(wrong)
    assert (wrong.status_code, error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0]["reason"] == "API_KEY_INVALID"


def test_scripted_errors(fake: FakeGemini) -> None:
    busy = post(fake, "busy", HELLO)
    error = error_of(busy)
    assert (busy.status_code, error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}
    ]
    down = post(fake, "down", HELLO, "streamGenerateContent?alt=sse")
    assert (down.status_code, error_of(down)["status"]) == (503, "UNAVAILABLE")
    assert "overloaded" in error_of(down)["message"]


def test_unknown_paths_and_bad_json(fake: FakeGemini) -> None:
    assert error_of(post(fake, "m", HELLO, "fooContent"))["status"] == "NOT_FOUND"
    gone = httpx.get(url(fake, "m"), params={"key": KEY})
    assert gone.status_code == 404
    bad = httpx.post(url(fake, "m"), content=b"{nope", headers={"x-goog-api-key": KEY})
    assert bad.status_code == 400
    assert error_of(bad)["message"].startswith("Invalid JSON payload received.")


def parts(*items: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"role": role, "parts": list(items)}


CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
ANSWER = {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        ({**HELLO, "temperature": 1}, 'Unknown name "temperature": Cannot find field.'),
        ({**HELLO, "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
        ({"contents": [parts({"text": "x"}, role="assistant")]}, "valid role: user, model"),
        ({"contents": [parts()]}, "contents.parts must not be empty"),
        ({"contents": [parts({"thought": True})]}, "required oneof field 'data'"),
        ({"contents": [parts({"text": "a", "inlineData": {}})]}, "Oneof field 'data'"),
        (
            {"contents": [parts({"inlineData": {"mimeType": "image/png", "data": "@@@"}})]},
            "Base64 decoding failed",
        ),
        (
            {"contents": [parts({"functionResponse": {"response": {}}})]},
            "function_response.name: Name cannot be empty",
        ),
        (
            {
                "contents": [
                    parts({"text": "a"}),
                    parts({"text": "b"}, role="model"),
                    parts(CALL, role="model"),
                ]
            },
            "function call turn comes immediately after a user turn",
        ),
        (
            {"contents": [parts({"text": "a"}), parts(CALL, CALL, role="model"), parts(ANSWER)]},
            "number of function response parts is equal",
        ),
        (
            {
                **HELLO,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"a": {"type": "string"}},
                                    "additionalProperties": False,
                                },
                            }
                        ]
                    }
                ],
            },
            'Unknown name "additionalProperties" at \'tools[0].function_declarations[0]'
            ".parameters': Cannot find field.",
        ),
        (
            {
                **HELLO,
                "tools": [
                    {"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}
                ],
            },
            "should be non-empty for OBJECT type",
        ),
        (
            {**HELLO, "tools": [{"functionDeclarations": [{"name": "bad name!"}]}]},
            "Invalid function name",
        ),
        (
            {
                **HELLO,
                "tools": [WEATHER_TOOL],
                "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}},
            },
            "FunctionCallingConfig.Mode",
        ),
        (
            {
                **HELLO,
                "tools": [WEATHER_TOOL],
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["nope"]}
                },
            },
            "nope is not declared",
        ),
        ({**HELLO, "generationConfig": {"stopSequences": list("abcdef")}}, "must not exceed 5"),
    ],
)
def test_request_checks(fake: FakeGemini, body: dict[str, Any], message: str) -> None:
    response = post(fake, "gemini-x", body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


# -- tools ----------------------------------------------------------------------------------------


def test_function_call_answer(fake: FakeGemini) -> None:
    body = post(fake, "gemini-x", {**HELLO, "tools": [WEATHER_TOOL]}).json()
    [candidate] = body["candidates"]
    [part] = candidate["content"]["parts"]
    call = part["functionCall"]
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "test", "days": 1, "unit": "C"}
    assert call["id"].startswith("fc-")
    assert "thoughtSignature" not in part, "no thinking, no signature"
    assert candidate["finishReason"] == "STOP", "Gemini says STOP for function calls too"


def test_function_call_stream_arrives_whole(fake: FakeGemini) -> None:
    _, chunks = stream(fake, "gemini-x", {**HELLO, "tools": [WEATHER_TOOL]})
    calls = [
        part["functionCall"]
        for chunk in chunks
        for part in chunk["candidates"][0]["content"]["parts"]
        if "functionCall" in part
    ]
    assert len(calls) == 1 and calls[0]["args"]["city"] == "test"


def test_tool_config_choices(fake: FakeGemini) -> None:
    def answer(config: dict[str, Any]) -> dict[str, Any]:
        body = {**HELLO, "tools": [WEATHER_TOOL], "toolConfig": {"functionCallingConfig": config}}
        return post(fake, "gemini-x", body).json()["candidates"][0]["content"]["parts"][0]

    assert "text" in answer({"mode": "NONE"})
    named = answer({"mode": "ANY", "allowedFunctionNames": ["get_time"]})
    assert named["functionCall"]["name"] == "get_time" and named["functionCall"]["args"] == {}
    assert answer({"mode": "AUTO"})["functionCall"]["name"] == "get_weather"


def test_round_trip_ends_with_text(fake: FakeGemini) -> None:
    body = {
        "contents": [
            parts({"text": "Weather in Paris?"}),
            parts(
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc-1"}},
                role="model",
            ),
            parts(
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "sunny"},
                        "id": "fc-1",
                    }
                }
            ),
        ],
        "tools": [WEATHER_TOOL],
    }
    response = post(fake, "gemini-x", body)
    assert response.status_code == 200, response.text
    assert "text" in response.json()["candidates"][0]["content"]["parts"][0]


def test_ids_can_be_left_out(fake: FakeGemini) -> None:
    body = post(fake, "anonymous-calls", {**HELLO, "tools": [WEATHER_TOOL]}).json()
    assert "id" not in body["candidates"][0]["content"]["parts"][0]["functionCall"]


# -- thinking, limits, usage, safety ---------------------------------------------------------------


def thinking(
    include: bool | None = None, budget: int | None = None, limit: int | None = None
) -> dict:
    config: dict[str, Any] = {}
    if include is not None:
        config["includeThoughts"] = include
    if budget is not None:
        config["thinkingBudget"] = budget
    generation: dict[str, Any] = {"thinkingConfig": config}
    if limit is not None:
        generation["maxOutputTokens"] = limit
    return {**HELLO, "generationConfig": generation}


def test_hidden_thoughts_still_count(fake: FakeGemini) -> None:
    body = post(fake, "thinker", thinking()).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "It is 42."}]
    usage = body["usageMetadata"]
    assert usage["thoughtsTokenCount"] == 3  # 23 characters in pieces of 8
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )
    _, chunks = stream(fake, "thinker", thinking())
    assert all(c["usageMetadata"]["thoughtsTokenCount"] == 3 for c in chunks)


def test_included_thoughts_come_first(fake: FakeGemini) -> None:
    body = post(fake, "thinker", thinking(include=True)).json()
    assert body["candidates"][0]["content"]["parts"] == [
        {"text": "Six times seven is 42..", "thought": True},
        {"text": "It is 42."},
    ]
    _, chunks = stream(fake, "thinker", thinking(include=True))
    assert text_of(chunks, thought=True) == "Six times seven is 42.."
    assert text_of(chunks) == "It is 42."
    for chunk in chunks:  # thoughts and answer never share a chunk
        assert len(chunk["candidates"][0]["content"]["parts"]) == 1


def test_budget_zero_turns_thinking_off(fake: FakeGemini) -> None:
    body = post(fake, "thinker", thinking(include=True, budget=0)).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "It is 42."}]
    assert "thoughtsTokenCount" not in body["usageMetadata"]


def test_thoughts_eat_the_output_limit(fake: FakeGemini) -> None:
    body = post(fake, "thinker", thinking(limit=3)).json()
    [candidate] = body["candidates"]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert "content" not in candidate, "all tokens went to thoughts: no text at all"
    assert body["usageMetadata"]["thoughtsTokenCount"] == 3
    assert "candidatesTokenCount" not in body["usageMetadata"]
    _, chunks = stream(fake, "thinker", thinking(limit=4))
    assert text_of(chunks) == "It is 42"[:8] and chunks[-1]["candidates"][0]["finishReason"] == (
        "MAX_TOKENS"
    )


def test_thinking_signs_the_function_call(fake: FakeGemini) -> None:
    body = post(fake, "thinker", {**thinking(), "tools": [WEATHER_TOOL]}).json()
    [part] = body["candidates"][0]["content"]["parts"]
    assert "functionCall" in part and part["thoughtSignature"]


def test_scripted_usage(fake: FakeGemini) -> None:
    usage = post(fake, "cached", HELLO).json()["usageMetadata"]
    assert usage["promptTokenCount"] == 1000 and usage["cachedContentTokenCount"] == 800
    assert usage["candidatesTokenCount"] == 20 and usage["thoughtsTokenCount"] == 30
    assert usage["totalTokenCount"] == 1050
    _, chunks = stream(fake, "cached", HELLO)
    assert chunks[-1]["usageMetadata"] == usage


def test_safety_finish_and_blocked_prompt(fake: FakeGemini) -> None:
    [candidate] = post(fake, "unsafe", HELLO).json()["candidates"]
    assert candidate["finishReason"] == "SAFETY" and "content" not in candidate
    assert any(r.get("blocked") for r in candidate["safetyRatings"])
    _, chunks = stream(fake, "unsafe", HELLO)
    assert text_of(chunks) == "Some text"
    assert chunks[-1]["candidates"][0]["finishReason"] == "SAFETY"
    blocked = post(fake, "blocked", HELLO).json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    _, chunks = stream(fake, "blocked", HELLO)
    assert len(chunks) == 1 and chunks[0]["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"


def test_candidate_count(fake: FakeGemini) -> None:
    body = post(fake, "gemini-x", {**HELLO, "generationConfig": {"candidateCount": 2}}).json()
    texts = [c["content"]["parts"][0]["text"] for c in body["candidates"]]
    assert [c["index"] for c in body["candidates"]] == [0, 1]
    assert texts[1] == texts[0] + " (candidate 1)"


# -- failures mid-stream -------------------------------------------------------------------


def test_slow_stream_is_paced(fake: FakeGemini) -> None:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        url(fake, "slow", "streamGenerateContent?alt=sse"),
        json=HELLO,
        headers={"x-goog-api-key": KEY},
    ) as response:
        arrivals = [time.monotonic() for line in response.iter_lines() if line.startswith("data: ")]
    assert len(arrivals) == 4
    # no chunk arrives before it was sent, 0.1 s after the previous one; the gaps the client
    # sees are no measure (a client that was not scheduled reads two chunks at once)
    assert all(at - started >= 0.1 * n for n, at in enumerate(arrivals))


def test_dropped_stream(fake: FakeGemini) -> None:
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            url(fake, "drop", "streamGenerateContent?alt=sse"),
            json=HELLO,
            headers={"x-goog-api-key": KEY},
        ) as response,
    ):
        for piece in response.iter_raw():
            received += piece
    chunks = events(received)
    assert len(chunks) == 3 and text_of(chunks) == "y" * 24
    assert not any("finishReason" in c["candidates"][0] for c in chunks)


def test_error_event_mid_stream(fake: FakeGemini) -> None:
    response, chunks = stream(fake, "flaky", HELLO)
    assert response.status_code == 200
    assert text_of(chunks[:-1]) == "z" * 16
    assert chunks[-1] == {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }


def test_client_disconnect_is_recorded(fake: FakeGemini) -> None:
    with httpx.stream(
        "POST",
        url(fake, "slow", "streamGenerateContent?alt=sse"),
        json=HELLO,
        headers={"x-goog-api-key": KEY},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break
    deadline = time.monotonic() + 3
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    [gone] = fake.disconnects
    assert gone.model == "slow" and gone.chunks_sent < 4


# -- embeddings -----------------------------------------------------------------------------


def embed_request(text: str, model: str = "text-embedding-004", **extra: Any) -> dict[str, Any]:
    return {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra}


def test_batch_embeddings(fake: FakeGemini) -> None:
    body = {"requests": [embed_request("alpha"), embed_request("beta")]}
    response = post(fake, "text-embedding-004", body, "batchEmbedContents")
    assert response.status_code == 200
    doc = response.json()
    assert set(doc) == {"embeddings"} and "usageMetadata" not in doc, "no token counts"
    alpha, beta = (item["values"] for item in doc["embeddings"])
    assert len(alpha) == len(beta) == 768 and alpha != beta
    assert math.fsum(x * x for x in alpha) == pytest.approx(1.0, abs=1e-5)
    again = post(fake, "text-embedding-004", body, "batchEmbedContents").json()
    assert again["embeddings"][0]["values"] == alpha, "deterministic"


def test_output_dimensionality_truncates_without_renormalising(fake: FakeGemini) -> None:
    full = post(fake, "e", {"content": {"parts": [{"text": "alpha"}]}}, "embedContent")
    short = post(
        fake,
        "e",
        {"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 16},
        "embedContent",
    )
    head = short.json()["embedding"]["values"]
    assert head == full.json()["embedding"]["values"][:16]
    assert math.fsum(x * x for x in head) < 0.5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"requests": []}, "requests is not specified"),
        ({"requests": [embed_request("a", model="other")]}, "models/text-embedding-004"),
        ({"requests": [embed_request("")]}, "required oneof field 'data'"),
        ({"requests": [embed_request("a")] * 101}, "at most 100 requests"),
        ({"requests": [embed_request("a", dimensions=3)]}, 'Unknown name "dimensions"'),
    ],
)
def test_batch_embedding_checks(fake: FakeGemini, body: dict[str, Any], message: str) -> None:
    response = post(fake, "text-embedding-004", body, "batchEmbedContents")
    assert response.status_code == 400
    assert message in error_of(response)["message"]
