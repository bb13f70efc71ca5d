"""Every official SDK reaches every provider: {openai, anthropic SDK} x {OpenAI, Anthropic,
Gemini upstream} x {stream, non-stream} x {plain text, tool-call round trip}, through the real
router. Each upstream reports the same usage in its own words — 100 prompt tokens of which 40
were read from cache (and, for Anthropic, 10 written to it), 20 completion tokens — so usage,
cached tokens, cost and finish reasons can be checked exactly in every cell."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.server import RouterServer

ADMIN = "sk-matrix"
PRICE = {"input": 1, "output": 2, "cache_read": 0.5, "cache_write": 1.25}
CACHE_WRITE = {"gpt": 0, "claude": 10, "gemini": 0}
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def router() -> Iterator[RouterServer]:
    fakes = (
        fake_openai.FakeOpenAI(),
        fake_anthropic.FakeAnthropic(),
        fake_gemini.FakeGemini(),
    )
    fakes[0].script(
        "gpt-up",
        fake_openai.Behavior(
            usage={"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 40}
        ),
    )
    fakes[1].script(
        "claude-up",
        fake_anthropic.Behavior(
            usage={
                "input_tokens": 50,
                "output_tokens": 20,
                "cache_read_input_tokens": 40,
                "cache_creation_input_tokens": 10,
            }
        ),
    )
    fakes[2].script(
        "gemini-up",
        fake_gemini.Behavior(
            usage={
                "promptTokenCount": 100,
                "candidatesTokenCount": 20,
                "cachedContentTokenCount": 40,
            }
        ),
    )
    with (
        fakes[0].run_in_thread() as oai,
        fakes[1].run_in_thread() as ant,
        fakes[2].run_in_thread() as gem,
        RouterServer(config(oai, ant, gem)) as server,
    ):
        yield server


def config(oai: str, ant: str, gem: str) -> str:
    return kit.config(
        admin=ADMIN,
        providers={
            "oai": kit.provider("openai", oai, None),
            "ant": kit.provider("anthropic", ant, None),
            "gem": kit.provider("google", gem, None),
        },
        models={
            model: kit.model(
                kit.route(provider, f"{model}-up", price=PRICE), max_output_tokens=1024
            )
            for model, provider in (("gpt", "oai"), ("claude", "ant"), ("gemini", "gem"))
        },
    )


def expected_cost(model: str) -> float:
    written = CACHE_WRITE[model]
    return ((100 - 40 - written) * 1 + 40 * 0.5 + written * 1.25 + 20 * 2) / 1e6


MODELS = ["gpt", "claude", "gemini"]
CELLS = [(m, s) for m in MODELS for s in (False, True)]


# -- the openai SDK -----------------------------------------------------------------------------


def openai_round(
    client: openai.OpenAI, model: str, stream: bool, **kwargs: Any
) -> tuple[str, list[Any], str, Any]:
    """One chat call: text, tool calls [(id, name, args)], finish reason, usage."""
    if not stream:
        reply = client.chat.completions.create(model=model, **kwargs)
        message = reply.choices[0].message
        calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]
        return message.content or "", calls, reply.choices[0].finish_reason, reply.usage
    text, tools, finish, usage = "", {}, "", None
    for chunk in client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, **kwargs
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                slot = tools.setdefault(call.index, ["", "", ""])
                slot[0] = call.id or slot[0]
                slot[1] += (call.function.name or "") if call.function else ""
                slot[2] += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    return text, [tuple(v) for _, v in sorted(tools.items())], finish, usage


def check_openai_usage(usage: Any, model: str) -> None:
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (100, 20)
    assert usage.prompt_tokens_details.cached_tokens == 40
    assert usage.model_extra["cost"] == pytest.approx(expected_cost(model), rel=1e-12)


@pytest.mark.parametrize(("model", "stream"), CELLS)
def test_openai_sdk_text(router: RouterServer, model: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    messages = [{"role": "user", "content": "Hello there, matrix!"}]
    text, calls, finish, usage = openai_round(client, model, stream, messages=messages)
    assert "Hello there, matrix" in text and calls == [] and finish == "stop"
    check_openai_usage(usage, model)


@pytest.mark.parametrize(("model", "stream"), CELLS)
def test_openai_sdk_tool_round_trip(router: RouterServer, model: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)
    tools = [{"type": "function", "function": TOOL}]
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    _, calls, finish, usage = openai_round(
        client, model, stream, messages=messages, tools=tools, tool_choice="required"
    )
    assert finish == "tool_calls" and len(calls) == 1
    call_id, name, arguments = calls[0]
    assert call_id and name == "get_weather" and "city" in json.loads(arguments)
    check_openai_usage(usage, model)
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"forecast": "sunny"}'},
    ]
    text, calls, finish, usage = openai_round(client, model, stream, messages=messages, tools=tools)
    assert text and calls == [] and finish == "stop"
    check_openai_usage(usage, model)


# -- the anthropic SDK --------------------------------------------------------------------------


def anthropic_round(client: anthropic.Anthropic, model: str, stream: bool, **kwargs: Any) -> Any:
    if not stream:
        return client.messages.create(model=model, max_tokens=200, **kwargs)
    with client.messages.stream(model=model, max_tokens=200, **kwargs) as events:
        return events.get_final_message()


def check_anthropic_usage(message: Any, model: str, stream: bool) -> None:
    usage = message.usage
    written = CACHE_WRITE[model]
    assert usage.cache_read_input_tokens == 40
    assert (usage.cache_creation_input_tokens or 0) == written
    assert usage.input_tokens == 100 - 40 - written, "input excludes cache reads and writes"
    assert usage.output_tokens == 20
    if not stream:
        assert usage.model_extra["cost"] == pytest.approx(expected_cost(model), rel=1e-12)


@pytest.mark.parametrize(("model", "stream"), CELLS)
def test_anthropic_sdk_text(router: RouterServer, model: str, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    message = anthropic_round(
        client, model, stream, messages=[{"role": "user", "content": "Hello there, matrix!"}]
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    assert "Hello there, matrix" in text
    assert message.stop_reason == "end_turn"
    check_anthropic_usage(message, model, stream)


@pytest.mark.parametrize(("model", "stream"), CELLS)
def test_anthropic_sdk_tool_round_trip(router: RouterServer, model: str, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    tools = [
        {
            "name": TOOL["name"],
            "description": TOOL["description"],
            "input_schema": TOOL["parameters"],
        }
    ]
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    first = anthropic_round(
        client, model, stream, messages=messages, tools=tools, tool_choice={"type": "any"}
    )
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.id and use.name == "get_weather" and "city" in use.input
    check_anthropic_usage(first, model, stream)
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": '{"forecast": "sunny"}'}
            ],
        },
    ]
    final = anthropic_round(client, model, stream, messages=messages, tools=tools)
    assert final.stop_reason == "end_turn"
    assert any(block.type == "text" and block.text for block in final.content)
    check_anthropic_usage(final, model, stream)
