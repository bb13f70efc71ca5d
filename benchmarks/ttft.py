"""Time to first token of a stream, as a client sees it: one keep-alive connection, one streaming
request after another, and for each the time to the response head (TTFB), to the first SSE event
that carries content (TTFT), and to ``data: [DONE]``.

TTFB alone can flatter a proxy that sends its headers before the upstream has answered, so the
figure that matters is TTFT: the body is de-chunked and scanned for the first ``"content":"x``.
It is a small asyncio client (one connection, so its own cost is constant across targets) and
prints one JSON line of percentiles in milliseconds.

Run: ``python -m benchmarks.ttft --url URL --key KEY --body JSON --duration 5``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

CONTENT = b'"content":"'
DONE = b"data: [DONE]"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Stats:
    def __init__(self) -> None:
        self.ttfb: list[float] = []
        self.ttft: list[float] = []
        self.total: list[float] = []
        self.errors = 0


async def one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, stats: Stats
) -> bool:
    """One request on the open connection; False when the connection cannot be reused."""
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    ttfb = time.perf_counter() - start
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    chunked = b"transfer-encoding: chunked" in lower
    body = bytearray()
    ttft = None
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size + 2)
            del body[-2:]
            if ttft is None and _has_content(body):
                ttft = time.perf_counter() - start
    else:
        at = lower.find(b"content-length:")
        if at < 0:
            return False
        length = int(lower[at + 15 : lower.find(b"\r\n", at)])
        body += await reader.readexactly(length)
        if _has_content(body):
            ttft = time.perf_counter() - start
    total = time.perf_counter() - start
    if status != 200 or ttft is None or DONE not in body:
        stats.errors += 1
        return b"connection: close" not in lower
    stats.ttfb.append(ttfb)
    stats.ttft.append(ttft)
    stats.total.append(total)
    return b"connection: close" not in lower


def _has_content(body: bytearray) -> bool:
    at = body.find(CONTENT)
    while at >= 0:
        nxt = at + len(CONTENT)
        if nxt < len(body) and body[nxt : nxt + 1] != b'"':
            return True
        at = body.find(CONTENT, nxt)
    return False


async def run(url: str, key: str, body: bytes, duration: float) -> Stats:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    stats = Stats()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        try:
            while time.monotonic() < deadline:
                if not await asyncio.wait_for(one(reader, writer, request, stats), 10):
                    break
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            stats.errors += 1
        finally:
            writer.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ttft", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    stats = asyncio.run(run(args.url, args.key, args.body.encode(), args.duration))

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 3)

    out = {
        "requests": len(stats.total) + stats.errors,
        "ok": len(stats.total),
        "errors": stats.errors,
        "duration_s": args.duration,
        **{
            f"{name}_p{q:g}": ms(values, q)
            for name, values in (("ttfb", stats.ttfb), ("ttft", stats.ttft), ("total", stats.total))
            for q in (50, 90, 99)
        },
    }
    print("TTFTJSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
