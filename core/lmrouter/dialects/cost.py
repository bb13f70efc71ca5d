"""``usage.cost`` on the wire: every dialect adds the request's cost to the usage it returns."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from lmrouter.money import format_usd

if TYPE_CHECKING:
    from lmrouter.money import Rates
    from lmrouter.usage import Usage

FinishJson = Callable[[bytes, "Rates"], tuple[bytes, "Usage | None", int]]


def cost_json(pico: int) -> orjson.Fragment:
    """The cost as a plain JSON number (``0.0000015``), exact to the pico-dollar."""
    return orjson.Fragment(format_usd(pico).encode())


class _Cost(msgspec.Struct):
    cost: Any = None


class _CostCheck(msgspec.Struct):
    usage: _Cost | None = None


_decode_cost = msgspec.json.Decoder(_CostCheck).decode
_USAGE_KEY = re.compile(rb'"usage"\s*:\s*\{')


def with_cost(body: bytes, pico: int) -> bytes:
    """Add ``"cost"`` as the first member of the top-level usage object, splicing bytes instead
    of re-encoding the whole answer. The last ``"usage": {`` is normally the top-level one: a
    quote inside a JSON string is always escaped, so only keys can match, and providers put
    usage last. A cheap decode checks it landed there; otherwise the body is re-encoded."""
    # An upstream that prices its own usage (OpenRouter does) gets ours instead, the slow way.
    match = None if b'"cost"' in body else _USAGE_KEY.match(body, max(body.rfind(b'"usage"'), 0))
    if match is not None:
        end = match.end()
        rest = body[end:]
        comma = b"" if rest.lstrip()[:1] == b"}" else b","  # an empty usage object
        spliced = b"".join((body[:end], b'"cost":', format_usd(pico).encode(), comma, rest))
        try:
            if _decode_cost(spliced).usage.cost is not None:  # type: ignore[union-attr]
                return spliced
        except (msgspec.DecodeError, msgspec.ValidationError, AttributeError):
            pass
    doc = orjson.loads(body)
    doc["usage"]["cost"] = cost_json(pico)
    return orjson.dumps(doc)


def finish_with(usage_of: Callable[[bytes], Usage | None]) -> FinishJson:
    """A dialect's pass-through ``finish_json``: read the usage with ``usage_of`` (a msgspec
    decode of just the usage), price it, and add ``usage.cost``. Unreadable bodies pass as they
    are, uncharged: the provider's bytes are the answer either way."""

    def finish_json(body: bytes, rates: Rates) -> tuple[bytes, Usage | None, int]:
        try:
            usage = usage_of(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return body, None, 0
        if usage is None:
            return body, None, 0
        cost = rates.cost(usage)
        return with_cost(body, cost), usage, cost

    return finish_json


def finish_reading(wire_usage: type) -> FinishJson:
    """:func:`finish_with` for answers whose top-level ``usage`` is a ``wire_usage`` struct
    (one with ``normalize()``): only that member is decoded."""
    body = msgspec.defstruct("Body", [("usage", wire_usage | None, None)])  # type: ignore[operator]
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(body).decode

    def usage_of(raw: bytes) -> Usage | None:
        wire = decode(raw).usage
        return wire.normalize() if wire is not None else None  # type: ignore[no-any-return]

    return finish_with(usage_of)
