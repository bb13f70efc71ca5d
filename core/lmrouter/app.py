"""The ASGI app: request ids, the dialect endpoints, built-in and plugin routes, lifespan.

A request enters at :class:`RouterApp`. The model endpoints go straight to
:class:`lmrouter.proxy.ProxyEndpoint`, where the whole pipeline reads top to bottom; everything
else is an ordinary Starlette app.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from lmrouter import __version__
from lmrouter.auth import require_principal
from lmrouter.count_tokens import gemini_count_tokens, messages_count_tokens
from lmrouter.dialects import anthropic as anthropic_dialect
from lmrouter.dialects import embeddings as embeddings_dialect
from lmrouter.dialects import gemini as gemini_dialect
from lmrouter.dialects import openai as openai_dialect
from lmrouter.dialects import responses as responses_dialect
from lmrouter.errors import RouterError, model_not_found
from lmrouter.gateway import Gateway
from lmrouter.guard import ReadDeadlines
from lmrouter.proxy import Headers, ProxyEndpoint, api_key_from

log = structlog.get_logger("lmrouter.request")

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(scope: Scope) -> bytes:
    """The caller's ``x-request-id`` when it is sane, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SAFE_ID.match(value):
                return bytes(value)
            break
    return new_request_id()


def new_request_id() -> bytes:
    """24 hex digits: the time in milliseconds (12), then 48 random bits. Ids that sort by time
    make an index on them (usage records have one) grow at its end, as a time column's does;
    random ids land all over it, which costs a metered router more than SQLite's every other
    write per request once the table is large."""
    return b"%012x%s" % (time.time_ns() // 1_000_000, os.urandom(6).hex().encode())


class RouterApp:
    """The ASGI entry point. Every request gets an id (returned in ``x-request-id`` and bound to
    every log line). The model endpoints are found with one dict lookup and called directly;
    everything else goes through Starlette. Skipping Starlette's routing and middleware stack
    on the hot path saves tens of microseconds a request and a wrapper on every streamed chunk.
    """

    def __init__(
        self,
        starlette: Starlette,
        endpoints: dict[str, ProxyEndpoint],
        deadlines: ReadDeadlines,
        gemini: dict[str, ProxyEndpoint] | None = None,
        log_requests: bool = True,
    ) -> None:
        self.starlette = starlette
        self.endpoints = endpoints
        self.deadlines = deadlines
        self.gemini = gemini or {}  # Gemini method name → its endpoint
        self.dashboard: str | None = None  # its path, when a plugin serves the dashboard
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.starlette(scope, receive, send)
            return
        request_id = request_id_of(scope)
        rid = request_id.decode()
        scope["lmrouter.request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        if kind == "http":
            endpoint = self.endpoints.get(scope["path"]) or self._gemini(scope)
            if endpoint is not None and scope["method"] == "POST":
                await endpoint(scope, receive, send)  # it sets x-request-id and logs itself
                return
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and status == 500:
                status = 403  # closed before accepting: the server refuses the upgrade with 403
            await send(message)

        # Plugin endpoints read their bodies themselves: the same deadline holds for them.
        guarded = self.deadlines.guard(receive) if kind == "http" else receive
        try:
            if kind == "websocket" and "websocket.http.response" in scope.get("extensions", {}):
                await refuse_websocket(receive, send_with_id)
                return
            await self.starlette(scope, guarded, send_with_id)
        finally:
            # Every answer gets its line, 404s, 405s and refused WebSocket upgrades (Codex tries
            # one on /v1/responses first) included, so a client's failed probe shows in the logs.
            if self.log_requests:
                log.info(
                    "request",
                    request_id=rid,
                    method="WEBSOCKET" if kind == "websocket" else scope["method"],
                    path=scope["path"],
                    status=status,
                    total_ms=round((time.perf_counter() - started) * 1000, 2),
                )

    def _gemini(self, scope: Scope) -> ProxyEndpoint | None:
        """``/v1beta/models/{model}:{method}`` (or under ``/v1/``): the model may hold ``/``,
        the method follows the last ``:``."""
        path: str = scope["path"]
        for prefix in GEMINI_PREFIXES:
            if path.startswith(prefix):
                model, colon, method = path[len(prefix) :].rpartition(":")
                endpoint = self.gemini.get(method)
                if colon and model and endpoint is not None:
                    scope["lmrouter.model"] = model.removeprefix("models/")
                    return endpoint
        return None


GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")

WEBSOCKET_REFUSAL = openai_dialect.error_body(
    RouterError(
        426,
        "The router speaks HTTP only: send this request as an HTTP POST, not over a WebSocket.",
        code="websocket_not_supported",
    )
)


async def refuse_websocket(receive: Receive, send: Send) -> None:
    """Refuse an upgrade with 426 Upgrade Required (where the server can send a status).
    Codex tries a WebSocket on ``/v1/responses`` first: a 426 makes it fall back to HTTP at
    once, where the 403 of a plain close made it retry five times (about 6 s) first."""
    await receive()  # websocket.connect
    headers = [(b"content-type", b"application/json")]
    await send({"type": "websocket.http.response.start", "status": 426, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": WEBSOCKET_REFUSAL})


def dialect_of(request: Request) -> Any:
    """Errors outside the model endpoints answer in the dialect the caller evidently speaks."""
    if request.url.path.startswith("/v1/messages") or "anthropic-version" in request.headers:
        return anthropic_dialect
    if speaks_gemini(request):
        return gemini_dialect
    return openai_dialect


async def router_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RouterError)
    body = dialect_of(request).error_body(exc)
    return Response(body, exc.status, headers=exc.headers, media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = (
        f"No route for {request.method} {request.url.path}."
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    err = RouterError(exc.status_code, message, code=code)
    return await router_error(request, err)


# -- built-in endpoints -----------------------------------------------------------------------


async def _is_operator(request: Request) -> bool:
    """Whether the caller sent an admin key. A missing or wrong key is no error here (probes
    call without one), but a wrong one counts towards its address's failures like anywhere."""
    if api_key_from(Headers.from_scope(request.scope), request.scope["query_string"]) is None:
        return False
    try:
        principal = await require_principal(request)
    except RouterError:  # a wrong key, a throttled address, a suspended account: no details
        return False
    return principal.is_admin


async def health(request: Request) -> Response:
    """Liveness and readiness: 200 while the store and every backend a plugin reports
    (``lmrouter_health``: Redis, …) answer, 503 naming what does not, with what the router has
    seen of each provider lately — a failing provider degrades, not fails. The providers' last
    error messages are for operators (an admin key) only."""
    gateway: Gateway = request.app.state.gateway
    store_ok = await gateway.store.ping()
    backends = {"store": "ok" if store_ok else "unavailable"}
    for answer in gateway.pm.hook.lmrouter_health(gateway=gateway):
        if answer is not None and inspect.isawaitable(answer):
            answer = await answer
        backends.update(answer or {})
    ready = all(state == "ok" for state in backends.values())
    providers = {name: _provider_health(p) for name, p in gateway.providers.items()}
    if not await _is_operator(request):
        for summary in providers.values():
            summary.pop("last_error", None)
    degraded = any(p["status"] in ("failing", "unconfigured") for p in providers.values())
    status = "unavailable" if not ready else "degraded" if degraded else "ok"
    body = {
        "status": status,
        "version": __version__,
        **backends,  # "store": "ok", "redis": "unavailable: …"
        "providers": providers,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


def _provider_health(provider: Any) -> dict[str, Any]:
    summary: dict[str, Any] = provider.health.summary()
    if not provider.config.api_key and summary["status"] != "failing":
        # its requests go out only with users' own keys (BYOK), or fail
        summary["status"] = "unconfigured"
        summary["last_error"] = "no api_key: only users' own keys (BYOK) can reach it"
    return summary


def _model_entry(gateway: Gateway, model_id: str, anthropic: bool) -> dict[str, Any]:
    model = gateway.models[model_id]
    owner = model.owned_by or model.routes[0].provider
    if anthropic:
        return {
            "type": "model",
            "id": model.id,
            "display_name": model.id,
            "created_at": "1970-01-01T00:00:00Z",
        }
    return {"id": model.id, "object": "model", "created": 0, "owned_by": owner}


def _gemini_model(gateway: Gateway, model_id: str) -> dict[str, Any]:
    model = gateway.models[model_id]
    entry: dict[str, Any] = {
        "name": f"models/{model.id}",
        "displayName": model.id,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    }
    if model.max_output_tokens:
        entry["outputTokenLimit"] = model.max_output_tokens
    return entry


def speaks_gemini(request: Request) -> bool:
    """google-genai names itself in ``x-goog-api-client``; Gemini keys come as
    ``x-goog-api-key`` or ``?key=``."""
    headers = request.headers
    return (
        request.url.path.startswith("/v1beta/")
        or "x-goog-api-client" in headers
        or "x-goog-api-key" in headers
        or "key" in request.query_params
    )


async def list_models(request: Request) -> Response:
    await require_principal(request)
    gateway: Gateway = request.app.state.gateway
    if speaks_gemini(request):
        return JSONResponse({"models": [_gemini_model(gateway, m) for m in gateway.models]})
    anthropic = "anthropic-version" in request.headers
    data = [_model_entry(gateway, model_id, anthropic) for model_id in gateway.models]
    if anthropic:
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return JSONResponse({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    await require_principal(request)
    gateway: Gateway = request.app.state.gateway
    model_id = request.path_params["model_id"]
    if speaks_gemini(request):
        model_id = model_id.removeprefix("models/")
        if model_id not in gateway.models:
            raise model_not_found(model_id)
        return JSONResponse(_gemini_model(gateway, model_id))
    if model_id not in gateway.models:
        raise model_not_found(model_id)
    return JSONResponse(_model_entry(gateway, model_id, "anthropic-version" in request.headers))


DASHBOARD = "/dashboard"  # the web dashboard's path (HTTP contract), when a plugin serves it


def root_for(has_dashboard: bool) -> Any:
    """``/``: a browser goes on to the dashboard; ``HEAD`` (uptime checks) gets 200; without a
    dashboard, a pointer to what is here."""

    async def root(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=200)
        if has_dashboard:
            return RedirectResponse(DASHBOARD, status_code=302)
        return JSONResponse(
            {"name": "LMRouter", "version": __version__, "api": "/v1", "health": "/health"}
        )

    return root


# -- assembly ---------------------------------------------------------------------------------

# The model endpoints: one path per dialect, each served by the same pipeline.
DIALECT_ROUTES = [
    ("/v1/chat/completions", openai_dialect.CHAT),
    ("/v1/embeddings", embeddings_dialect.EMBEDDINGS),
    ("/v1/messages", anthropic_dialect.MESSAGES),
    ("/v1/responses", responses_dialect.RESPONSES),
]


def create_app(gateway: Gateway) -> RouterApp:
    routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/v1/models", list_models),
        Route("/v1beta/models", list_models),
        Route("/v1/models/{model_id:path}:countTokens", gemini_count_tokens, methods=["POST"]),
        Route("/v1beta/models/{model_id:path}:countTokens", gemini_count_tokens, methods=["POST"]),
        Route("/v1/models/{model_id:path}", get_model),
        Route("/v1beta/models/{model_id:path}", get_model),
        Route("/v1/messages/count_tokens", messages_count_tokens, methods=["POST"]),
    ]
    endpoints = {path: ProxyEndpoint(gateway, dialect) for path, dialect in DIALECT_ROUTES}
    gemini = {
        method: ProxyEndpoint(gateway, dialect)
        for method, dialect in gemini_dialect.METHODS.items()
    }
    # Registered with Starlette too, so that other methods get a proper 405.
    routes += [Route(path, app, methods=["POST"]) for path, app in endpoints.items()]
    for extra in gateway.pm.hook.lmrouter_routes(gateway=gateway):
        routes.extend(extra or ())
    has_dashboard = any(getattr(r, "path", None) == DASHBOARD for r in routes)
    # Last: the address a server prints is where people point a browser first.
    routes.append(Route("/", root_for(has_dashboard), methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        # Everything loaded so far lives as long as the worker: keep it out of the garbage
        # collector's full passes, which otherwise take milliseconds under load.
        gc.freeze()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={RouterError: router_error, HTTPException: http_error},
    )
    app.state.gateway = gateway
    router = RouterApp(
        app, endpoints, gateway.guard.deadlines, gemini, gateway.config.server.log_requests
    )
    router.dashboard = DASHBOARD if has_dashboard else None
    return router


def serve_app() -> Any:
    """The factory granian workers import: the config path comes from ``$LMROUTER_CONFIG``."""
    from lmrouter import logs

    gateway = Gateway.from_path(Path(os.environ["LMROUTER_CONFIG"]))
    server = gateway.config.server
    logs.configure(server.log_level, os.environ.get("LMROUTER_LOG_FORMAT", server.log_format))
    return create_app(gateway)
