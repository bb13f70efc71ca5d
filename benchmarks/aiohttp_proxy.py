"""The baseline: the barest useful pass-through proxy, a raw ASGI app under granian (one worker,
same loop choice as the router) with one shared ``aiohttp.ClientSession`` (DESIGN.md §3).

It reads the request body, POSTs it to ``$BENCH_UPSTREAM`` + the request path with the upstream
key, and returns the upstream's bytes: whole for JSON, chunk by chunk for ``text/event-stream``.
No auth, no parsing, no usage, no hooks. What the router costs on top of this is its own.

Run: ``BENCH_UPSTREAM=http://127.0.0.1:9001 python -m benchmarks.aiohttp_proxy --port 9002``
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9001").rstrip("/")
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-upstream"}


class Proxy:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        message = await receive()
        body: bytes = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        assert self.session is not None
        async with self.session.post(
            UPSTREAM + scope["path"], data=body, headers=HEADERS
        ) as response:
            ctype = response.headers.get("content-type", "application/json").encode()
            if ctype.startswith(b"text/event-stream"):
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": [(b"content-type", ctype)],
                    }
                )
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await response.read()
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=60)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = Proxy()


def main(argv: list[str] | None = None) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    parser = argparse.ArgumentParser(prog="python -m benchmarks.aiohttp_proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    Granian(
        "benchmarks.aiohttp_proxy:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.auto,  # as lmrouter.server does: uvloop when installed
        log_level="warn",  # type: ignore[arg-type]
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
