"""Wire dialects the router speaks to its callers.

Each module holds one endpoint family's request checks, error shape and pass-through readers,
and — for traffic to a provider that speaks another dialect — its converter to and from the
internal representation (:mod:`lmrouter.ir`). :class:`Dialect` ties one endpoint's together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from lmrouter import ir
    from lmrouter.errors import RouterError
    from lmrouter.money import Rates
    from lmrouter.usage import Usage


class Parsed(NamedTuple):
    """What routing and admission need from a request; the rest of ``doc`` passes through."""

    doc: dict[str, Any]
    model: str
    stream: bool
    wants_usage: bool  # the client asked for usage in its stream
    max_output_tokens: int | None  # the request's own output limit, if any
    n: int  # choices requested
    prompt_chars: int


class StreamRelay(Protocol):
    """Bytes from upstream in, bytes for the client out, usage noted on the way."""

    usage: Usage | None
    failed: bool  # the upstream reported an error mid-stream (already relayed to the client)

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self) -> bytes:
        """End of the upstream body: the last events and, when complete, the closing frames."""
        ...

    @property
    def complete(self) -> bool: ...

    def estimated_usage(self, prompt_chars: int) -> Usage: ...

    def error(self, err: RouterError) -> bytes:
        """The router's own error event, in the dialect, to end a broken stream."""
        ...


class StreamParser(Protocol):
    """A provider's stream, as IR events (provider side of a converted stream).

    A complete stream must yield an :class:`ir.Finish` (make one up when the provider only
    signals the end, e.g. with ``[DONE]``); an upstream error becomes :class:`ir.StreamError`."""

    def feed(self, chunk: bytes) -> list[ir.Event]: ...

    def close(self) -> list[ir.Event]: ...


class StreamRenderer(Protocol):
    """IR events as the caller's dialect (dialect side of a converted stream)."""

    def render(self, events: list[ir.Event]) -> bytes: ...

    def finish(self, usage: Usage | None, cost_pico: int) -> bytes:
        """The closing frames of a complete stream (usage with ``cost`` where the dialect has
        a place for it, ``[DONE]`` / ``message_stop``)."""
        ...

    def error(self, err: RouterError) -> bytes:
        """An error event that ends the stream (may number it after what was sent)."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # "openai.chat": what providers list in ``native_dialects``
    kind: str  # the IR it converts to: "chat" or "embeddings" (what providers list in ``converts``)
    parse: Callable[[bytes], Parsed]
    error_body: Callable[[RouterError], bytes]
    stream_error: Callable[[RouterError], bytes]
    # pass-through (the provider speaks this dialect): usage and cost read off the bytes
    finish_json: Callable[[bytes, Rates], tuple[bytes, Usage | None, int]]
    stream_relay: Callable[[bool, Rates], StreamRelay] | None = None
    # conversion (it does not): request → IR, IR → response bytes / stream renderer
    to_ir: Callable[[dict[str, Any]], Any] | None = None
    render: Callable[[Any, dict[str, Any], int], bytes] | None = None  # (IR answer, doc, cost)
    renderer: Callable[[dict[str, Any], bool], StreamRenderer] | None = None  # (doc, wants_usage)
    stream_content_type: bytes = b"text/event-stream; charset=utf-8"
    # Gemini's API names the model in the path: the endpoint sets it from the scope.
    model_in_path: bool = False
    # Its answers have no field for the cost: a whole answer gets ``x-lmrouter-cost``.
    cost_header: bool = False
