"""The OpenAI adapter against the conformance kit, with the fake OpenAI upstream."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter_openai import OpenAIProvider

SPEC = conformance.Spec(
    adapter=OpenAIProvider,
    fake=lambda key: FakeOpenAI(api_key=key),
    behavior=conformance.openai_behavior,
    # /v1/responses converted to Chat Completions: what the kit's scenarios script (the native
    # pass-through has its own tests: tests/test_codex_e2e.py, tests/test_responses_e2e.py)
    config={"responses": False},
)

TestConformance = conformance.suite(SPEC)
