"""Model capabilities keep converted requests valid: the output cap, reasoning on or off, and
thinking budgets within each provider's documented range."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lmrouter import capabilities, ir
from lmrouter.config import Model, Route
from lmrouter_anthropic import messages_request
from lmrouter_anthropic import reasoning_default as claude_reasons
from lmrouter_google import chat as gemini_chat
from lmrouter_openai.chat import reasoning_default as openai_reasons


def ctx(**model: Any) -> Any:
    return SimpleNamespace(
        model=Model(id="m", routes=[Route(provider="p", model="u")], **model),
        response_headers=[],
    )


def request(**fields: Any) -> ir.ChatRequest:
    user = ir.Message(role="user", parts=[ir.Text(text="hi")])
    return ir.ChatRequest(model="m", messages=[user], **fields)


def test_max_output_tokens_caps_and_says_so() -> None:
    context = ctx(max_output_tokens=16384)
    fitted = capabilities.fit(context, request(max_tokens=32000))
    assert fitted.max_tokens == 16384
    assert context.response_headers == [(capabilities.CLAMP_HEADER, b"16384; requested=32000")]
    capabilities.fit(context, request(max_tokens=32000))  # a second route: one header still
    assert len(context.response_headers) == 1
    unchanged = ctx(max_output_tokens=16384)
    assert capabilities.fit(unchanged, request(max_tokens=100)).max_tokens == 100
    assert unchanged.response_headers == []


@pytest.mark.parametrize(
    ("configured", "provider", "kept"),
    [
        (None, None, True),
        (None, False, False),
        (None, True, True),
        (False, True, False),  # the operator's word wins
        (True, False, True),
    ],
)
def test_reasoning(configured: bool | None, provider: bool | None, kept: bool) -> None:
    asked = request(reasoning_effort="high", thinking_budget=4096)
    fitted = capabilities.fit(ctx(reasoning=configured), asked, reasoning=provider)
    assert (fitted.reasoning_effort, fitted.thinking_budget) == (
        ("high", 4096) if kept else (None, None)
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", False),
        ("gpt-4o-2024-08-06", False),
        ("gpt-4.1-nano", False),
        ("gpt-3.5-turbo", False),
        ("gpt-5-chat-latest", False),
        ("o3-mini", True),
        ("gpt-5-mini", True),
        ("llama-3.3-70b", None),
    ],
)
def test_openai_knows_its_models(model: str, expected: bool | None) -> None:
    assert openai_reasons(model) is expected


def test_claude_35_takes_no_thinking() -> None:
    assert claude_reasons("claude-3-5-haiku-latest") is False
    assert claude_reasons("claude-3-7-sonnet-latest") is None
    assert claude_reasons("claude-sonnet-4-5") is None


@pytest.mark.parametrize(
    ("model", "budget", "expected"),
    [
        ("gemini-2.5-flash", 31999, 24576),
        ("gemini-2.5-flash", 0, 0),
        ("gemini-2.5-pro", 31999, 31999),
        ("gemini-2.5-pro", 40000, 32768),
        ("gemini-2.5-pro", 0, 128),  # Pro cannot stop thinking: the least it takes
        ("gemini-2.5-pro", 10, 128),
        ("gemini-2.5-flash-lite", 100, 512),
        ("gemini-2.5-flash-lite", -1, -1),  # dynamic
        ("gemini-3-pro-preview", 50000, 24576),
    ],
)
def test_gemini_budgets(model: str, budget: int, expected: int) -> None:
    config = gemini_chat.build(request(thinking_budget=budget), model)["generationConfig"]
    assert config["thinkingConfig"]["thinkingBudget"] == expected


def test_anthropic_budget_range() -> None:
    """At least 1024 (Anthropic's least) and below max_tokens; no room: thinking off."""
    assert messages_request(request(thinking_budget=500), "c", 8000)["thinking"] == {
        "type": "enabled",
        "budget_tokens": 1024,
    }
    assert messages_request(request(thinking_budget=50000), "c", 8000)["thinking"] == {
        "type": "enabled",
        "budget_tokens": 7999,
    }
    assert "thinking" not in messages_request(request(thinking_budget=2000), "c", 1000)
    assert "thinking" not in messages_request(request(thinking_budget=0), "c", 8000)


def test_hosted_tools_a_provider_lacks_are_dropped_and_named() -> None:
    context = ctx()
    asked = request(hosted_tools=[("tools[1].type", "web_search_20250305")])
    assert capabilities.fit(context, asked, hosted=frozenset({"web_search"})) == asked
    assert context.response_headers == []
    fitted = capabilities.fit(context, asked)
    assert fitted.hosted_tools == []
    assert context.response_headers == [(capabilities.DROPPED_HEADER, b"web_search_20250305")]
    gemini = gemini_chat.build(request(hosted_tools=[("tools[0].type", "web_search")]))
    assert gemini["tools"] == [{"googleSearch": {}}]
