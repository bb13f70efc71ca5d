"""The admin page's recent errors: the last requests that ended with an HTTP status of 400 or
more, kept in a bounded ring in this process's memory, fed by ``lmrouter_request_end``. Cheap on
the request path (a comparison, and an append for errors only); lost on restart, and with
several workers each keeps its own (the page shows the worker that served it)."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from lmrouter import Outcome, RequestContext

SIZE = 200


class Failure(msgspec.Struct, frozen=True):
    at: float  # epoch seconds
    request_id: str
    http_status: int
    code: str
    message: str
    model: str
    principal: str  # "user:<id>", "operator:0", …
    provider: str | None


class RecentErrors:
    def __init__(self, size: int = SIZE) -> None:
        self.ring: deque[Failure] = deque(maxlen=size)

    def record(self, ctx: RequestContext, outcome: Outcome) -> None:
        if outcome.http_status < 400:
            return
        error = outcome.error
        route = outcome.route or ctx.route
        self.ring.append(
            Failure(
                at=time.time(),
                request_id=ctx.request_id,
                http_status=outcome.http_status,
                code=(error.code if error else None) or outcome.status,
                message=(error.message if error else "")[:300],
                model=ctx.model.id,
                principal=ctx.principal.id,
                provider=route.provider if route else None,
            )
        )

    def newest_first(self) -> list[Failure]:
        return list(reversed(self.ring))
