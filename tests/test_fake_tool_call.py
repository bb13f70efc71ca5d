"""Every fake's scripted tool call (``Behavior(call=ToolCall(name, arguments))``): the named
tool with those arguments when the request offers it, else the usual first tool; text once the
tool's result is back. What the real agents' end-to-end runs script (tests/agents)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai

from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.fakeserver import ToolCall

CALL = ToolCall("read", {"path": "/tmp/hello.py"})
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}
OTHER = {"type": "object", "properties": {"q": {"type": "string"}}}


def test_openai_chat_and_responses() -> None:
    fake = fake_openai.FakeOpenAI()
    fake.script("m", fake_openai.Behavior(call=CALL, text="done"))
    with fake.run_in_thread() as url:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        tools: Any = [
            {"type": "function", "function": {"name": "search", "parameters": OTHER}},
            {"type": "function", "function": {"name": "read", "parameters": SCHEMA}},
        ]
        chat = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=tools
        )
        call = chat.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert (call.function.name, call.function.arguments) == (  # type: ignore[union-attr]
            "read",
            '{"path":"/tmp/hello.py"}',
        )
        unscripted = client.chat.completions.create(
            model="other", messages=[{"role": "user", "content": "hi"}], tools=tools
        )
        assert unscripted.choices[0].message.tool_calls[0].function.name == "search"  # type: ignore[index,union-attr]
        namespace: Any = {
            "type": "namespace",
            "name": "files",
            "tools": [
                {"type": "function", "name": "search", "parameters": OTHER},
                {"type": "function", "name": "read", "parameters": SCHEMA},
            ],
        }
        response = client.responses.create(model="m", input="hi", tools=[namespace])
        (item,) = response.output
        assert item.type == "function_call"
        assert (item.namespace, item.name, item.arguments) == (  # type: ignore[attr-defined]
            "files",
            "read",
            '{"path":"/tmp/hello.py"}',
        )
        follow = client.responses.create(
            model="m",
            input=[
                {"role": "user", "content": "hi"},
                {
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": "read",
                    "arguments": item.arguments,
                },
                {"type": "function_call_output", "call_id": item.call_id, "output": "x"},
            ],
            tools=[namespace],
        )
        assert follow.output_text == "done"


def test_anthropic() -> None:
    fake = fake_anthropic.FakeAnthropic()
    fake.script("m", fake_anthropic.Behavior(call=CALL))
    with fake.run_in_thread() as url:
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        tools: Any = [
            {"name": "search", "input_schema": OTHER},
            {"name": "read", "input_schema": SCHEMA},
        ]
        message = client.messages.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}], tools=tools
        )
        text, use = message.content
        assert text.type == "text" and text.text == "I'll use the read tool."
        assert use.type == "tool_use" and (use.name, use.input) == ("read", CALL.arguments)
        only_search = client.messages.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}], tools=tools[:1]
        )
        assert only_search.content[1].type == "tool_use"
        assert only_search.content[1].name == "search"  # not offered: the usual first tool


def test_gemini() -> None:
    fake = fake_gemini.FakeGemini()
    fake.script("m", fake_gemini.Behavior(call=CALL))
    with fake.run_in_thread() as url:
        body = {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "search", "parameters": OTHER},
                        {"name": "read", "parameters": SCHEMA},
                    ]
                }
            ],
        }
        answer = httpx.post(f"{url}/v1beta/models/m:generateContent", json=body, timeout=10)
        (part,) = answer.json()["candidates"][0]["content"]["parts"]
        call = part["functionCall"]
        assert (call["name"], call["args"]) == ("read", CALL.arguments)
        assert call["id"].startswith("fc-")  # ids as usual
