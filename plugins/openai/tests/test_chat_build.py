"""IR → Chat Completions requests: what a caller in another dialect sends an OpenAI model."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from lmrouter import ir
from lmrouter.config import Route
from lmrouter_openai import OpenAIConfig, OpenAIProvider
from lmrouter_openai.chat import effort_for

ROUTE = Route(provider="example", model="upstream-model")


def provider(**extra: Any) -> OpenAIProvider:
    config = msgspec.convert(
        {"type": "openai", "base_url": "https://api.example.com/v1/", **extra}, OpenAIConfig
    )
    return OpenAIProvider("example", config)


def build(request: ir.ChatRequest, **extra: Any) -> dict[str, Any]:
    upstream = provider(**extra).build(None, request, ROUTE, "sk-key")  # type: ignore[arg-type]
    assert upstream.url == "https://api.example.com/v1/chat/completions"
    assert upstream.headers["Authorization"] == "Bearer sk-key"
    assert upstream.headers["Content-Type"] == "application/json"
    return orjson.loads(upstream.body)


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="user", parts=list(parts))


def assistant(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="assistant", parts=list(parts))


def test_provider_converts_chat_and_embeddings() -> None:
    assert OpenAIProvider.converts == frozenset({"chat", "embeddings"})


def test_an_anthropic_style_tool_conversation() -> None:
    """What an Anthropic client's agent loop looks like after its dialect's ``to_ir``."""
    request = ir.ChatRequest(
        model="claude-sonnet",
        system=[ir.Text(text="You are terse.", cache=True), ir.Text(text="Use tools.")],
        messages=[
            user(ir.Text(text="Weather in Paris and Rome?")),
            assistant(
                ir.Thinking(text="Two cities: two calls.", signature="sig=="),
                ir.Text(text="Checking both."),
                ir.ToolCall(id="toolu_1", name="weather", arguments='{"city":"Paris"}'),
                ir.ToolCall(id="toolu_2", name="weather", arguments='{"city":"Rome"}'),
            ),
            user(
                ir.ToolResult(id="toolu_1", content=[ir.Text(text="18C")], name="weather"),
                ir.ToolResult(
                    id="toolu_2",
                    content=[ir.Text(text="24C"), ir.Text(text="sunny")],
                    is_error=False,
                ),
                ir.Text(text="Which is warmer?"),
            ),
        ],
        tools=[
            ir.Tool(
                name="weather",
                description="Current weather",
                parameters={"type": "object", "properties": {"city": {"type": "string"}}},
            )
        ],
        tool_choice=ir.ToolChoice(mode="tool", name="weather"),
        parallel_tool_calls=False,
        max_tokens=1024,
        temperature=0.2,
        stop=["END"],
        thinking_budget=4000,
    )
    assert build(request) == {
        "model": "upstream-model",
        "messages": [
            {"role": "system", "content": "You are terse.\n\nUse tools."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "24C\n\nsunny"},
            {"role": "user", "content": "Which is warmer?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 1024,
        "temperature": 0.2,
        "reasoning_effort": "medium",
        "stop": ["END"],
    }


def test_tool_results_come_first_even_when_the_turn_starts_with_text() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            assistant(ir.ToolCall(id="c1", name="f")),
            user(ir.Text(text="here:"), ir.ToolResult(id="c1", content=[ir.Text(text="ok")])),
        ],
    )
    sent = build(request)["messages"]
    assert [m["role"] for m in sent] == ["assistant", "tool", "user"]
    assert sent[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert sent[2] == {"role": "user", "content": "here:"}


def test_images_a_tool_returned_follow_in_a_user_message() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            assistant(ir.ToolCall(id="c1", name="screenshot")),
            user(
                ir.ToolResult(
                    id="c1",
                    content=[
                        ir.Text(text="captured"),
                        ir.Image(data="iVBORw0KGgo=", media_type="image/png"),
                    ],
                ),
                ir.Text(text="What do you see?"),
            ),
        ],
    )
    sent = build(request)["messages"]
    assert sent[1] == {"role": "tool", "tool_call_id": "c1", "content": "captured"}
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Images returned by tool call c1:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "text", "text": "What do you see?"},
        ],
    }


def test_user_images_by_url_and_by_data() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            user(
                ir.Image(url="https://example.com/cat.jpg"),
                ir.Image(data="/9j/4AAQ", media_type="image/jpeg"),
                ir.Text(text="Same cat?"),
            )
        ],
    )
    assert build(request)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "text", "text": "Same cat?"},
            ],
        }
    ]


def test_thinking_only_assistant_turns_are_dropped() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[
            user(ir.Text(text="a")),
            assistant(ir.Thinking(text="", redacted="opaque")),
            user(ir.Text(text="b")),
        ],
    )
    assert build(request)["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]


def test_tool_choice_and_parallel_calls_only_go_with_tools() -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[user(ir.Text(text="hi"))],
        tool_choice=ir.ToolChoice(mode="none"),
        parallel_tool_calls=True,
    )
    sent = build(request)
    assert "tool_choice" not in sent
    assert "parallel_tool_calls" not in sent
    assert "tools" not in sent


@pytest.mark.parametrize(
    ("mode", "wire"), [("auto", "auto"), ("required", "required"), ("none", "none")]
)
def test_tool_choice_modes(mode: str, wire: str) -> None:
    request = ir.ChatRequest(
        model="m",
        messages=[user(ir.Text(text="hi"))],
        tools=[ir.Tool(name="f")],
        tool_choice=ir.ToolChoice(mode=mode),  # type: ignore[arg-type]
    )
    sent = build(request)
    assert sent["tool_choice"] == wire
    assert sent["tools"] == [{"type": "function", "function": {"name": "f"}}]


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (None, None),
        (0, None),
        (-1, None),
        (1024, "low"),
        (2047, "low"),
        (2048, "medium"),
        (8191, "medium"),
        (8192, "high"),
        (32000, "high"),
    ],
)
def test_thinking_budget_becomes_an_effort(budget: int | None, effort: str | None) -> None:
    request = ir.ChatRequest(model="m", messages=[], thinking_budget=budget)
    assert effort_for(request) == effort
    assert build(request).get("reasoning_effort") == effort


def test_an_explicit_effort_wins_over_the_budget() -> None:
    request = ir.ChatRequest(
        model="m", messages=[], reasoning_effort="minimal", thinking_budget=30000
    )
    assert build(request)["reasoning_effort"] == "minimal"


def test_streams_ask_for_usage_unless_turned_off() -> None:
    request = ir.ChatRequest(model="m", messages=[user(ir.Text(text="hi"))], stream=True)
    sent = build(request)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    sent = build(request, stream_usage=False)
    assert sent["stream"] is True
    assert "stream_options" not in sent


def test_output_limit_field_is_configurable() -> None:
    request = ir.ChatRequest(model="m", messages=[], max_tokens=77)
    assert build(request)["max_completion_tokens"] == 77
    legacy = build(request, max_tokens_field="max_tokens")
    assert legacy["max_tokens"] == 77
    assert "max_completion_tokens" not in legacy


def test_unset_options_are_not_sent() -> None:
    request = ir.ChatRequest(model="m", messages=[user(ir.Text(text="hi"))])
    assert build(request) == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_user_and_sampling_options() -> None:
    request = ir.ChatRequest(model="m", messages=[], user="u-1", top_p=0.9, temperature=0.0, n=2)
    sent = build(request)
    assert (sent["user"], sent["top_p"], sent["temperature"], sent["n"]) == ("u-1", 0.9, 0.0, 2)
