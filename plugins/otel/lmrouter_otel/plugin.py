"""The hooks: a span per upstream attempt (the trace opened at the first), all ended at the end.

Spans are started and ended with explicit timestamps and never made current, so nothing here
touches context variables on the request path; the SDK's BatchSpanProcessor exports them from
its own thread, and the tracer provider is flushed and shut down with the server.
"""

from __future__ import annotations

import asyncio
import time
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lmrouter import hookimpl

if TYPE_CHECKING:
    from lmrouter import Attempt, Gateway, Outcome, RequestContext, Route, UpstreamRequest

SECTION = "otel"
STATE = "otel"  # ctx.state: this request's Trace
PROPAGATOR = TraceContextTextMapPropagator()
# The operation name of each dialect, in the GenAI conventions' words (others: ``chat``).
OPERATIONS = {
    "openai.embeddings": "embeddings",
    "gemini.embed": "embeddings",
    "gemini.batch_embed": "embeddings",
}


class OtelSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The OTLP/HTTP collector's base URL (spans go to ENDPOINT/v1/traces); unset: no traces.
    endpoint: str | None = None
    service_name: str = "lmrouter"
    # Record prompts (gen_ai.input.messages) on the request span. Off: prompts are the callers'.
    capture_content: bool = False
    # Extra headers for the collector (an API key of a hosted backend).
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    # The share of new traces recorded (0 to 1). A caller's traceparent decides for its own
    # request (parent-based), so a trace the caller samples stays whole across the router.
    sample_ratio: typing.Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0


# Why each choice of an answer ended, read from the answer the caller got, by dialect
# (gen_ai.response.finish_reasons). Streams other than Responses keep no final answer to read.
FINISH_REASONS: dict[str, typing.Callable[[dict[str, Any]], list[Any]]] = {
    "openai.chat": lambda doc: [c.get("finish_reason") for c in doc.get("choices") or ()],
    "anthropic.messages": lambda doc: [doc.get("stop_reason")],
    "openai.responses": lambda doc: [
        (doc.get("incomplete_details") or {}).get("reason") or doc.get("status")
    ],
    "gemini.generate": lambda doc: [c.get("finishReason") for c in doc.get("candidates") or ()],
}


def _answered(ctx: RequestContext, root: Span) -> None:
    """The answer's id and finish reasons on the request span, when there is an answer to read."""
    read = FINISH_REASONS.get(ctx.dialect)
    if read is None:
        return
    try:
        doc = ctx.final_answer()
    except ValueError:  # not JSON after all: nothing to say about it
        return
    if doc is None:
        return
    answer_id = doc.get("id") or doc.get("responseId")
    if isinstance(answer_id, str):
        root.set_attribute("gen_ai.response.id", answer_id)
    reasons = [r for r in read(doc) if isinstance(r, str)]
    if reasons:
        root.set_attribute("gen_ai.response.finish_reasons", reasons)


def _now_ns() -> int:
    return time.time_ns()


@dataclass(slots=True)
class Trace:
    """One request's spans: the request, admission while it lasts, the attempt under way."""

    root: Span
    context: Context
    admission: Span | None
    attempt: Span | None = None
    # The router's record of that attempt, where its upstream status lands. Kept here, not
    # looked up in ctx.attempts: an attempt that failed before sending has no span.
    record: Attempt | None = None


