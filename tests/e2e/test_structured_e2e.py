"""Structured outputs from every dialect to every provider, through the real router with the
official SDKs: ``chat.completions.parse`` / ``.stream`` and ``responses.parse`` with a pydantic
model, the anthropic SDK's ``messages.parse`` and ``output_config.format``. Each test checks the
parsed answer *and* what reached the fake upstream: the schema in the provider's own place
(OpenAI ``response_format``, Anthropic ``output_config.format`` or the forced answer tool on a
model without native structured outputs, Gemini ``responseJsonSchema``), never dropped."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from lmrouter.structured import ANSWER_TOOL
from lmrouter.testing.server import RouterServer

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/structured_routes.py
from structured_routes import (  # noqa: F401  (fixtures)
    ADMIN,
    EXPECTED,
    MODELS,
    Event,
    Fakes,
    assert_event_schema,
    fakes_fixture,
    router_fixture,
)
from structured_routes import schema_reached as reached


@pytest.fixture
def client(router: RouterServer, fakes: Fakes) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def claude(router: RouterServer, fakes: Fakes) -> anthropic.Anthropic:
    fakes.reset()
    return anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)


def schema_reached(fakes: Fakes, model: str) -> dict[str, Any]:
    """The JSON schema the upstream got, from wherever its provider takes it."""
    body = fakes.last(model)
    if model == "gpt" and "input" in body:  # the strict flag goes where Responses reads it
        assert body["text"]["format"]["strict"] is True
    return reached(body, model)


# -- the openai SDK, Chat Completions ---------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_chat_completions_parse(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    reply = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Alice's party is on the 5th."}],
        response_format=Event,
    )
    message = reply.choices[0].message
    assert message.parsed == EXPECTED
    assert reply.choices[0].finish_reason == "stop" and not message.tool_calls
    assert_event_schema(schema_reached(fakes, model))
    if model == "gpt":  # the strict flag goes where OpenAI reads it
        assert fakes.last(model)["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize("model", MODELS)
def test_chat_completions_stream_parse(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    deltas = 0
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "Alice's party is on the 5th."}],
        response_format=Event,
    ) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas += 1
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == EXPECTED
    assert final.choices[0].finish_reason == "stop"
    assert deltas > 1  # the JSON streams as text, in pieces
    assert_event_schema(schema_reached(fakes, model))


@pytest.mark.parametrize("model", MODELS)
def test_chat_json_object(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hi in JSON."}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    body = fakes.last(model)
    if model in ("gpt", "azure"):
        assert body["response_format"] == {"type": "json_object"}
    elif model.startswith("claude"):  # no native JSON mode: the answer tool, any object
        assert body["tools"][0]["name"] == ANSWER_TOOL
        assert body["tools"][0]["input_schema"] == {"type": "object"}
    else:
        assert body["generationConfig"]["responseMimeType"] == "application/json"
        assert "responseJsonSchema" not in body["generationConfig"]


@pytest.mark.parametrize("model", MODELS)
def test_schema_with_tools(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    """With the caller's own tools, the answer tool joins them (Gemini 2.x refuses a response
    schema with function calling; Anthropic without native support has only the tool)."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "strict": True,
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}},
                    "required": ["q"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    reply = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "When is Alice's party?"}],
        response_format=Event,
        tools=tools,
        tool_choice="none",
    )
    assert reply.choices[0].message.parsed == EXPECTED
    body = fakes.last(model)
    if model == "gemini":
        (tool,) = body["tools"]
        names = [d["name"] for d in tool["functionDeclarations"]]
        assert names == [ANSWER_TOOL]  # tool_choice none: the caller's tools are not callable
        # the answer's schema as JSON Schema, not cut down to Gemini's OpenAPI subset
        assert_event_schema(tool["functionDeclarations"][0]["parametersJsonSchema"])
        assert (
            tool["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"] is False
        )
        assert "responseMimeType" not in body.get("generationConfig", {})


# -- the openai SDK, Responses ----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_responses_json_object(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    response = client.responses.create(
        model=model, input="Say hi in JSON.", text={"format": {"type": "json_object"}}
    )
    assert isinstance(json.loads(response.output_text), dict)
    if model == "gpt":  # OpenAI speaks Responses: passed through
        assert fakes.last(model)["text"]["format"] == {"type": "json_object"}


