"""What a model can take, so that a converted request stays valid for it.

A request converted from another dialect carries settings its caller chose for another kind of
model: Claude Code asks every model for ``max_tokens`` 32000 and adaptive thinking at high
effort, which gpt-4o-mini refuses twice over. Before a provider builds its request,
:func:`fit` applies the model's ``[[models]]`` capabilities:

- ``max_output_tokens`` caps the output limit; a request that asked for more is clamped and the
  response carries ``x-lmrouter-max-tokens-clamped: <cap>; requested=<asked>``;
- hosted tools the dialect could not convert (``request.dropped_tools``), and those with an
  equivalent (``request.hosted_tools``: web search) that this provider lacks, are named in
  ``x-lmrouter-dropped-tools``, or refused with a 400 when ``[routing] unsupported_tools =
  "reject"``;
- ``reasoning = false`` sends no reasoning settings (effort, thinking budget); ``true`` sends
  them as asked; unset, the provider's knowledge of the model decides (``reasoning`` argument).

Pass-through requests are the caller's own and are never changed here. Providers clamp thinking
budgets to their own documented ranges themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from lmrouter.errors import invalid_request

if TYPE_CHECKING:
    from lmrouter import ir
    from lmrouter.context import RequestContext

CLAMP_HEADER = b"x-lmrouter-max-tokens-clamped"
DROPPED_HEADER = b"x-lmrouter-dropped-tools"


def fit(
    ctx: RequestContext,
    request: ir.ChatRequest,
    *,
    reasoning: bool | None = None,
    hosted: frozenset[str] = frozenset(),
) -> ir.ChatRequest:
    """``request`` as the model of ``ctx`` can take it. ``reasoning`` is the provider's own
    view of whether the route's model reasons (``None``: it does not know); ``hosted`` the
    hosted tools it runs itself ("web_search"): the request's others count as dropped."""
    model = getattr(ctx, "model", None)
    if model is None:  # a provider building outside a request (its own unit tests)
        return request
    changes: dict[str, object] = {}
    dropped = request.dropped_tools
    if request.hosted_tools:
        kept = [tool for tool in request.hosted_tools if _hosted_name(tool[1]) in hosted]
        if len(kept) < len(request.hosted_tools):
            dropped = dropped + [t for t in request.hosted_tools if t not in kept]
            changes["hosted_tools"] = kept
    if dropped:
        _dropped(ctx, dropped)
    allowed = model.reasoning if model.reasoning is not None else reasoning
    if allowed is False and (
        request.reasoning_effort is not None or request.thinking_budget is not None
    ):
        changes["reasoning_effort"] = None
        changes["thinking_budget"] = None
    cap = model.max_output_tokens
    if cap is not None and request.max_tokens is not None and request.max_tokens > cap:
        changes["max_tokens"] = cap
        value = b"%d; requested=%d" % (cap, request.max_tokens)
        # Once, however many routes are tried.
        if (CLAMP_HEADER, value) not in ctx.response_headers:
            ctx.response_headers.append((CLAMP_HEADER, value))
    return msgspec.structs.replace(request, **changes) if changes else request


def _dropped(ctx: RequestContext, dropped: list[tuple[str, str]]) -> None:
    gateway = getattr(ctx, "gateway", None)
    policy = gateway.config.core.routing.unsupported_tools if gateway is not None else "drop"
    if policy == "reject":
        path, kind = dropped[0]
        raise invalid_request(
            f"Tool type {kind!r} is not supported for this model: built-in tools run on the "
            "servers of the provider that offers them, and this model's provider has none "
            "such. Leave the tool out, or ask the operator to drop such tools "
            '([routing] unsupported_tools = "drop").',
            path,
        )
    value = ", ".join(dict.fromkeys(kind for _, kind in dropped)).encode()
    if (DROPPED_HEADER, value) not in ctx.response_headers:
        ctx.response_headers.append((DROPPED_HEADER, value))


def _hosted_name(kind: str) -> str:
    """The IR's name for a hosted tool type of any dialect (``web_search_20250305`` …)."""
    return "web_search" if kind.startswith("web_search") else kind
