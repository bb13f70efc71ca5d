"""Reading on after a streaming client left.

Providers report a stream's usage at its end, after the text (and reasoning can be most of it),
so a router that hangs up on the provider when its client does never learns what the request
cost. Instead, the request keeps reading the upstream — feeding its relay, sending nothing — for
at most ``[routing] drain_seconds`` after the client left and ``drain_mb`` more of the stream.
What the request is then charged (:func:`usage_after_cut`): the provider's usage when it came,
else the hold, the most it could have cost.

The reading happens in the request's own task, so it settles exactly once through the usual
path; :class:`Drains` knows which requests are reading for a client that left, so that shutdown
ends them (each is then charged its hold) instead of waiting for them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp

from lmrouter.usage import held_usage

if TYPE_CHECKING:
    from lmrouter.context import RequestContext, UsageSource
    from lmrouter.dialects import StreamRelay
    from lmrouter.usage import Usage

SHUTDOWN_WAIT = 5.0  # seconds shutdown waits for ended drains to settle before cancelling them


class Drains:
    """The bounds, and the requests reading an upstream their client left."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.running: dict[asyncio.Task[Any], aiohttp.ClientResponse] = {}

    def client_left(
        self, response: aiohttp.ClientResponse, request: asyncio.Task[Any]
    ) -> asyncio.TimerHandle | None:
        """The client of ``request`` left: bound the reading from now. The upstream is closed
        ``seconds`` from now, whoever reads it then (with 0, at once, and nothing is read on).
        Until :meth:`finished`, shutdown ends the reading at once."""
        self.running[request] = response
        if self.seconds <= 0:
            cut(response)
            return None
        return asyncio.get_running_loop().call_later(self.seconds, cut, response)

    async def read_on(
        self,
        response: aiohttp.ClientResponse,
        relay: StreamRelay,
        timer: asyncio.TimerHandle | None,
        request: asyncio.Task[Any],
    ) -> None:
        """Read the rest of the stream into ``relay``, its output dropped, until its end (the
        usage comes last, even after the finish), ``max_bytes`` more were read, or the upstream
        fails or is closed (by the ``timer`` of :meth:`client_left`, armed now if the client's
        leaving was seen only now, or by :meth:`stop`)."""
        if timer is None:
            timer = self.client_left(response, request)
        if self.seconds <= 0 or relay.failed:
            return
        content = response.content
        read = 0
        try:
            while read <= self.max_bytes:
                chunk = await content.readany()
                if not chunk:
                    relay.close()
                    break
                read += len(chunk)
                relay.feed(chunk)
                if relay.failed:
                    break
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass  # closed by a bound, or the upstream failed: the usage stays unknown
        finally:
            if timer is not None:
                timer.cancel()

    def finished(self, request: asyncio.Task[Any], timer: asyncio.TimerHandle | None) -> None:
        """The request is done with its upstream (it settles next)."""
        if timer is not None:
            timer.cancel()
        self.running.pop(request, None)

    async def stop(self) -> None:
        """Shutdown: end every drain now and wait (briefly) for their requests to settle."""
        tasks = list(self.running)
        for response in self.running.values():
            cut(response)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT)
        for task in late:
            task.cancel()


class UpstreamCut(aiohttp.ClientConnectionError):
    """The router closed this upstream (its client left and the bounds ran out, or shutdown)."""


def cut(response: aiohttp.ClientResponse) -> None:
    """Close an upstream another task may be reading, waking that read with an exception of its
    own. ``close()`` alone would wake it with aiohttp's one module-wide "Connection closed"
    exception, whose traceback grows by the reader's frames at every raise: every request cut
    so stayed reachable from it for good (issue #13)."""
    if response.content.exception() is None:
        response.content.set_exception(UpstreamCut("the router closed the upstream"))
    response.close()


def usage_after_cut(
    ctx: RequestContext, relay: StreamRelay, read_all: bool
) -> tuple[Usage, UsageSource]:
    """What a stream whose client left (or that the router is stopping) is charged: the
    provider's usage if it came; the count of what was relayed if the stream was read to its
    end without any (a provider that reports none), or if nothing was held (no limit to charge);
    else the hold."""
    if relay.usage is not None:
        return relay.usage, "provider"
    limit = ctx.max_output_tokens
    if (read_all and relay.complete) or limit is None:
        return relay.estimated_usage(ctx.prompt_chars), "estimated"
    return held_usage(ctx.prompt_chars, limit), "hold"