@pytest.mark.parametrize("model", MODELS)
def test_responses_parse(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    response = client.responses.parse(
        model=model, input="Alice's party is on the 5th.", text_format=Event
    )
    assert response.output_parsed == EXPECTED
    assert response.text.format.type == "json_schema"
    assert_event_schema(schema_reached(fakes, model))


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream_parse(client: openai.OpenAI, fakes: Fakes, model: str) -> None:
    with client.responses.stream(
        model=model, input="Alice's party is on the 5th.", text_format=Event
    ) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == EXPECTED
    assert_event_schema(schema_reached(fakes, model))


# -- the anthropic SDK ------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_messages_parse(claude: anthropic.Anthropic, fakes: Fakes, model: str) -> None:
    message = claude.messages.parse(
        model=model,
        max_tokens=500,
        messages=[{"role": "user", "content": "Alice's party is on the 5th."}],
        output_format=Event,
    )
    assert message.parsed_output == EXPECTED
    assert message.stop_reason == "end_turn"
    body = fakes.last(model)
    if model == "claude-native":  # Anthropic to Anthropic: passed through as sent
        # (claude-tool: converted, as Claude 3.5 refuses output_config: the answer tool)
        assert_event_schema(body["output_config"]["format"]["schema"])
    else:
        assert_event_schema(schema_reached(fakes, model))
        if model == "gpt":  # the caller said nothing of strictness: nothing is claimed
            assert "strict" not in body["response_format"]["json_schema"]


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream_output_format(
    claude: anthropic.Anthropic, fakes: Fakes, model: str
) -> None:
    """The older beta form, ``output_format``, streamed."""
    schema = Event.model_json_schema() | {"additionalProperties": False}
    text = ""
    with claude.messages.stream(
        model=model,
        max_tokens=500,
        messages=[{"role": "user", "content": "Alice's party is on the 5th."}],
        extra_body={"output_format": {"type": "json_schema", "schema": schema}},
        extra_headers={"anthropic-beta": "structured-outputs-2025-11-13"},
    ) as stream:
        for chunk in stream.text_stream:
            text += chunk
    assert Event.model_validate_json(text) == EXPECTED
    body = fakes.last(model)
    if model == "claude-native":
        assert body["output_format"]["schema"] == schema
    else:
        assert_event_schema(schema_reached(fakes, model))


def test_anthropic_json_schema_with_array_root(claude: anthropic.Anthropic, fakes: Fakes) -> None:
    """A root that is not an object cannot be a tool's input: it travels as ``{"value": …}``
    and comes back unwrapped. From the Responses dialect to the tool route."""
    client = openai.OpenAI(base_url=claude.base_url.join("/v1"), api_key=ADMIN, max_retries=0)
    schema = {"type": "array", "items": {"type": "integer"}}
    fmt = {"type": "json_schema", "name": "numbers", "schema": schema}
    response = client.responses.create(model="claude-tool", input="Count.", text={"format": fmt})
    assert json.loads(response.output_text) == [1]
    tool = fakes.last("claude-tool")["tools"][0]
    assert tool["input_schema"]["properties"]["value"] == schema


class Booking(pydantic.BaseModel):
    guests: int = pydantic.Field(ge=1, le=12)
    name: str = pydantic.Field(max_length=40)


def test_constraints_anthropic_cannot_enforce_are_told_not_sent(
    client: openai.OpenAI, fakes: Fakes
) -> None:
    """Anthropic refuses schemas with bounds it cannot enforce: they move into descriptions."""
    reply = client.chat.completions.parse(
        model="claude-native",
        messages=[{"role": "user", "content": "A table for two, name of Smith."}],
        response_format=Booking,
    )
    assert reply.choices[0].message.parsed == Booking(guests=1, name="test")
    schema = fakes.last("claude-native")["output_config"]["format"]["schema"]
    guests = schema["properties"]["guests"]
    assert "minimum" not in guests and "maximum" not in guests
    assert "minimum: 1" in guests["description"] and "maximum: 12" in guests["description"]
    assert "max_length" not in json.dumps(schema) and "maxLength: 40" in json.dumps(schema)
    assert schema["additionalProperties"] is False
