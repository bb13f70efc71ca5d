"""The OpenAI embeddings dialect (``POST /v1/embeddings``).

OpenAI-type providers get the request as it is (pass-through). For the others it converts
through :class:`lmrouter.ir.EmbeddingRequest`: ``input`` as a string or an array of strings (token
arrays are OpenAI's own and are refused with a 400 naming ``input``), ``dimensions``; the answer is
rendered as OpenAI's ``{"object": "list", "data": [...], "model", "usage"}`` with ``usage.cost``,
vectors as float arrays or — ``encoding_format: "base64"``, what the openai SDK asks for by
default — base64 of little-endian float32.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import orjson

from lmrouter import ir
from lmrouter.dialects import Dialect, Parsed
from lmrouter.dialects.cost import cost_json
from lmrouter.dialects.openai import error_body, finish_json, load_object, model_field, stream_error
from lmrouter.errors import invalid_request

_ENCODINGS = frozenset({"float", "base64"})


def parse_embeddings(body: bytes) -> Parsed:
    doc = load_object(body)
    model = model_field(doc)
    value = doc.get("input")
    if not value or not isinstance(value, str | list):
        raise invalid_request("`input` must be a non-empty string or array.", "input")
    return Parsed(doc, model, False, False, None, 1, len(body))


# -- conversion ------------------------------------------------------------------------------


def to_ir(doc: dict[str, Any]) -> ir.EmbeddingRequest:
    _encoding(doc)
    return ir.EmbeddingRequest(
        model=model_field(doc), inputs=_inputs(doc.get("input")), dimensions=_dimensions(doc)
    )


def _inputs(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise invalid_request("`input` must be a non-empty string or array.", "input")
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise invalid_request(f"`input[{i}]` must not be an empty string.", "input")
            continue
        if isinstance(item, int | list) and not isinstance(item, bool):
            raise invalid_request(
                "Token arrays as `input` are only understood by OpenAI-type providers; send"
                " text for this model.",
                "input",
            )
        raise invalid_request(f"`input[{i}]` must be a string.", "input")
    return items


def _dimensions(doc: dict[str, Any]) -> int | None:
    value = doc.get("dimensions")
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise invalid_request("`dimensions` must be a positive integer.", "dimensions")
    return value


def _encoding(doc: dict[str, Any]) -> str:
    value = doc.get("encoding_format")
    if value is None:
        return "float"
    if value not in _ENCODINGS:
        raise invalid_request(
            f"Invalid value: {value!r}. Supported values are: 'float' and 'base64'.",
            "encoding_format",
        )
    return str(value)


def render(answer: ir.EmbeddingResponse, doc: dict[str, Any], cost: int) -> bytes:
    as_base64 = _encoding(doc) == "base64"
    dimensions = doc.get("dimensions")
    data = []
    for index, vector in enumerate(answer.vectors):
        if type(dimensions) is int and 0 < dimensions < len(vector):
            vector = _shortened(vector, dimensions)
        embedding: Any = _base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = answer.usage.prompt_tokens if answer.usage else 0
    usage = {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "cost": cost_json(cost),
    }
    return orjson.dumps({"object": "list", "data": data, "model": answer.model, "usage": usage})


def _shortened(vector: list[float], dimensions: int) -> list[float]:
    """A provider that ignored ``dimensions``: cut to size and back to unit length, which is what
    OpenAI's own shortened embeddings are."""
    head = vector[:dimensions]
    norm = math.sqrt(math.fsum(x * x for x in head))
    return [x / norm for x in head] if norm else head


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


EMBEDDINGS = Dialect(
    name="openai.embeddings",
    kind="embeddings",
    parse=parse_embeddings,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
    to_ir=to_ir,
    render=render,
)
