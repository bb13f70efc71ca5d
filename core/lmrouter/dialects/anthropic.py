"""The Anthropic Messages dialect: error shape (the inbound endpoint grows here)."""

from __future__ import annotations

import orjson

from lmrouter import sse
from lmrouter.errors import RouterError


def error_body(err: RouterError) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}
    )


def stream_error(err: RouterError) -> bytes:
    """The anthropic SDK only reads events that carry an ``event:`` line."""
    return sse.encode(error_body(err), "error")
