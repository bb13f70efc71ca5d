"""Wire dialects the router speaks to its callers. Each module holds one family's request
checks, error shape and pass-through readers; :class:`Dialect` ties one endpoint's together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
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
    usage: Usage | None
    done: bool

    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...
    @property
    def complete(self) -> bool: ...
    def estimated_usage(self, prompt_chars: int) -> Usage: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # "openai.chat": what providers list in ``native_dialects``
    parse: Callable[[bytes], Parsed]
    error_body: Callable[[RouterError], bytes]
    stream_error: Callable[[RouterError], bytes]
    finish_json: Callable[[bytes, Rates], tuple[bytes, Usage | None, int]]
    stream_relay: Callable[[bool, Rates], StreamRelay] | None = None
    stream_content_type: bytes = b"text/event-stream; charset=utf-8"