class OtelPlugin:
    api_version = ">=1.4, <2"  # lmrouter_attempt came in 1.4

    def __init__(self) -> None:
        self.section = OtelSection()
        self.provider: TracerProvider | None = None
        self.tracer: Any = None

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, OtelSection

    @hookimpl
    def lmrouter_startup(self, gateway: Gateway) -> None:
        self.section = section = gateway.config.section(SECTION)
        if not section.endpoint:
            return
        exporter = OTLPSpanExporter(
            endpoint=section.endpoint.rstrip("/") + "/v1/traces", headers=section.headers
        )
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": section.service_name}),
            sampler=ParentBased(TraceIdRatioBased(section.sample_ratio)),
        )
        # Batched in the SDK's own thread: a request never waits on the collector.
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("lmrouter_otel")

    @hookimpl
    async def lmrouter_shutdown(self, gateway: Gateway) -> None:
        provider, self.provider = self.provider, None
        if provider is not None:
            # Flushes what is batched; the exporter's HTTP call blocks, so not on the loop.
            await asyncio.to_thread(provider.shutdown)

    def _open(self, ctx: RequestContext, now: int) -> Trace:
        """The request's trace, opened at its first upstream attempt or at its end (a request
        refused at admission), whichever comes first: no admission hook of ours, so the other
        plugins' order does not matter and a refusal still makes a trace."""
        started = now - int((time.perf_counter() - ctx.started) * 1e9)
        parent = PROPAGATOR.extract(ctx.headers)  # the caller's traceparent, when it sent one
        operation = OPERATIONS.get(ctx.dialect, "chat")
        root = self.tracer.start_span(
            f"{operation} {ctx.model.id}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=started,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": ctx.model.id,
                "lmrouter.dialect": ctx.dialect,
                "lmrouter.request_id": ctx.request_id,
                "lmrouter.stream": ctx.stream,
            },
        )
        if ctx.output_limit:
            root.set_attribute("gen_ai.request.max_tokens", ctx.output_limit)
        if self.section.capture_content:
            root.set_attribute("gen_ai.input.messages", ctx.body.decode("utf-8", "replace"))
        context = set_span_in_context(root)
        # From the request's first byte (key check, body read, every admission hook) until it
        # went upstream or was refused.
        admission = self.tracer.start_span("admission", context=context, start_time=started)
        trace = ctx.state[STATE] = Trace(root, context, admission)
        return trace

    @hookimpl
    def lmrouter_attempt(self, ctx: RequestContext, route: Route, request: UpstreamRequest) -> None:
        if self.provider is None:
            return
        now = _now_ns()
        trace: Trace = ctx.state.get(STATE) or self._open(ctx, now)
        if trace.admission is not None:
            trace.admission.end(now)
            trace.admission = None
        if trace.attempt is not None:  # the previous attempt failed: this is a fallback
            _end_attempt(trace.attempt, trace.record, now)
        span = self.tracer.start_span(
            f"attempt {route.provider}",
            context=trace.context,
            kind=SpanKind.CLIENT,
            start_time=now,
            attributes={
                "gen_ai.provider.name": route.provider,
                "gen_ai.system": route.provider,
                "gen_ai.request.model": route.model,
                "lmrouter.attempt": len(ctx.attempts),
            },
        )
        trace.attempt, trace.record = span, ctx.attempts[-1]
        PROPAGATOR.inject(request.headers, context=set_span_in_context(span))

    # Last, so what metering plugins settle on the outcome is there.
    @hookimpl(trylast=True)
    def lmrouter_request_end(self, ctx: RequestContext, outcome: Outcome) -> None:
        if self.provider is None:
            return
        end = _now_ns()
        trace: Trace = ctx.state.pop(STATE, None) or self._open(ctx, end)
        if trace.admission is not None:  # refused, or failed before any attempt
            trace.admission.end(end)
        first_byte = end
        if outcome.first_byte_ms is not None:
            first_byte = end - int((outcome.total_ms - outcome.first_byte_ms) * 1e6)
        if trace.attempt is not None:
            _end_attempt(trace.attempt, trace.record, first_byte)
            if outcome.status in ("ok", "client_disconnected") and outcome.first_byte_ms:
                # From the first byte relayed to the last (for a stream, the whole stream).
                relay = self.tracer.start_span(
                    "relay", context=trace.context, start_time=first_byte
                )
                relay.set_attribute("lmrouter.outcome", outcome.status)
                relay.end(end)
        root = trace.root
        root.set_attribute("http.response.status_code", outcome.http_status)
        root.set_attribute("lmrouter.outcome", outcome.status)
        route = outcome.route
        if route is not None:
            root.set_attribute("gen_ai.provider.name", route.provider)
            root.set_attribute("gen_ai.system", route.provider)
            root.set_attribute("gen_ai.response.model", route.model)
        if outcome.status == "ok" and root.is_recording():
            _answered(ctx, root)
        usage = outcome.usage
        if usage is not None:
            root.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            root.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            if usage.estimated:
                root.set_attribute("lmrouter.usage.source", outcome.usage_source)
        if outcome.error is not None:
            root.set_attribute("error.type", outcome.error.code or str(outcome.error.status))
            if outcome.status != "refused":
                root.set_status(Status(StatusCode.ERROR, outcome.error.message))
        root.end(end)


def _end_attempt(span: Span, attempt: Attempt | None, end: int) -> None:
    if attempt is None:
        span.end(end)
        return
    if attempt.status is not None:
        span.set_attribute("http.response.status_code", attempt.status)
    if attempt.error is not None:
        span.set_attribute("error.type", str(attempt.status or "connection"))
        span.set_status(Status(StatusCode.ERROR, attempt.error))
    span.end(end)
