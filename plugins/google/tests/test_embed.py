"""IR embeddings ↔ Gemini ``batchEmbedContents``."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import orjson
import pytest

from lmrouter import ir
from lmrouter.config import Route
from lmrouter.errors import RouterError
from lmrouter.providers import UpstreamFailure
from lmrouter_google import GoogleConfig, GoogleProvider


class RouteStub:
    model = "models/text-embedding-004"


class Ctx:
    stream = False
    route = RouteStub()


def provider() -> GoogleProvider:
    raw = {"type": "google", "base_url": "https://generativelanguage.googleapis.com"}
    return GoogleProvider("gemini", msgspec.convert(raw, GoogleConfig))


ROUTE = Route(provider="gemini", model="models/text-embedding-004")


def test_build_batch_request() -> None:
    request = ir.EmbeddingRequest(model="embed", inputs=["alpha", "beta gamma"], dimensions=256)
    upstream = provider().build(Ctx(), request, ROUTE, "AIza-k")  # type: ignore[arg-type]
    assert upstream.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004"
        ":batchEmbedContents"
    )
    assert upstream.headers["x-goog-api-key"] == "AIza-k"
    assert orjson.loads(upstream.body) == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "outputDimensionality": 256,
                "content": {"parts": [{"text": "alpha"}]},
            },
            {
                "model": "models/text-embedding-004",
                "outputDimensionality": 256,
                "content": {"parts": [{"text": "beta gamma"}]},
            },
        ]
    }
    plain = provider().build(Ctx(), ir.EmbeddingRequest(model="e", inputs=["x"]), ROUTE, "k")  # type: ignore[arg-type]
    assert "outputDimensionality" not in orjson.loads(plain.body)["requests"][0]


def test_more_than_a_batch_is_refused() -> None:
    request = ir.EmbeddingRequest(model="e", inputs=["x"] * 101)
    with pytest.raises(RouterError) as info:
        provider().build(Ctx(), request, ROUTE, "k")  # type: ignore[arg-type]
    assert info.value.status == 400 and info.value.param == "input"


def parse(request: ir.EmbeddingRequest, doc: Any) -> ir.EmbeddingResponse:
    return provider().parse(Ctx(), request, orjson.dumps(doc))  # type: ignore[arg-type]


def test_parse_vectors_and_estimated_usage() -> None:
    request = ir.EmbeddingRequest(model="embed", inputs=["abcd", "abcdefghi"])
    doc = {"embeddings": [{"values": [0.6, 0.8]}, {"values": [0.0, 1.0]}]}
    result = parse(request, doc)
    assert result.vectors == [[0.6, 0.8], [0.0, 1.0]]
    assert result.model == "text-embedding-004"
    assert result.usage is not None and result.usage.estimated
    assert result.usage.prompt_tokens == 1 + 3  # about 4 characters a token, per input


def test_truncated_vectors_are_scaled_back_to_unit_length() -> None:
    request = ir.EmbeddingRequest(model="embed", inputs=["a"], dimensions=2)
    [vector] = parse(request, {"embeddings": [{"values": [0.3, 0.4]}]}).vectors
    assert vector == pytest.approx([0.6, 0.8])
    assert math.fsum(x * x for x in vector) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "doc", [{"embeddings": [{"values": [1.0]}]}, {"embeddings": "x"}, {"embedding": {}}]
)
def test_unreadable_or_short_answers_fail(doc: Any) -> None:
    request = ir.EmbeddingRequest(model="embed", inputs=["a", "b"])
    with pytest.raises(UpstreamFailure) as info:
        parse(request, doc)
    assert info.value.status == 502
