"""The request pipeline, top to bottom: read → authenticate → parse → route → admit → forward
(with fallback) → relay → ``request_end``. One ASGI endpoint per dialect; no Starlette Request or
Response objects on this path, because every microsecond here is the router's overhead.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from lmrouter import ir, plugins
from lmrouter.context import Attempt, Outcome, RequestContext, Status
from lmrouter.convert import ConvertingRelay, finish_converted
from lmrouter.drain import usage_after_cut
from lmrouter.errors import (
    CannotServe,
    RouterError,
    body_too_large,
    invalid_api_key,
    model_not_found,
)
from lmrouter.guard import body_timeout, client_address, too_many_failures
from lmrouter.headers import MISSING_KEY, Headers, api_key_from
from lmrouter.money import format_usd
from lmrouter.providers import UpstreamFailure, redact_bytes

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from lmrouter.config import Route
    from lmrouter.context import Principal
    from lmrouter.dialects import Dialect, StreamRelay
    from lmrouter.drain import Drains
    from lmrouter.gateway import Gateway
    from lmrouter.providers import Provider

log = structlog.get_logger("lmrouter.request")

_JSON = b"application/json"


class ProxyEndpoint:
    """The ASGI app behind one dialect's path (``/v1/chat/completions``, ``/v1/embeddings``…)."""

    def __init__(self, gateway: Gateway, dialect: Dialect) -> None:
        self.gateway = gateway
        self.dialect = dialect
        pm = gateway.pm
        self.authenticate = plugins.Hook(pm, "lmrouter_authenticate")
        self.admit = plugins.Hook(pm, "lmrouter_admit")
        self.upstream_key = plugins.Hook(pm, "lmrouter_upstream_key")
        self.attempt = plugins.Hook(pm, "lmrouter_attempt")
        self.request_end = plugins.Hook(pm, "lmrouter_request_end")
        self.request_refused = plugins.Hook(pm, "lmrouter_request_refused")
        self.max_body = int(gateway.config.server.max_body_mb * 1024 * 1024)
        self.routing = gateway.config.core.routing
        self.log_requests = gateway.config.server.log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id: str = scope["lmrouter.request_id"]
        headers = Headers.from_scope(scope)
        dialect = self.dialect
        ctx: RequestContext | None = None
        try:
            # The key first, from the headers alone: a caller without a valid one gets its 401
            # before the router reads (and holds) a byte of its body.
            principal = await self._authenticate(scope, headers)
            body = await self._read_body(receive, headers)
            parsed = dialect.parse(body)
            if dialect.model_in_path:
                parsed.doc["model"] = scope["lmrouter.model"]
                parsed = parsed._replace(model=scope["lmrouter.model"])
            model = self.gateway.models.get(parsed.model)
            if model is None:
                raise model_not_found(parsed.model)
            ctx = RequestContext(
                gateway=self.gateway,
                request_id=request_id,
                dialect=dialect.name,
                headers=headers,
                body=body,
                doc=parsed.doc,
                model=model,
                principal=principal,
                stream=parsed.stream,
                output_limit=parsed.max_output_tokens or model.max_output_tokens,
                n=parsed.n,
                prompt_chars=parsed.prompt_chars,
                started=started,
            )
            ctx.state["wants_usage"] = parsed.wants_usage
        except RouterError as err:
            await _send_error(send, dialect, err, request_id)
            self._log(request_id, None, Outcome("refused", err.status, error=err))
            if self.request_refused:
                try:
                    self.request_refused.start(dialect.name, err)
                except Exception:
                    log.exception("lmrouter_request_refused failed", request_id=request_id)
            return

        await self._run(ctx, receive, send)

    async def _run(
        self, ctx: RequestContext, receive: Any, send: Any, *, admitted: bool = False
    ) -> None:
        """Admission, forwarding, and ``request_end`` exactly once. A request an admission hook
        detached (:class:`~lmrouter.context.Detached`) is answered here and runs on in a task:
        this same method, already admitted, with the hook's ``send``."""
        request_id = ctx.request_id
        dialect = self.dialect
        outcome: Outcome | None = None
        cancelled = False
        try:
            if not admitted:
                try:
                    pending = self.admit.start(ctx)
                    if pending is not None:
                        await pending
                except RouterError as err:
                    outcome = Outcome("refused", err.status, error=err)
                    await _send_error(send, dialect, err, request_id, ctx.response_headers)
                    return
                if ctx.detached is not None:
                    await self._detach(ctx, send)
                    return  # the task ends the request
            outcome = await self._forward(ctx, receive, send)
        except RouterError as err:  # the request cannot be converted for its provider
            outcome = Outcome("error", err.status, error=err)
            await _send_error(send, dialect, err, request_id, ctx.response_headers)
        except asyncio.CancelledError:  # the server cancelled us: settle what was relayed
            cancelled = True
            if outcome is None:
                outcome = Outcome("client_disconnected", 499, route=ctx.route)
                if ctx.relay is not None and ctx.route is not None:
                    usage, outcome.usage_source = usage_after_cut(ctx, ctx.relay, False)
                    outcome.usage = usage
                    outcome.cost_pico = ctx.route.rates.cost(usage)
            raise
        except Exception:
            log.exception("request failed", request_id=request_id)
            internal = RouterError(500, "Internal error in the router.", code="internal_error")
            outcome = Outcome("error", 500, error=internal)
            await _send_error(send, dialect, internal, request_id, ctx.response_headers, quiet=True)
        finally:
            if outcome is not None:
                outcome.total_ms = (time.perf_counter() - ctx.started) * 1000
                if cancelled:  # a shielded task still settles exactly once
                    await asyncio.shield(self._end(ctx, outcome))
                else:
                    await self._end(ctx, outcome)

    async def _detach(self, ctx: RequestContext, send: Any) -> None:
        """Answer the caller with the hook's reply, then go on without them: their leaving
        changes nothing; only ``detached.cancel`` ends the request early."""
        detached = ctx.detached
        assert detached is not None

        async def receive() -> dict[str, Any]:
            await detached.cancel.wait()
            return {"type": "http.disconnect"}

        task = asyncio.create_task(
            self._run(ctx, receive, detached.send, admitted=True), name="lmrouter-detached"
        )
        self.gateway.detached.add(task)  # the server's stop waits for (or cancels) it
        task.add_done_callback(self.gateway.detached.discard)
        reply = detached.reply
        headers = [(b"x-request-id", ctx.request_id.encode()), *ctx.response_headers]
        try:
            if detached.events is None:
                headers += [(b"content-type", _JSON), (b"content-length", b"%d" % len(reply))]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": reply})
                return
            headers += [(b"content-type", self.dialect.stream_content_type)]
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for chunk in detached.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except (OSError, RuntimeError):  # the caller left: the work goes on
            pass

    async def _end(self, ctx: RequestContext, outcome: Outcome) -> None:
        try:
            pending = self.request_end.start(ctx, outcome)
            if pending is not None:
                await pending
        except Exception:
            log.exception("lmrouter_request_end failed", request_id=ctx.request_id)
        self._log(ctx.request_id, ctx, outcome)

    def _log(self, request_id: str, ctx: RequestContext | None, outcome: Outcome) -> None:
        if not self.log_requests:
            return
        usage = outcome.usage
        log.info(
            "request",
            request_id=request_id,
            dialect=self.dialect.name,
            principal=ctx.principal.id if ctx else None,
            user_id=ctx.principal.user_id if ctx else None,
            key_prefix=ctx.principal.key_prefix if ctx else None,
            billable=ctx.billable if ctx else None,
            model=ctx.model.id if ctx else None,
            provider=outcome.route.provider if outcome.route else None,
            status=outcome.http_status,
            outcome=outcome.status,
            error=outcome.error.code if outcome.error else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cost_pico=outcome.cost_pico,
            attempts=len(ctx.attempts) if ctx else 0,
            ttfb_ms=round(outcome.first_byte_ms, 2) if outcome.first_byte_ms else None,
            total_ms=round(outcome.total_ms, 2),
            overhead_ms=round(ctx.overhead_ms, 3) if ctx and ctx.overhead_ms else None,
        )

    async def _authenticate(self, scope: Scope, headers: Headers) -> Principal:
        guard = self.gateway.guard
        address = client_address(scope)
        wait = guard.key_failures.retry_after(address)
        if wait:
            raise too_many_failures(wait)
        api_key = api_key_from(headers, scope.get("query_string", b""))
        principal = None
        if api_key is not None:
            principal = await self.authenticate.first(self.gateway, api_key, headers)
        if principal is None:
            guard.key_failures.failed(address)
            raise invalid_api_key(MISSING_KEY if api_key is None else "Invalid API key.")
        return principal

    async def _read_body(self, receive: Any, headers: Headers) -> bytes:
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise body_too_large(self.max_body)
        deadlines = self.gateway.guard.deadlines
        task = deadlines.enter()
        try:
            message = await receive()
            body: bytes = message.get("body", b"")
            if not message.get("more_body"):
                return body
            parts = [body]
            size = len(body)
            while message.get("more_body"):
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise asyncio.CancelledError
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise body_too_large(self.max_body)
                parts.append(chunk)
            return b"".join(parts)
        except asyncio.CancelledError:
            if deadlines.leave(task):
                raise body_timeout(deadlines.seconds) from None
            raise
        finally:
            deadlines.leave(task)

    # -- routes and fallback ------------------------------------------------------------------

    async def _forward(self, ctx: RequestContext, receive: Any, send: Any) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.routing.deadline
        tried: dict[str, int] = {}
        failure: UpstreamFailure | None = None
        refused: CannotServe | None = None  # the first route whose provider had no form for it
        route: Route | None = None
        for route in ctx.model.routes:
            provider = self.gateway.providers[route.provider]
            if provider.name in tried:  # the same provider again: give it a moment
                pause = min(
                    self.routing.backoff * 2 ** (tried[provider.name] - 1),
                    self.routing.backoff_max,
                    deadline - loop.time(),
                )
                if pause > 0:
                    await asyncio.sleep(pause)
            tried[provider.name] = tried.get(provider.name, 0) + 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                failure = provider.timeout_failure("within the request deadline")
                break
            attempt = Attempt(provider.name, route.model)
            ctx.attempts.append(attempt)
            ctx.route = route
            try:
                outcome = await self._attempt(
                    ctx, provider, route, remaining, attempt, receive, send
                )
            except CannotServe as exc:  # nothing was sent: the next route may take it
                attempt.error = exc.message
                refused = refused or exc
                continue
            except UpstreamFailure as exc:
                attempt.status, attempt.error = exc.upstream_status, exc.message
                # The caller's own mistakes say nothing about the provider, nor do the answers
                # to a caller's own key (BYOK: a 401 there is about their key, not ours).
                if exc.retryable and ctx.billable:
                    provider.health.failed(exc.message)
                failure = exc
                if not exc.retryable:
                    break
                continue
            outcome.route = route
            if outcome.status == "ok" and ctx.billable:
                provider.health.ok()
            return outcome
        if failure is None:
            assert refused is not None
            raise refused  # no route could take it: the caller gets the first one's reason
        if len(ctx.attempts) > 1 and failure.retryable:
            message = f"All {len(ctx.attempts)} routes failed; last: {failure.message}"
        else:
            message = failure.message
        status, code = failure.status, _failure_code(failure)
        headers = {}
        if failure.upstream_status in PASSED_ON:
            # Transient load upstream: keep its status (and Retry-After) so that clients and
            # SDKs back off and retry as they would with the provider itself.
            status, code = failure.upstream_status, PASSED_ON[failure.upstream_status]
            if failure.retry_after:
                headers["retry-after"] = failure.retry_after
        err = RouterError(status, message, code=code, headers=headers)
        await _send_error(send, self.dialect, err, ctx.request_id, ctx.response_headers)
        return Outcome("upstream_error", err.status, error=err, route=route)

    async def _attempt(
        self,
        ctx: RequestContext,
        provider: Provider,
        route: Route,
        remaining: float,
        attempt: Attempt,
        receive: Any,
        send: Any,
    ) -> Outcome:
        ctx.billable = True  # each attempt decides afresh (a BYOK key may cover only some routes)
        key = await self.upstream_key.first(ctx, route) if self.upstream_key else None
        key = key or provider.config.api_key
        dialect = self.dialect
        native = provider.passes_through(ctx, route)
        if native:
            request = provider.prepare(ctx, route, key)
        elif dialect.kind in provider.converts and dialect.to_ir is not None:
            if ctx.ir is None:
                ctx.ir = dialect.to_ir(ctx.doc)  # raises RouterError 400 naming the field
                if ctx.output_limit and isinstance(ctx.ir, ir.ChatRequest):
                    # the limit that was held, in every converter's own field
                    ctx.ir.max_tokens = ctx.ir.max_tokens or ctx.output_limit
            request = provider.build(ctx, ctx.ir, route, key)
        else:
            raise UpstreamFailure(
                f"provider {provider.name!r} cannot serve {dialect.name} requests",
                status=400,
                retryable=True,
                upstream_status=None,
            )
        if self.attempt:  # resolved once: free when no plugin implements it
            pending = self.attempt.start(ctx, route, request)
            if pending is not None:
                await pending
        sent = time.perf_counter()
        try:
            response = await provider.open(request, stream=ctx.stream, budget=remaining)
        finally:
            ctx.upstream_s += time.perf_counter() - sent
        attempt.status = response.status
        if response.status >= 400:
            raise await provider.read_error(response, key)
        if ctx.stream:
            relay: StreamRelay
            if native:
                assert dialect.stream_relay is not None
                relay = dialect.stream_relay(ctx.state["wants_usage"], route.rates)
            else:
                assert dialect.renderer is not None
                renderer = dialect.renderer(ctx.doc, ctx.state["wants_usage"])
                parser = provider.stream_parser(ctx, ctx.ir)
                relay = ConvertingRelay(parser, renderer, dialect, route.rates)
            return await self._relay(ctx, provider, route, response, relay, receive, send, key)
        sent = time.perf_counter()
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise provider.connection_failure(exc) from None
        finally:
            response.release()
            ctx.upstream_s += time.perf_counter() - sent
        if native:
            body, usage, cost = dialect.finish_json(body, route.rates)
        else:
            answer = provider.parse(ctx, ctx.ir, body)
            body, usage, cost = finish_converted(dialect, answer, ctx.doc, route.rates)
        ctx.answer = body
        if dialect.cost_header:  # a dialect whose answers have no place for the cost
            ctx.response_headers.append((b"x-lmrouter-cost", format_usd(cost).encode()))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", ctx.request_id.encode()),
                    (b"x-lmrouter-overhead-ms", _overhead(ctx)),
                    *ctx.response_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        first_byte_ms = (time.perf_counter() - ctx.started) * 1000
        return Outcome(
            "ok",
            200,
            usage=usage,
            cost_pico=cost,
            first_byte_ms=first_byte_ms,
        )

    async def _relay(
        self,
        ctx: RequestContext,
        provider: Provider,
        route: Route,
        response: aiohttp.ClientResponse,
        relay: StreamRelay,
        receive: Any,
        send: Any,
        key: str,
    ) -> Outcome:
        """Stream to the client. Nothing is sent until the first upstream chunk arrives, so an
        upstream that fails before its first byte still falls back to the next route. An
        upstream error event is relayed with the provider key redacted (some quote it)."""
        content = response.content
        ctx.relay = relay
        sent = time.perf_counter()
        try:
            first = await content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.close()
            raise provider.connection_failure(exc) from None
        finally:
            ctx.upstream_s += time.perf_counter() - sent
        if not first:
            response.close()
            raise UpstreamFailure(
                f"{provider.name}: empty stream",
                status=502,
                retryable=True,
                upstream_status=response.status,
            )
        first_byte_ms = (time.perf_counter() - ctx.started) * 1000
        disconnected = asyncio.Event()
        drains = self.gateway.drains
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(
            _watch_disconnect(receive, disconnected, response, drains, task)
        )
        status: Status = "ok"
        error: RouterError | None = None
        client_gone = read_all = delivered = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", self.dialect.stream_content_type),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                        (b"x-request-id", ctx.request_id.encode()),
                        (b"x-lmrouter-overhead-ms", _overhead(ctx)),
                        *ctx.response_headers,
                    ],
                }
            )
            out = relay.feed(first)
            if relay.failed:
                out = redact_bytes(out, key, provider.config.api_key)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            try:
                while not relay.failed and (chunk := await content.readany()):
                    out = relay.feed(chunk)
                    if relay.failed:
                        out = redact_bytes(out, key, provider.config.api_key)
                    if out:
                        if disconnected.is_set():  # sends to a client gone are dropped
                            raise _ClientGone
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                out = relay.close()
                if relay.failed:
                    status = "upstream_error"  # the upstream's own error event was relayed
                    out = redact_bytes(out, key, provider.config.api_key)
                elif not relay.complete:
                    status = "upstream_error"
                    error = RouterError(
                        502, f"{provider.name} ended the stream early.", code="upstream_incomplete"
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                if disconnected.is_set():
                    # Gone after reading the end, and the read cut was of the upstream's EOF:
                    # served whole, when the relay has nothing left to say.
                    delivered = relay.complete and not relay.close()
                    raise _ClientGone from None
                status = "upstream_error"
                out = relay.close()
                if relay.failed:
                    out = redact_bytes(out, key, provider.config.api_key)
                else:  # the parser may have reported the cut itself
                    failure = provider.connection_failure(exc)
                    error = RouterError(failure.status, failure.message, code="upstream_error")
            if error is not None:
                out += relay.error(error)
            # Every byte of a complete stream, its end marker included, was sent already: a
            # client that closes as soon as it reads the marker (the SDKs do) has all of it.
            delivered = status == "ok" and not out
            await send({"type": "http.response.body", "body": out, "more_body": False})
        except (_ClientGone, OSError, RuntimeError):
            # The client went away (granian raises on send; the watcher bounds the reading).
            if not delivered:
                client_gone = True
                if status == "ok":  # the end (at least) did not reach the client
                    status = "client_disconnected"
        finally:
            watcher.cancel()
            timer = _timer_of(watcher)
            try:
                if client_gone and not relay.failed and not response.content.at_eof():
                    await drains.read_on(response, relay, timer, task)  # for the usage, in bounds
            finally:
                if client_gone or disconnected.is_set():
                    drains.finished(task, timer)
                read_all = response.content.at_eof()
                if relay.complete and read_all:
                    response.release()  # keep the connection for the next request
                else:
                    response.close()  # the provider must stop generating
        if disconnected.is_set() and status != "ok" and not relay.failed:
            status = "client_disconnected"  # our upstream read ended because the client left
        if client_gone or status == "client_disconnected":
            usage, source = usage_after_cut(ctx, relay, read_all)
        elif relay.usage is not None:
            usage, source = relay.usage, "provider"
        else:
            usage, source = relay.estimated_usage(ctx.prompt_chars), "estimated"
        cost = route.rates.cost(usage)
        http_status = {"ok": 200, "client_disconnected": 499}.get(status, 502)
        return Outcome(
            status,
            http_status,
            usage=usage,
            cost_pico=cost,
            error=error,
            first_byte_ms=first_byte_ms,
            usage_source=source,
        )


class _ClientGone(Exception):
    pass


async def _watch_disconnect(
    receive: Any,
    disconnected: asyncio.Event,
    response: aiohttp.ClientResponse,
    drains: Drains,
    request: asyncio.Task[Any],
) -> asyncio.TimerHandle | None:
    """Note the moment the client leaves, and from then on bound how long the upstream is read
    for its usage: it is closed when the bound runs out (at once when draining is off), so
    that the provider stops generating. Returns that timer."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return drains.client_left(response, request)


def _timer_of(watcher: asyncio.Task[asyncio.TimerHandle | None]) -> asyncio.TimerHandle | None:
    if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
        return watcher.result()
    return None


# Upstream statuses a caller sees as they are once every route failed with them last.
PASSED_ON = {429: "upstream_rate_limited", 503: "upstream_overloaded", 529: "upstream_overloaded"}


def _overhead(ctx: RequestContext) -> bytes:
    """The router's own time so far: all of it but the waits on upstreams (a header, so that
    benchmarks can read what the router adds without a baseline)."""
    own = time.perf_counter() - ctx.started - ctx.upstream_s
    ctx.overhead_ms = own * 1000
    return b"%.3f" % ctx.overhead_ms


def _failure_code(failure: UpstreamFailure) -> str:
    if failure.status == 504:
        return "upstream_timeout"
    if failure.status == 502:
        return "upstream_error"
    return "invalid_request"


async def _send_error(
    send: Any,
    dialect: Dialect,
    err: RouterError,
    request_id: str,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    *,
    quiet: bool = False,
) -> None:
    body = dialect.error_body(err)
    headers = [
        (b"content-type", _JSON),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    headers += extra
    try:
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:
        if not quiet:
            raise
