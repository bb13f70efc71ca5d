"""The collector ``router-otel`` exports to: an OTLP/HTTP receiver that decodes each batch and
counts its spans, so the report can show the traces really left the router (a benchmark of an
exporter that silently failed would measure nothing). It runs as its own process, outside the
router's process group: what a collector costs is not the router's overhead.

Run: ``python -m benchmarks.otlp_sink --port 4318``; ``GET /count`` answers the totals.
"""

from __future__ import annotations

import argparse

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TOTALS = web.AppKey("totals", dict)
EMPTY = ExportTraceServiceResponse().SerializeToString()


async def traces(request: web.Request) -> web.Response:
    batch = ExportTraceServiceRequest.FromString(await request.read())
    totals = request.app[TOTALS]
    totals["exports"] += 1
    totals["spans"] += sum(
        len(scope.spans) for resource in batch.resource_spans for scope in resource.scope_spans
    )
    return web.Response(body=EMPTY, content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    return web.json_response(request.app[TOTALS])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otlp_sink")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[TOTALS] = {"exports": 0, "spans": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
