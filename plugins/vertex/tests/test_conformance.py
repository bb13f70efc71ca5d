"""Gemini and Claude on Vertex AI against the conformance kit (an access token as the key)."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter_vertex import VertexAnthropicProvider, VertexProvider
from lmrouter_vertex.fake import FakeVertexAnthropic, FakeVertexGemini

TestGeminiOnVertex = conformance.suite(
    conformance.Spec(
        adapter=VertexProvider,
        fake=lambda token: FakeVertexGemini(token),
        behavior=conformance.gemini_behavior,
        dialects=conformance.CHAT_DIALECTS,
        config={"project": "my-project", "location": "us-central1"},
    ),
    name="TestGeminiOnVertex",
)

TestClaudeOnVertex = conformance.suite(
    conformance.Spec(
        adapter=VertexAnthropicProvider,
        fake=lambda token: FakeVertexAnthropic(token),
        behavior=conformance.anthropic_behavior,
        dialects=conformance.CHAT_DIALECTS,
        features={"tools", "usage", "cached_tokens"},
        config={"project": "my-project", "location": "us-east5"},
    ),
    name="TestClaudeOnVertex",
)
