"""``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``: the
owner's stored responses, from this router's store or forwarded to the provider (and key) that
keeps them. Anyone else gets the 404 an unknown id gets."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lmrouter import RequestContext, RouterError, invalid_request, require_principal
from lmrouter_responses.background import TERMINAL
from lmrouter_responses.conversations import page
from lmrouter_responses.keeper import DIALECT, Keeper, not_found, owner_of

if TYPE_CHECKING:
    from lmrouter import Gateway, Principal, Row


class Endpoints:
    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin  # its keeper exists once the server started
        self.session: aiohttp.ClientSession | None = None

    def routes(self) -> list[Route]:
        return [
            Route("/v1/responses/{response_id}", self.one, methods=["GET", "DELETE"]),
            Route("/v1/responses/{response_id}/input_items", self.input_items, methods=["GET"]),
            Route("/v1/responses/{response_id}/cancel", self.cancel, methods=["POST"]),
        ]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _row(self, request: Request) -> tuple[Keeper, Principal, Row]:
        principal = await require_principal(request)
        keeper: Keeper = self.plugin.keeper
        response_id = request.path_params["response_id"]
        row = await keeper.find(owner_of(principal), response_id)
        if row is None:
            raise not_found(response_id)
        return keeper, principal, row

    async def one(self, request: Request) -> Response:
        keeper, principal, row = await self._row(request)
        response_id = row[0]
        if row[4]:
            answer = await self._forward(request, principal, row)
            if request.method == "DELETE" and answer.status_code in (200, 404):
                await keeper.delete(response_id)
            return answer
        if request.method == "DELETE":
            await keeper.delete(response_id)
            return JSONResponse({"id": response_id, "object": "response", "deleted": True})
        if request.query_params.get("stream") == "true":
            return self._resume(keeper, response_id, request.query_params.get("starting_after"))
        return Response(row[8], media_type="application/json")

    def _resume(self, keeper: Keeper, response_id: str, after: str | None) -> Response:
        """A streamed background response's events after ``starting_after``, then the rest as
        they come."""
        job = keeper.streams.get(response_id)
        if job is None:
            raise invalid_request(
                "This response's events are not kept: only a background response created with "
                "`stream` can be streamed again, from the router process that ran it, and "
                "only the latest ones; GET it without `stream`.",
                "stream",
            )
        try:
            start = -1 if after is None else int(after)
        except ValueError:
            raise invalid_request(
                "`starting_after` must be an integer.", "starting_after"
            ) from None
        return StreamingResponse(
            job.follow(start),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def input_items(self, request: Request) -> Response:
        _keeper, principal, row = await self._row(request)
        if row[4]:
            return await self._forward(request, principal, row, "/input_items")
        items: list[dict[str, Any]] = orjson.loads(row[7] or b"[]")
        return JSONResponse(page(items, request.query_params))

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/responses/{id}/cancel``: a background response under way is cut (what
        was generated is paid) and kept as ``cancelled``; a finished one stays as it is."""
        keeper, principal, row = await self._row(request)
        if row[4]:
            return await self._forward(request, principal, row, "/cancel")
        response: dict[str, Any] = orjson.loads(row[8] or b"{}")
        if not response.get("background"):
            raise RouterError(
                400,
                "Only responses created with background mode can be cancelled.",
                code="invalid_request",
            )
        status = response.get("status")
        if status in TERMINAL:
            if status == "cancelled":
                return JSONResponse(response)
            raise RouterError(
                400, f"Cannot cancel a response with status '{status}'.", code="invalid_request"
            )
        job = keeper.jobs.get(row[0])
        if job is not None:
            job.cancel()
        response["status"] = "cancelled"
        await keeper.store.execute(  # at once: the job's own record (with usage) follows
            "UPDATE stored_responses SET response = ? WHERE id = ?",
            (orjson.dumps(response).decode(), row[0]),
        )
        return JSONResponse(response)

    async def _forward(
        self, request: Request, principal: Principal, row: Row, suffix: str = ""
    ) -> Response:
        """The same call to the provider that keeps the response, with the key that made it."""
        gateway: Gateway = request.app.state.gateway
        provider = gateway.providers.get(row[3])
        if provider is None:
            raise not_found(row[0])
        key = await self._key(request, gateway, principal, row)
        url = f"{provider.base_url}/responses/{row[0]}{suffix}"
        if request.url.query:
            url += "?" + request.url.query
        headers = {**provider.config.headers, "authorization": f"Bearer {key}"}
        if self.session is None:
            self.session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=provider.config.first_byte_timeout)
        try:
            async with self.session.request(
                request.method, url, headers=headers, timeout=timeout
            ) as upstream:
                body = await upstream.read()
                status = upstream.status
                kind = upstream.headers.get("content-type", "application/json")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RouterError(
                502, f"{provider.name}: {type(exc).__name__}", code="upstream_error"
            ) from None
        return Response(body, status, media_type=kind)

    async def _key(self, request: Request, gateway: Gateway, principal: Principal, row: Row) -> str:
        provider = gateway.providers[row[3]]
        if not row[5]:
            return provider.config.api_key
        # The caller's own key made it: ask for it again as a request to that route would.
        model = gateway.models.get(row[2])
        route = next((r for r in model.routes if r.provider == row[3]), None) if model else None
        if model is None or route is None:
            raise not_found(row[0])
        ctx = RequestContext(
            gateway=gateway,
            request_id=request.scope.get("lmrouter.request_id", ""),
            dialect=DIALECT,
            headers=request.headers,
            body=b"",
            doc={},
            model=model,
            principal=principal,
        )
        key = gateway.pm.hook.lmrouter_upstream_key(ctx=ctx, route=route)
        if inspect.isawaitable(key):
            key = await key
        if not key:
            raise not_found(row[0])  # the key that made it is gone
        return str(key)
