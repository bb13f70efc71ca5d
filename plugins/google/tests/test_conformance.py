"""The Google (Gemini API) adapter against the conformance kit, with the fake Gemini upstream."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter.testing.fake_gemini import FakeGemini
from lmrouter_google import GoogleProvider

SPEC = conformance.Spec(
    adapter=GoogleProvider,
    fake=lambda key: FakeGemini(api_key=key),
    behavior=conformance.gemini_behavior,
)

TestConformance = conformance.suite(SPEC)
