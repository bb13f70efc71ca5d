"""Several choices from Anthropic, which answers with one message: a converted request with
``n > 1`` (Chat ``n``, Gemini ``candidateCount``) is sent ``n`` times at once and the answers
merged into one with ``n`` choices, their usage summed (each call reads the prompt once, and
Anthropic bills each). Whole answers only: a stream with ``n > 1`` skips the route.

The fan-out stays inside the provider: :meth:`AnthropicProvider.build` marks the upstream
request with its ``n`` (:class:`FanOut`), :func:`open_all` sends the copies and hands the
proxy one response whose body is the JSON array of the answers, and :func:`merge` makes one
IR answer of them. A copy that fails fails the attempt, as one request would: the proxy then
tries the next route or reports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from lmrouter import UpstreamRequest, Usage, ir


class FanOut(UpstreamRequest):
    """An upstream request to send ``n`` times (a tuple subclass with room for ``n``)."""

    n: int


def fan_out(request: UpstreamRequest, n: int) -> FanOut:
    marked = FanOut(*request)
    marked.n = n
    return marked


class Merged:
    """The ``n`` answers (all 200) as one response: its body is the JSON array of theirs."""

    status = 200

    def __init__(self, responses: list[Any]) -> None:
        self.responses = responses

    async def read(self) -> bytes:
        bodies = [await response.read() for response in self.responses]
        return b"[" + b",".join(bodies) + b"]"

    def release(self) -> None:
        for response in self.responses:
            response.release()

    def close(self) -> None:
        for response in self.responses:
            response.close()


async def open_all(
    open_one: Callable[..., Awaitable[Any]], request: FanOut, *, stream: bool, budget: float
) -> Any:
    """The ``n`` copies sent at once; the first failure, or the first error response (for
    the provider's usual error reading), stands for them all."""
    plain = UpstreamRequest(*request)
    tasks = [
        asyncio.ensure_future(open_one(plain, stream=stream, budget=budget))
        for _ in range(request.n)
    ]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:  # the caller left: none of the copies may stay open
        for task in tasks:
            if not task.done():
                task.cancel()
            elif not task.cancelled() and task.exception() is None:
                task.result().close()
        raise
    results = [task.exception() or task.result() for task in tasks]
    responses = [r for r in results if not isinstance(r, BaseException)]
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    bad = next((r for r in responses if r.status >= 400), None)
    for response in responses:
        if failure is not None or (bad is not None and response is not bad):
            response.close()
    if failure is not None:
        raise failure
    return bad if bad is not None else Merged(responses)


def merge(answers: list[ir.ChatResponse]) -> ir.ChatResponse:
    """One answer with a choice per call, usage summed over the calls."""
    usages = [a.usage for a in answers if a.usage is not None]
    usage = None
    if usages:
        fields = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
                  "reasoning_tokens")  # fmt: skip
        usage = Usage(**{name: sum(getattr(u, name) for u in usages) for name in fields})
    choices = [choice for answer in answers for choice in answer.all_choices()]
    return ir.ChatResponse.of_choices(answers[0].id, answers[0].model, choices, usage)
