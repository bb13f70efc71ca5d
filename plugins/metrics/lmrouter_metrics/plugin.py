"""The hooks: ``/metrics``, the active-stream gauge at admission, everything else at the end."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.responses import Response
from starlette.routing import Route

from lmrouter import hookimpl, require_principal
from lmrouter_metrics import access
from lmrouter_metrics.instruments import Instruments, RouteSeries

if TYPE_CHECKING:
    from starlette.requests import Request

    from lmrouter import Gateway, Outcome, RequestContext, RouterError

SECTION = "metrics"
STREAM = "metrics.stream"  # ctx.state: the gauge child an admitted stream raised
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Let requests from this machine read /metrics without a key. Turn off behind a reverse
    # proxy on the same host: every request would look local.
    allow_loopback: bool = True


class MetricsPlugin:
    api_version = ">=1.3, <2"  # the hook API versions this plugin is written for
    after = ["credits"]  # credits settle before metrics count a request's end

    def __init__(self) -> None:
        # A registry of our own: two routers in one process (tests) never collide, and the
        # default registry (process metrics, other plugins' gauges) is exported beside it.
        self.registry = CollectorRegistry()
        self.m = Instruments(self.registry)
        self.section = MetricsSection()
        self._series: dict[tuple[str, str, str, str], RouteSeries] = {}
        self._streams: dict[str, Any] = {}

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, MetricsSection

    @hookimpl
    def lmrouter_startup(self, gateway: Gateway) -> None:
        self.section = gateway.config.section(SECTION)

    @hookimpl
    def lmrouter_shutdown(self, gateway: Gateway) -> None:
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # its live gauges stop counting

    @hookimpl
    def lmrouter_routes(self, gateway: Gateway) -> list[Route]:
        return [Route("/metrics", self.endpoint, methods=["GET"])]

    # Last, so a stream refused by an earlier synchronous check (a rate limit) is never counted;
    # one refused later (an async credit hold) is counted until its request_end, moments after.
    @hookimpl(trylast=True)
    def lmrouter_admit(self, ctx: RequestContext) -> None:
        if ctx.stream:
            child = self._streams.get(ctx.model.id)
            if child is None:
                child = self._streams[ctx.model.id] = self.m.active_streams.labels(ctx.model.id)
            child.inc()
            ctx.state[STREAM] = child

    @hookimpl
    def lmrouter_request_refused(self, dialect: str, error: RouterError) -> None:
        self.m.refused.labels(dialect, str(error.status), error.code or "").inc()

    # Last, so that what metering plugins set on the outcome (``written_off_pico``) is here.
    @hookimpl(trylast=True)
    def lmrouter_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        stream = ctx.state.pop(STREAM, None)
        if stream is not None:
            stream.dec()
        route = outcome.route
        key = (
            ctx.model.id,
            route.provider if route else "",
            route.model if route else "",
            ctx.dialect,
        )
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = RouteSeries(self.m, *key)
        series.requests(outcome.status, outcome.http_status).inc()
        usage = outcome.usage
        if usage is not None:
            if usage.prompt_tokens:
                series.input.inc(usage.prompt_tokens)
            if usage.completion_tokens:
                series.output.inc(usage.completion_tokens)
            if usage.cached_tokens:
                series.cached.inc(usage.cached_tokens)
        if outcome.cost_pico:
            series.cost[ctx.billable].inc(outcome.cost_pico / 1e12)
        if outcome.written_off_pico:
            series.written_off.inc(outcome.written_off_pico / 1e12)
        if outcome.usage_source == "hold":
            series.held.inc()
        if ctx.attempts:
            series.upstream.observe(ctx.upstream_s)
            if len(ctx.attempts) > 1:
                series.fallbacks.inc(len(ctx.attempts) - 1)
        if ctx.overhead_ms is not None:
            series.overhead.observe(ctx.overhead_ms / 1000)
        if ctx.stream and outcome.first_byte_ms is not None:
            series.ttft.observe(outcome.first_byte_ms / 1000)
        series.duration.observe(outcome.total_ms / 1000)

    async def endpoint(self, request: Request) -> Response:
        principal = await require_principal(request) if access.has_key(request.headers) else None
        client = request.client.host if request.client else None
        access.check(principal, client, self.section.allow_loopback)
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROCESS_ENV):  # several workers: every worker's files, summed
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry) + generate_latest(REGISTRY)
