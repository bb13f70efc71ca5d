"""The OpenAI embeddings dialect (``POST /v1/embeddings``)."""

from __future__ import annotations

from lmrouter.dialects import Dialect, Parsed
from lmrouter.dialects.openai import error_body, finish_json, load_object, model_field, stream_error
from lmrouter.errors import invalid_request


def parse_embeddings(body: bytes) -> Parsed:
    doc = load_object(body)
    model = model_field(doc)
    value = doc.get("input")
    if not value or not isinstance(value, str | list):
        raise invalid_request("`input` must be a non-empty string or array.", "input")
    return Parsed(doc, model, False, False, None, 1, len(body))


EMBEDDINGS = Dialect(
    name="openai.embeddings",
    kind="embeddings",
    parse=parse_embeddings,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
)
