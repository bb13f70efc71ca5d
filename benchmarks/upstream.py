"""A minimal, fast fake OpenAI upstream: a raw asyncio protocol on uvloop, HTTP/1.1 keep-alive.

It answers any ``POST`` with a canned ``chat.completion`` (with ``usage``), or, when the JSON body
has ``"stream": true``, a canned SSE stream of ``--chunks`` events (plus a usage chunk when
``stream_options.include_usage`` is set, as OpenAI does) in chunked transfer encoding. Nothing is
generated per request, so it costs a few microseconds of CPU: the benchmark measures the proxies,
not this. ``--workers N`` forks N processes sharing the port with ``SO_REUSEPORT``.

Latency is fixed (``--first-byte-delay``, ``--chunk-delay``) or jittered (``--jitter``: a uniform
random extra of up to that many seconds before the first byte). A request for a model whose name
starts with ``bench-slow`` gets the *slow* profile instead: ``--slow-chunks`` events
``--slow-chunk-delay`` apart, which is how one upstream serves both the overhead runs and the
many-slow-streams run (every proxy passes the model name through, or maps it to
``bench-slow-upstream``).

Run: ``python -m benchmarks.upstream --port 9001 [--workers 1] [--chunks 20] [--chunk-delay 0]
[--first-byte-delay 0] [--jitter 0] [--slow-chunks 20] [--slow-chunk-delay 0.05]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
from typing import cast

import orjson

TEXT = "The quick brown fox jumps over the lazy dog. "


def completion_body() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "bench-upstream",
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TEXT * 4, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": 40,
                "total_tokens": 49,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )


def stream_events(chunks: int, usage: bool) -> list[bytes]:
    """The SSE events of one stream, each already framed as one HTTP/1.1 chunk."""
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-upstream",
        "system_fingerprint": "fp_bench",
    }
    docs: list[dict[str, object]] = [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    words = TEXT.split(" ")
    docs.extend(
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"content": words[i % 9] + " "}, "finish_reason": None}
            ],
        }
        for i in range(chunks)
    )
    docs.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        docs.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": chunks,
                    "total_tokens": 9 + chunks,
                },
            }
        )
    events = [b"data: " + orjson.dumps(doc) + b"\n\n" for doc in docs]
    events.append(b"data: [DONE]\n\n")
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events]


JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"x-request-id: req_bench\r\n\r\n"
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\nx-request-id: req_bench\r\n\r\n"
)
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class Profile:
    """How one kind of request is answered: the canned bytes and the pacing."""

    def __init__(
        self, chunks: int, chunk_delay: float, first_byte_delay: float, jitter: float
    ) -> None:
        body = completion_body()
        self.json = JSON_HEAD % len(body) + body
        self.stream = {u: stream_events(chunks, u) for u in (False, True)}
        self.chunk_delay = chunk_delay
        self.first_byte_delay = first_byte_delay
        self.jitter = jitter
        self.delayed = chunk_delay > 0 or first_byte_delay > 0 or jitter > 0

    def first_byte_wait(self) -> float:
        return self.first_byte_delay + (random.random() * self.jitter if self.jitter else 0.0)


class Canned:
    def __init__(self, normal: Profile, slow: Profile) -> None:
        self.normal = normal
        self.slow = slow


class Upstream(asyncio.Protocol):
    def __init__(self, canned: Canned) -> None:
        self.canned = canned
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a delayed answer is being written; later requests wait their turn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        buf = self.buf
        transport = self.transport
        while transport is not None and not self.busy:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                if b"transfer-encoding" in head:  # chunked request bodies: not needed here
                    transport.write(BAD)
                    transport.close()
                    return
                length = 0
            else:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop > 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self.respond(transport, body)

    def respond(self, transport: asyncio.Transport, body: bytes) -> None:
        profile = self.canned.slow if b'"bench-slow' in body else self.canned.normal
        stream = b'"stream"' in body and _wants_stream(body)
        if not stream:
            if profile.delayed:
                self.busy = True
                asyncio.get_running_loop().create_task(self.delayed_json(transport, profile))
            else:
                transport.write(profile.json)
            return
        events = profile.stream[_wants_usage(body)]
        if profile.delayed:
            self.busy = True
            asyncio.get_running_loop().create_task(self.delayed_stream(transport, profile, events))
            return
        transport.write(SSE_HEAD)
        for event in events:  # one send per event, as a model server would
            transport.write(event)
        transport.write(LAST_CHUNK)

    async def delayed_json(self, transport: asyncio.Transport, profile: Profile) -> None:
        await asyncio.sleep(profile.first_byte_wait())
        if not transport.is_closing():
            transport.write(profile.json)
        self.busy = False
        self.process()

    async def delayed_stream(
        self, transport: asyncio.Transport, profile: Profile, events: list[bytes]
    ) -> None:
        wait = profile.first_byte_wait()
        if wait > 0:
            await asyncio.sleep(wait)
        transport.write(SSE_HEAD)
        for i, event in enumerate(events):
            if transport.is_closing():
                return
            if i and profile.chunk_delay > 0:
                await asyncio.sleep(profile.chunk_delay)
            transport.write(event)
        transport.write(LAST_CHUNK)
        self.busy = False
        self.process()


def _wants_stream(body: bytes) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("stream") is True


def _wants_usage(body: bytes) -> bool:
    if b"include_usage" not in body:
        return False
    options = orjson.loads(body).get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def serve(host: str, port: int, canned: Canned) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(canned), host, port, reuse_port=True, backlog=4096
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between events")
    parser.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--jitter", type=float, default=0.0, help="up to this many more seconds, uniform random"
    )
    parser.add_argument("--slow-chunks", type=int, default=20, help="model bench-slow*: events")
    parser.add_argument(
        "--slow-chunk-delay", type=float, default=0.05, help="model bench-slow*: seconds apart"
    )
    args = parser.parse_args(argv)
    canned = Canned(
        Profile(args.chunks, args.chunk_delay, args.first_byte_delay, args.jitter),
        Profile(args.slow_chunks, args.slow_chunk_delay, args.first_byte_delay, args.jitter),
    )
    children: list[int] = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, canned))
    except ImportError:
        asyncio.run(serve(args.host, args.port, canned))
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
