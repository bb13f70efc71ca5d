"""The OpenAI adapter against the conformance kit, with the fake OpenAI upstream."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter_openai import OpenAIProvider

SPEC = conformance.Spec(
    adapter=OpenAIProvider,
    fake=lambda key: FakeOpenAI(api_key=key),
    behavior=conformance.openai_behavior,
)

TestConformance = conformance.suite(SPEC)
