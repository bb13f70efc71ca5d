"""The Anthropic adapter against the conformance kit, with the fake Anthropic upstream.
Anthropic reports no reasoning-token count and has no embeddings API."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter.testing.fake_anthropic import FakeAnthropic
from lmrouter_anthropic import AnthropicProvider

SPEC = conformance.Spec(
    adapter=AnthropicProvider,
    fake=lambda key: FakeAnthropic(api_key=key),
    behavior=conformance.anthropic_behavior,
    dialects={"openai.chat", "openai.responses", "anthropic.messages"},
    features={"tools", "usage", "cached_tokens"},
)

TestConformance = conformance.suite(SPEC)
