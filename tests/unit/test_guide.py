"""The provider written in "Writing a provider plugin" is the file the guide shows (the one
``test_guide_example.py`` runs through the conformance kit), and fits in under 100 lines."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = DOCS / "examples" / "anthropic_compat.py"


def test_the_guide_shows_the_tested_file_and_it_is_small() -> None:
    guide = (DOCS / "writing-a-provider-plugin.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    source = EXAMPLE.read_text()
    assert source in blocks, "the guide's example differs from docs/examples/anthropic_compat.py"
    assert len(source.splitlines()) < 100
