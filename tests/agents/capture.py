"""Record what the real agents send, into ``tests/fixtures/codex_request.json`` and
``tests/fixtures/claude_code_request.json`` (``make test`` replays them through every route).

    make agents && .venv/bin/python tests/agents/capture.py

Each agent does the task of :mod:`agent_runs` on each of its routes, through a recording proxy in
front of the router: every request as the router receives it (method, path, every header,
the body), keys included (they are the test's own). Run it again after changing the pins in
``tests/agents/package.json``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_runs

FIXTURES = agent_runs.ROOT / "tests" / "fixtures"
FILES = {"codex": "codex_request.json", "claude-code": "claude_code_request.json"}
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


@contextmanager
def recording_proxy(target: str, record: list[dict[str, Any]]) -> Iterator[str]:
    """An HTTP proxy on loopback in front of ``target`` that appends each request to ``record``
    and streams the answer back unchanged. WebSocket upgrades get the router's own answer."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        if body:
            try:
                entry["body"] = json.loads(body)
            except ValueError:
                entry["raw_body"] = body.decode(errors="replace")
        record.append(entry)
        if request.headers.get("upgrade", "").lower() == "websocket":
            # aiohttp's client cannot pass an upgrade on: answered as the router answers it
            # (tests/test_request_logs.py checks the router's own answer).
            entry["status"] = 426
            return web.json_response({"error": {"code": "websocket_not_supported"}}, status=426)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        session: aiohttp.ClientSession = state["session"]
        async with session.request(
            request.method, target + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            entry["status"] = upstream.status
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP | {"content-encoding"}:
                    response.headers[name] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def serve() -> None:
        state["session"] = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]
        started.set()

    async def stop() -> None:
        await state["runner"].cleanup()
        await state["session"].close()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def main() -> int:
    reason = agent_runs.missing()
    if reason is not None or agent_runs.stale():
        print(f"cannot capture: {reason or agent_runs.stale()}", file=sys.stderr)
        return 1
    failed = False
    with agent_runs.stack() as stack:
        assert stack.router is not None
        for agent in agent_runs.AGENTS:
            captured: list[dict[str, Any]] = []
            for route in agent.routes:
                record: list[dict[str, Any]] = []
                with (
                    tempfile.TemporaryDirectory(prefix="lmrouter-capture-") as tmp,
                    recording_proxy(stack.router.url, record) as url,
                ):
                    root = Path(tmp)
                    workdir = agent_runs.project(root)
                    stack.script(agent, route, workdir)
                    done = agent_runs.run(agent, route, url, root, workdir)
                ok = done.returncode == 0 and agent_runs.ANSWER in done.stdout
                failed |= not ok
                print(
                    f"{agent.name} on {route.model}: exit {done.returncode}, "
                    f"{len(record)} requests{'' if ok else ' FAILED'}"
                )
                if not ok:
                    print(done.stdout[-2000:], done.stderr[-4000:], sep="\n")
                captured += [{"route": route.model, **entry} for entry in record]
            fixture = {
                "_comment": (
                    f"Captured from the real {agent.package} {agent_runs.PINS[agent.package]} by "
                    "tests/agents/capture.py: every request it sent to the router (the test's "
                    f"own key) doing the task {agent_runs.PROMPT!r} with its default settings, on "
                    "each route, the fakes answering with one tool call then text. `route` is "
                    "the model it was told to use; replays put theirs in `model`."
                ),
                "package": agent.package,
                "version": agent_runs.PINS[agent.package],
                "captured": datetime.date.today().isoformat(),
                "requests": captured,
            }
            path = FIXTURES / FILES[agent.name]
            path.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {path.relative_to(agent_runs.ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
