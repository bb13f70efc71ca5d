"""``usage.cost`` spliced into answers: always valid JSON, always in the top-level usage."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter.dialects.cost import with_cost

PICO = 1_500_000  # 0.0000015 USD


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"x","usage":{"prompt_tokens":1,"completion_tokens":2}}',
        b'{\n  "usage": {\n    "prompt_tokens": 1\n  }\n}\n',  # OpenAI pretty-prints
        b'{"usage":{}}',
        b'{"usage": { } }',
        b'{"usage":{"prompt_tokens":1},"x_groq":{"usage":{"queue_time":0.1}}}',
        b'{"usage":{"prompt_tokens":1,"cost":0.5}}',  # the upstream priced it itself
        b'{"choices":[{"message":{"content":"a \\"usage\\": {"}}],"usage":{"a":1}}',
    ],
)
def test_cost_lands_in_the_top_level_usage(body: bytes) -> None:
    out = orjson.loads(with_cost(body, PICO))
    original = orjson.loads(body)
    assert out["usage"]["cost"] == 0.0000015
    out["usage"].pop("cost")
    original["usage"].pop("cost", None)
    assert out == original, "nothing else changed"
    assert b'"cost"' not in body or with_cost(body, PICO).count(b'"cost"') == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    before=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    after=st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    usage=st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "usage"]), json_values, max_size=3
    ),
    indent=st.booleans(),
    pico=st.integers(min_value=0, max_value=10**15),
)
def test_any_answer_stays_valid(
    before: dict[str, Any],
    after: dict[str, Any],
    usage: dict[str, Any],
    indent: bool,
    pico: int,
) -> None:
    doc = {
        **{k: v for k, v in before.items() if k != "usage"},
        "usage": usage,
        **{k: v for k, v in after.items() if k != "usage"},
    }
    body = json.dumps(doc, indent=2 if indent else None).encode()
    out = json.loads(with_cost(body, pico), parse_float=Decimal)
    assert out["usage"]["cost"] == Decimal(pico).scaleb(-12)
