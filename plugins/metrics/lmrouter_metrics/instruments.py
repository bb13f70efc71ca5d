"""The metric families, and the per-route series each request updates.

Labels come only from the config (model ids, provider names, upstream model names) and from
small fixed sets (dialects, outcomes, HTTP statuses), so the number of series stays bounded
whatever callers send. A request looks its series up once (one dict lookup on a tuple) and then
updates children resolved in advance: ``Counter.labels(...)`` costs more than the update.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds. The router's own time is sub-millisecond; upstreams take from tens of ms to minutes.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

ROUTE_LABELS = ("model", "provider", "route", "dialect")


class Instruments:
    """Every family this plugin exports, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lmrouter_requests",
            "Requests that reached admission, by model, route, dialect, outcome and HTTP status "
            "(outcome: ok, refused, upstream_error, client_disconnected, error).",
            (*ROUTE_LABELS, "status", "code"),
            registry=registry,
        )
        self.refused = Counter(
            "lmrouter_requests_refused",
            "Requests answered before admission, by dialect, HTTP status and error code: no or "
            "unknown key (401), suspended account (403), bad body (400, 413), unknown model "
            "(404). Not labelled by model: a caller may send any name.",
            ("dialect", "status", "code"),
            registry=registry,
        )
        self.tokens = Counter(
            "lmrouter_tokens",
            "Tokens by type: input (prompt, cached included), output (completion), cached "
            "(the part of input read from the provider's cache).",
            ("model", "provider", "type"),
            registry=registry,
        )
        self.cost = Counter(
            "lmrouter_cost_usd",
            "List price of the usage in USD, whoever pays (billable=false: the caller's own "
            "provider key). Floating point: the ledger holds the exact amounts.",
            ("model", "provider", "billable"),
            registry=registry,
        )
        self.written_off = Counter(
            "lmrouter_credits_written_off_usd",
            "Cost beyond what the caller's credits could pay, written off (USD): a request "
            "that cost more than its hold. Should stay at zero; each one is also logged.",
            ("model", "provider"),
            registry=registry,
        )
        self.held = Counter(
            "lmrouter_usage_from_hold",
            "Requests charged their hold (the most they could have cost) because the client "
            "left before the provider's usage could be read.",
            ("model", "provider"),
            registry=registry,
        )
        self.upstream = Histogram(
            "lmrouter_upstream_seconds",
            "Time waited on upstreams (all attempts; a stream until its first chunk), labelled "
            "with the provider that answered last.",
            ("provider",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "lmrouter_overhead_seconds",
            "The router's own time until the response started (the x-lmrouter-overhead-ms "
            "header): everything but the waits on upstreams.",
            ("dialect",),
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "lmrouter_time_to_first_token_seconds",
            "Streams: from the request's arrival to its first chunk reaching the client.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "lmrouter_request_duration_seconds",
            "From the request's arrival to its end (the last byte of a stream).",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "lmrouter_fallbacks",
            "Routes abandoned for the next one (a request that succeeded on its third route "
            "counts two).",
            ("model",),
            registry=registry,
        )
        self.active_streams = Gauge(
            "lmrouter_active_streams",
            "Streaming requests admitted and not yet ended.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",  # with several workers: the sum over live ones
        )


class RouteSeries:
    """The children one (model, provider, upstream model, dialect) updates, resolved once."""

    __slots__ = (
        "_labels",
        "_requests",
        "by_status",
        "cached",
        "cost",
        "duration",
        "fallbacks",
        "held",
        "input",
        "output",
        "overhead",
        "ttft",
        "upstream",
        "written_off",
    )

    def __init__(self, m: Instruments, model: str, provider: str, route: str, dialect: str):
        self._requests = m.requests
        self.by_status: dict[tuple[str, int], Any] = {}
        self.input = m.tokens.labels(model, provider, "input")
        self.output = m.tokens.labels(model, provider, "output")
        self.cached = m.tokens.labels(model, provider, "cached")
        self.cost = {
            True: m.cost.labels(model, provider, "true"),
            False: m.cost.labels(model, provider, "false"),
        }
        self.written_off = m.written_off.labels(model, provider)
        self.held = m.held.labels(model, provider)
        self.upstream = m.upstream.labels(provider)
        self.overhead = m.overhead.labels(dialect)
        self.ttft = m.ttft.labels(model)
        self.duration = m.duration.labels(model)
        self.fallbacks = m.fallbacks.labels(model)
        self._labels = (model, provider, route, dialect)

    def requests(self, status: str, code: int) -> Any:
        child = self.by_status.get((status, code))
        if child is None:
            child = self._requests.labels(*self._labels, status, str(code))
            self.by_status[(status, code)] = child
        return child
