"""The floor for the soak: a trivial ASGI app under granian that streams 20 SSE events 20 ms
apart, with no upstream and no parsing. What granian itself keeps of abandoned streams.

Run: ``python -m benchmarks.slow_asgi --port 9003``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

EVENT = b'data: {"choices":[{"delta":{"content":"The quick brown fox "}}]}\n\n'
JSON = b'{"choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":1}}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    message = await receive()
    body = message.get("body", b"")
    if b'"stream":true' not in body:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": JSON})
        return
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    try:
        for _ in range(20):
            await send({"type": "http.response.body", "body": EVENT, "more_body": True})
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
    except OSError:  # the client left
        return


def main(argv: list[str] | None = None) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    p = argparse.ArgumentParser(prog="python -m benchmarks.slow_asgi")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    Granian(
        "benchmarks.slow_asgi:app",
        address="127.0.0.1",
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.auto,
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
