"""LMRouter plugin: Prometheus metrics at ``GET /metrics`` (operator key, or loopback).

Requests by model, provider, upstream model, dialect, outcome and HTTP status; tokens in, out and
cached; cost; upstream latency, router overhead, time to first token and request duration as
histograms; active streams; fallbacks taken. The default registry is exported too, so process
metrics and other plugins' gauges (the credits plugin's holds outstanding) appear beside them.
"""

from lmrouter_metrics.plugin import MetricsPlugin, MetricsSection

__all__ = ["MetricsPlugin", "MetricsSection"]
