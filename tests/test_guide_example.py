"""The provider written in "Writing a provider plugin" is the file the guide shows, fits in
under 100 lines and passes the conformance kit."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lmrouter.testing import conformance
from lmrouter.testing.fake_anthropic import FakeAnthropic

DOCS = Path(__file__).parent.parent / "docs"
EXAMPLE = DOCS / "examples" / "anthropic_compat.py"
sys.path.insert(0, str(EXAMPLE.parent))

from anthropic_compat import AnthropicCompatProvider  # noqa: E402


def test_the_guide_shows_the_tested_file_and_it_is_small() -> None:
    guide = (DOCS / "writing-a-provider-plugin.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    source = EXAMPLE.read_text()
    assert source in blocks, "the guide's example differs from docs/examples/anthropic_compat.py"
    assert len(source.splitlines()) < 100


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
