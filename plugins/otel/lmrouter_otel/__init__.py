"""LMRouter plugin: OpenTelemetry traces exported over OTLP/HTTP.

One trace per request (continued from the caller's W3C ``traceparent``), with spans for
admission, each upstream attempt (whose ``traceparent`` is sent upstream) and the relay, and
GenAI semantic-convention attributes. Off until ``[otel] endpoint`` is set.
"""

from lmrouter_otel.plugin import OtelPlugin, OtelSection

__all__ = ["OtelPlugin", "OtelSection"]
