"""The Chat Completions pass-through relay, for any chunking of the upstream's bytes."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter.config import Price
from lmrouter.dialects.openai import ChatStreamRelay
from lmrouter.money import Rates
from lmrouter.sse import SSEDecoder

RATES = Rates.from_price(Price(input=Decimal(1), output=Decimal(2)))


def chunk(delta: dict, finish: str | None = None) -> bytes:
    doc = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def stream(texts: list[str], done: bool) -> bytes:
    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": text}) for text in texts]
    parts.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 7, "completion_tokens": len(texts), "total_tokens": 7 + len(texts)}
    parts.append(b"data: " + orjson.dumps({"id": "c", "choices": [], "usage": usage}) + b"\n\n")
    if done:
        parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(min_size=1, max_size=12), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=20),
    wants_usage=st.booleans(),
    done=st.booleans(),
    whole_events=st.booleans(),
)
def test_relay_is_exact_for_any_chunking(
    texts: list[str], cuts: list[int], wants_usage: bool, done: bool, whole_events: bool
) -> None:
    upstream = stream(texts, done)
    if whole_events:  # cut only between events: the relay's no-parse path
        ends = [i + 2 for i in range(len(upstream)) if upstream.startswith(b"\n\n", i)]
        cuts = [ends[c % len(ends)] for c in cuts]
    relay = ChatStreamRelay(wants_usage, RATES)
    out = b"".join(relay.feed(piece) for piece in split(upstream, cuts)) + relay.close()
    events = [e.data for e in SSEDecoder().feed(out)]
    assert events[-1] == b"[DONE]", "a complete stream always ends with [DONE]"
    docs = [orjson.loads(e) for e in events[:-1]]
    text = "".join(d["choices"][0]["delta"].get("content") or "" for d in docs if d["choices"])
    assert text == "".join(texts)
    usage_chunks = [d for d in docs if not d["choices"]]
    if wants_usage:
        [usage] = usage_chunks
        expected = (7 * 1 + len(texts) * 2) / 1e6
        assert usage["usage"]["cost"] == expected
    else:
        assert usage_chunks == [], "the router's own usage chunk stays hidden"
    assert relay.complete and relay.usage is not None
    assert (relay.usage.prompt_tokens, relay.usage.completion_tokens) == (7, len(texts))
    assert relay.pieces == sum(1 for t in texts if t)
