"""Embeddings: the IR as one ``batchEmbedContents`` call, and its answer as IR.

Gemini's embedding API reports no token counts, so usage is estimated from the input text
(:func:`lmrouter.usage.estimate_tokens`, about 4 characters a token) and marked ``estimated``.
With ``dimensions`` Gemini returns the leading part of the full vector (Matryoshka truncation)
without re-normalising it; the vectors are scaled back to unit length here, as OpenAI's callers
expect (cosine similarities are unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from lmrouter import UpstreamFailure, Usage, estimate_tokens, invalid_request, ir
from lmrouter.wire import gemini as wire

MAX_BATCH = 100  # Gemini's limit of requests in one batchEmbedContents call


def build(request: ir.EmbeddingRequest, model: str) -> dict[str, Any]:
    if len(request.inputs) > MAX_BATCH:
        raise invalid_request(
            f"Gemini embeds at most {MAX_BATCH} inputs per request; got {len(request.inputs)}.",
            "input",
        )
    one: dict[str, Any] = {"model": f"models/{model}"}
    if request.dimensions is not None:
        one["outputDimensionality"] = request.dimensions
    return {"requests": [{**one, "content": {"parts": [{"text": t}]}} for t in request.inputs]}


def parse(request: ir.EmbeddingRequest, model: str, body: bytes) -> ir.EmbeddingResponse:
    try:
        doc = wire.decode_embeddings(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _unreadable(str(exc)) from None
    if len(doc.embeddings) != len(request.inputs):
        raise _unreadable(f"{len(doc.embeddings)} embeddings for {len(request.inputs)} inputs")
    vectors = [item.values for item in doc.embeddings]
    if request.dimensions is not None:
        vectors = [_unit(vector) for vector in vectors]
    tokens = sum(estimate_tokens(len(text)) for text in request.inputs)
    usage = Usage(prompt_tokens=tokens, estimated=True)
    return ir.EmbeddingResponse(model=model, vectors=vectors, usage=usage)


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def _unreadable(detail: str) -> UpstreamFailure:
    return UpstreamFailure.unreadable("Gemini", f"embeddings: {detail}")
