"""Per-request state that hooks see: who calls, what they asked for, and how it ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    from lmrouter.config import Model, Route
    from lmrouter.errors import RouterError
    from lmrouter.gateway import Gateway
    from lmrouter.usage import Usage


@dataclass(slots=True)
class Principal:
    """An authenticated caller. ``kind`` is ``operator``, ``user`` or ``byok``.

    ``byok_providers``: the providers for which the caller stored a key of their own, so that
    their routes cost no credits (the accounts plugin fills it, credits reads it); None when the
    plugin that authenticated the caller keeps no such keys. ``limits``: ``rpm``, ``tpm``,
    ``max_concurrent`` set on the key. ``extra``: private to the plugin that made the principal;
    another plugin reading it depends on that plugin's internals."""

    id: str
    kind: str = "user"
    user_id: str | None = None
    key_id: str | None = None
    key_prefix: str | None = None
    is_admin: bool = False
    limits: dict[str, int] = field(default_factory=dict)
    byok_providers: frozenset[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str
    status: int | None = None  # upstream HTTP status, None when no response came
    error: str | None = None


@dataclass(slots=True)
class Detached:
    """A request an admission hook answers at once and lets run on without its caller
    (background Responses): set ``ctx.detached`` in ``lmrouter_admit``. The caller gets
    ``reply`` (JSON, 200) now; the request then goes upstream in a task of its own, through the
    same routes, fallback, metering and ``lmrouter_request_end`` as any other, and what the
    pipeline would have sent the caller goes to ``send`` (ASGI messages). It ends only when the
    upstream does, or when ``cancel`` is set: that is a client disconnect to the pipeline (the
    upstream is closed, what it generated is paid). Run it as a stream to have that.
    ``events``, when set, is sent to the caller instead of ``reply``, as ``text/event-stream``
    chunks, for as long as the caller stays; its leaving ends only that. (API 1.6)"""

    reply: bytes
    send: Callable[[dict[str, Any]], Awaitable[None]]
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    events: AsyncIterator[bytes] | None = None


@dataclass(slots=True)
class RequestContext:
    gateway: Gateway
    request_id: str
    dialect: str  # "openai.chat", "openai.embeddings", …
    headers: Any  # the request's headers (lower-case names)
    body: bytes
    doc: dict[str, Any]
    model: Model
    principal: Principal
    stream: bool = False
    # The output limit per choice: the request's own, else the model's ``max_output_tokens``,
    # else one an admission hook sets (the credit hold's default). When the request set none,
    # the router sends this one upstream in the provider's own field, so that the provider can
    # never generate more than was held.
    output_limit: int | None = None
    n: int = 1  # choices requested: each may use ``output_limit`` tokens
    prompt_chars: int = 0  # size of the prompt, for estimates (non-text parts at a floor each)
    billable: bool = True  # False when the caller pays the provider (BYOK)
    started: float = field(default_factory=time.perf_counter)
    attempts: list[Attempt] = field(default_factory=list)
    ir: Any = None  # the request in the internal representation, made on first need
    route: Route | None = None  # the route being tried
    relay: Any = None  # the StreamRelay of a stream under way (what it saw, if cut short)
    upstream_s: float = 0.0  # time spent waiting on upstreams, all attempts
    overhead_ms: float | None = None  # the router's own time until the response started
    # Headers plugins add to the response, whatever it is (rate-limit state, for one).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # per-plugin scratch space
    answer: bytes | None = None  # the whole non-stream answer sent to the caller
    detached: Detached | None = None  # set by an admission hook: see Detached

    def final_answer(self) -> dict[str, Any] | None:
        """The answer the caller got, decoded: a non-stream body, or the final object a stream
        assembled (Responses streams: the ``response`` of their last event); None when there is
        none. Decoded on demand, for the few plugins that keep answers (stored Responses)."""
        if self.answer is not None:
            doc = orjson.loads(self.answer)
            return doc if isinstance(doc, dict) else None
        final = getattr(self.relay, "answer", None)
        return final if isinstance(final, dict) else None

    @property
    def max_output_tokens(self) -> int | None:
        """The most output tokens the request may produce, all choices together; None when
        nothing limits it."""
        return self.output_limit * self.n if self.output_limit else None


Status = Literal["ok", "refused", "upstream_error", "client_disconnected", "error"]
# Where ``Outcome.usage`` came from: the provider's report; the router's count of what it
# relayed (a stream that ended without usage); or the hold — the most the request could have
# used — when the client left and the provider's report could not be read in time.
UsageSource = Literal["provider", "estimated", "hold"]


@dataclass(slots=True)
class Outcome:
    """How a request ended. ``usage`` is what the provider reported, or what the router estimated
    (``usage.estimated``; ``usage_source`` says how). ``cost_pico`` is that usage at the route's
    list price, whoever pays (``ctx.billable`` says whether the caller's credits do, or their
    own provider key). ``written_off_pico`` is set by a metering plugin's
    ``lmrouter_request_end`` (which runs before ``trylast`` ones): what the caller owed beyond
    what could be charged."""

    status: Status
    http_status: int
    usage: Usage | None = None
    cost_pico: int = 0
    route: Route | None = None
    error: RouterError | None = None
    first_byte_ms: float | None = None
    total_ms: float = 0.0
    usage_source: UsageSource = "provider"
    written_off_pico: int = 0
