"""IR → Gemini requests: contents, tools, config, URL and key — checked field by field."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import msgspec
import orjson
import pytest

from lmrouter import ir
from lmrouter.config import Route
from lmrouter.errors import RouterError
from lmrouter_google import GoogleConfig, GoogleProvider

ROUTE = Route(provider="gemini", model="gemini-2.5-flash")
WEATHER = ir.Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


class Ctx:
    def __init__(self, stream: bool = False) -> None:
        self.stream = stream
        self.route: Any = None


def provider(**extra: Any) -> GoogleProvider:
    raw = {"type": "google", "base_url": "https://generativelanguage.googleapis.com/", **extra}
    return GoogleProvider("gemini", msgspec.convert(raw, GoogleConfig))


def chat(*messages: ir.Message, **fields: Any) -> ir.ChatRequest:
    return ir.ChatRequest(model="mine", messages=list(messages), **fields)


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="user", parts=list(parts))


def assistant(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="assistant", parts=list(parts))


def sent(request: ir.ChatRequest, stream: bool = False, **config: Any) -> dict[str, Any]:
    upstream = provider(**config).build(Ctx(stream), request, ROUTE, "AIza-key")  # type: ignore[arg-type]
    return orjson.loads(upstream.body)


HI = user(ir.Text(text="Hi"))


def test_the_plugin_is_found_through_its_entry_point() -> None:
    found = {e.name: e.value for e in entry_points(group="lmrouter.plugins")}
    assert found.get("google") == "lmrouter_google"
    assert GoogleProvider.converts == {"chat", "embeddings"}
    assert GoogleProvider.native_dialects == {"gemini.generate"}  # Gemini's own API, as it is


def test_url_and_key_header() -> None:
    p = provider()
    plain = p.build(Ctx(), chat(HI), ROUTE, "AIza-key")  # type: ignore[arg-type]
    assert plain.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert plain.headers == {"Content-Type": "application/json", "x-goog-api-key": "AIza-key"}
    streamed = p.build(Ctx(stream=True), chat(HI), ROUTE, "AIza-key")  # type: ignore[arg-type]
    assert streamed.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert "AIza-key" not in streamed.url, "the key never rides in the URL"


@pytest.mark.parametrize(
    ("extra", "root"),
    [
        ({"api_version": "v1"}, "https://generativelanguage.googleapis.com/v1"),
        ({"base_url": "http://127.0.0.1:9/v1beta"}, "http://127.0.0.1:9/v1beta"),
    ],
)
def test_api_version_from_config_or_base_url(extra: dict[str, str], root: str) -> None:
    request = provider(**extra).build(Ctx(), chat(HI), Route("g", "models/gemini-x"), "")  # type: ignore[arg-type]
    assert request.url == f"{root}/models/gemini-x:generateContent"
    assert "x-goog-api-key" not in request.headers


def test_roles_system_and_merged_turns() -> None:
    body = sent(
        chat(
            user(ir.Text(text="one")),
            user(ir.Text(text="two")),
            assistant(ir.Thinking(text="hmm", signature="sig"), ir.Text(text="three")),
            user(ir.Text(text="four")),
            system=[ir.Text(text="Be brief."), ir.Text(text="Be kind.")],
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}]},  # earlier thoughts are not sent back
        {"role": "user", "parts": [{"text": "four"}]},
    ]
    assert "generationConfig" not in body and "tools" not in body


def test_images_inline_by_url_and_data_url() -> None:
    body = sent(
        chat(
            user(
                ir.Image(data="iVBORw0KGgo=", media_type="image/png"),
                ir.Image(url="https://example.com/cat.webp?size=2"),
                ir.Image(url="https://example.com/picture"),
                ir.Image(url="data:image/gif;base64,R0lGODlh"),
            )
        )
    )
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/picture"}},
        {"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}},
    ]


def test_tool_round_trip_contents() -> None:
    body = sent(
        chat(
            user(ir.Text(text="Weather in Paris and Rome?")),
            assistant(
                ir.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
                ir.ToolCall(id="call_2", name="get_weather", arguments=""),
            ),
            user(
                ir.ToolResult(id="call_1", content=[ir.Text(text='{"temp": 21, "sky": "clear"}')]),
                ir.ToolResult(id="call_2", name="get_weather", content=[ir.Text(text="rainy")]),
                ir.Text(text="Thanks!"),
            ),
            tools=[WEATHER],
        )
    )
    model_turn, answer_turn = body["contents"][1], body["contents"][2]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"},
            "thoughtSignature": "skip_thought_signature_validator",
        },
        {
            "functionCall": {"name": "get_weather", "args": {}, "id": "call_2"},
            "thoughtSignature": "skip_thought_signature_validator",
        },
    ]
    assert answer_turn == {
        "role": "user",
        "parts": [
            {  # the name comes from the earlier call; a JSON object result goes as it is
                "functionResponse": {
                    "name": "get_weather",
                    "response": {"temp": 21, "sky": "clear"},
                    "id": "call_1",
                }
            },
            {
                "functionResponse": {
                    "name": "get_weather",
                    "response": {"output": "rainy"},
                    "id": "call_2",
                }
            },
            {"text": "Thanks!"},
        ],
    }


@pytest.mark.parametrize(
    ("text", "is_error", "response"),
    [
        ("[1, 2]", False, {"output": "[1, 2]"}),  # JSON, but not an object
        ("{not json", False, {"output": "{not json"}),
        ('{"code": 3}', True, {"error": '{"code": 3}'}),
        ("boom", True, {"error": "boom"}),
        ("", False, {"output": ""}),
    ],
)
def test_tool_result_response_shapes(text: str, is_error: bool, response: dict[str, Any]) -> None:
    body = sent(
        chat(
            user(ir.Text(text="go")),
            assistant(ir.ToolCall(id="c", name="f", arguments="{}")),
            user(ir.ToolResult(id="c", content=[ir.Text(text=text)], is_error=is_error)),
        )
    )
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == response


def test_tool_result_without_a_known_name_is_the_callers_error() -> None:
    with pytest.raises(RouterError) as info:
        sent(chat(user(ir.ToolResult(id="nowhere", content=[ir.Text(text="x")]))))
    assert info.value.status == 400 and info.value.param == "messages"
    assert "nowhere" in info.value.message


@pytest.mark.parametrize("arguments", ["[1]", "not json", '"text"'])
def test_tool_call_arguments_must_be_an_object(arguments: str) -> None:
    request = chat(HI, assistant(ir.ToolCall(id="c", name="f", arguments=arguments)))
    with pytest.raises(RouterError) as info:
        sent(request)
    assert info.value.status == 400


def test_only_system_is_refused_and_n_is_candidate_count() -> None:
    with pytest.raises(RouterError) as info:
        sent(chat(system=[ir.Text(text="alone")]))
    assert info.value.param == "messages"
    assert sent(chat(HI, n=2))["generationConfig"]["candidateCount"] == 2
    assert "candidateCount" not in sent(chat(HI)).get("generationConfig", {})


def test_generation_config() -> None:
    body = sent(chat(HI, max_tokens=50, temperature=0.2, top_p=0.9, stop=["END", "STOP"]))
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END", "STOP"],
    }


@pytest.mark.parametrize(
    ("fields", "thinking"),
    [
        ({"thinking_budget": 2048}, {"thinkingBudget": 2048, "includeThoughts": True}),
        ({"thinking_budget": 0}, {"thinkingBudget": 0}),
        ({"thinking_budget": -1}, {"thinkingBudget": -1, "includeThoughts": True}),
        ({"reasoning_effort": "minimal"}, {"thinkingBudget": 512}),
        ({"reasoning_effort": "low"}, {"thinkingBudget": 1024}),
        ({"reasoning_effort": "medium"}, {"thinkingBudget": 8192}),
        ({"reasoning_effort": "high"}, {"thinkingBudget": 24576}),
        (  # an explicit budget wins over an effort
            {"reasoning_effort": "high", "thinking_budget": 3000},
            {"thinkingBudget": 3000, "includeThoughts": True},
        ),
    ],
)
def test_thinking_config(fields: dict[str, Any], thinking: dict[str, Any]) -> None:
    assert sent(chat(HI, **fields))["generationConfig"]["thinkingConfig"] == thinking


def test_tools_are_declared_with_gemini_schemas() -> None:
    no_args = ir.Tool(name="now", parameters={"type": "object", "properties": {}})
    body = sent(chat(HI, tools=[WEATHER, no_args, ir.Tool(name="bare")]))
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                },
                {"name": "now"},  # Gemini refuses an OBJECT without properties
                {"name": "bare"},
            ]
        }
    ]
    assert "toolConfig" not in body


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (ir.ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ir.ToolChoice(mode="required"), {"mode": "ANY"}),
        (ir.ToolChoice(mode="none"), {"mode": "NONE"}),
        (
            ir.ToolChoice(mode="tool", name="get_weather"),
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: ir.ToolChoice, config: dict[str, Any]) -> None:
    body = sent(chat(HI, tools=[WEATHER], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}
