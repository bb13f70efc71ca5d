"""The provider written in "Writing a provider plugin" passes the conformance kit (that the guide
shows this very file: ``test_guide.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from lmrouter.testing import conformance
from lmrouter.testing.fake_anthropic import FakeAnthropic

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = DOCS / "examples" / "anthropic_compat.py"
sys.path.insert(0, str(EXAMPLE.parent))

from anthropic_compat import AnthropicCompatProvider  # noqa: E402

TestGuideExample = conformance.suite(
    conformance.Spec(
        adapter=AnthropicCompatProvider,
        fake=lambda key: FakeAnthropic(api_key=key),
        behavior=conformance.anthropic_behavior,
        dialects={"anthropic.messages"},
        features={"tools", "usage", "cached_tokens"},
    ),
    name="TestGuideExample",
)
