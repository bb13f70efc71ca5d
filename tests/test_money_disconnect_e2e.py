"""A streaming client that hangs up pays what the request cost (issue #19, finding 2): the real
router (granian) with the accounts and credits plugins, a fake OpenAI-compatible upstream that
sends its usage only after the text, and a client that leaves after the text.

Output is USD 2 per 1M tokens (2e6 pico-USD a token); input is free."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from lmrouter.testing import operator
from lmrouter.testing.operator import query
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.testing.server import RouterServer

HELLO = [{"role": "user", "content": "Hello!"}]
REASONING = 20_000
COMPLETION = 20_100  # reasoning included
USAGE_DELAY = 1.0  # seconds between the text and the usage of ``late-x``
PAD = 4096  # characters of text per chunk of the flooding upstream


def chunk(model: str, delta: dict, finish: str | None = None) -> bytes:
    event = {
        "id": "chatcmpl-late",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


def usage_chunk(model: str) -> bytes:
    event = {
        "id": "chatcmpl-late",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": COMPLETION,
            "total_tokens": 10 + COMPLETION,
            "completion_tokens_details": {"reasoning_tokens": REASONING},
        },
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


class Upstream:
    """Ten content chunks, then per model: ``late-x`` sends the usage a second later;
    ``silent-x`` sends nothing more until the router hangs up;
    ``flood-x`` sends text without end and no usage."""

    def __init__(self) -> None:
        self.hung_up: list[str] = []  # models whose stream the router closed
        self.base_url = ""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(chunk(model, {"role": "assistant", "content": ""}))
            for _ in range(10):
                await response.write(chunk(model, {"content": "word "}))
            if model == "late-x":
                # the scenario itself (issue #19): reasoning models report usage a while after
                # the text; by then the client has left and the router has noticed
                await asyncio.sleep(USAGE_DELAY)
                await response.write(chunk(model, {}, "stop"))
                await response.write(usage_chunk(model))
                await response.write(b"data: [DONE]\n\n")
            elif model == "silent-x":
                await asyncio.Future()  # until the router hangs up (cancels this handler)
            else:
                while True:
                    await response.write(chunk(model, {"content": "x" * PAD}))
        except (asyncio.CancelledError, ConnectionResetError):
            self.hung_up.append(model)
            raise
        return response

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[str]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def start() -> web.ServerRunner:
            runner = web.ServerRunner(web.Server(self.handle, handler_cancellation=True))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.base_url = f"http://127.0.0.1:{port}/v1"
            return runner

        runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        try:
            yield self.base_url
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


SQLITE = "sqlite:///disconnect.db"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc, scope="module")  # one router per store: SQLite, PostgreSQL


def config(upstream: str, store: str = SQLITE) -> str:
    models = "".join(
        f"""
[[models]]
id = "{name}"
max_output_tokens = 30000
  [[models.routes]]
  provider = "up"
  model = "{name}-x"
  price = {{ input = 0, output = 2 }}
"""
        for name in ("late", "silent", "flood")
    )
    return f"""
[plugins]
disabled = ["ratelimit"]
[storage]
url = "{store}"
[credits]
flush_interval = 0.02
[routing]
drain_seconds = 3
drain_mb = 0.25

[providers.up]
type = "openai"
base_url = "{upstream}"
api_key = "sk-upstream"
{models}"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def store(module_postgres_url: str | None) -> str:
    return module_postgres_url or SQLITE


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, store: str
) -> Iterator[RouterServer]:
    workdir = tmp_path_factory.mktemp("disconnect")
    with RouterServer(config(upstream.base_url, store), workdir=workdir) as server:
        yield server


@pytest.fixture(scope="module")
def db(router: RouterServer, store: str) -> Path | str:
    """What operator.query reads: the SQLite file, or the PostgreSQL database's URL."""
    return router.workdir / "disconnect.db" if store == SQLITE else store


def within(seconds: float, attempt: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not attempt():
        assert time.monotonic() < deadline, f"not within {seconds}s"
        time.sleep(0.05)


def read_text_and_leave(router: RouterServer, key: str, model: str) -> str:
    """Stream ``model``, read the ten content chunks, and close the connection."""
    body = {"model": model, "messages": HELLO, "stream": True}
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{router.openai_url}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        ) as response,
    ):
        assert response.status_code == 200
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: {")
            if received == 11:  # the role, then ten words
                break
        return response.headers["x-request-id"]


def record(db: Path | str, request_id: str) -> dict:
    columns = (
        "status",
        "completion_tokens",
        "reasoning_tokens",
        "estimated",
        "usage_source",
        "cost_pico",
        "charged_pico",
    )

    def written() -> bool:
        return bool(query(db, "SELECT 1 FROM usage WHERE request_id = ?", (request_id,)))

    within(15, written)
    [row] = query(db, f"SELECT {', '.join(columns)} FROM usage WHERE request_id = ?", (request_id,))
    return dict(zip(columns, row, strict=True))


def test_usage_that_comes_after_the_client_left_is_charged(
    router: RouterServer, upstream: Upstream, db: Path | str
) -> None:
    key = operator.user_with_key(router.config_path, "late@example.com")
    operator.cli(router.config_path, "credits", "grant", "late@example.com", "1")
    request_id = read_text_and_leave(router, key, "late")
    found = record(db, request_id)
    assert found == {
        "status": "client_disconnected",
        "completion_tokens": COMPLETION,
        "reasoning_tokens": REASONING,
        "estimated": 0,
        "usage_source": "provider",
        "cost_pico": COMPLETION * 2 * 10**6,  # USD 0.0402
        "charged_pico": COMPLETION * 2 * 10**6,
    }
    assert "late-x" not in upstream.hung_up  # read to its end, the connection kept


@pytest.mark.parametrize("model", ["silent", "flood"])
def test_usage_that_cannot_be_learned_in_bounds_charges_the_hold(
    router: RouterServer, upstream: Upstream, model: str, db: Path | str
) -> None:
    """``silent``: past ``drain_seconds``; ``flood``: past ``drain_mb``. Either way the router
    hangs up on the provider and charges the most the request could have cost."""
    email = f"{model}@example.com"
    key = operator.user_with_key(router.config_path, email)
    operator.cli(router.config_path, "credits", "grant", email, "1")
    request_id = read_text_and_leave(router, key, model)
    found = record(db, request_id)
    assert found["status"] == "client_disconnected"
    assert found["usage_source"] == "hold" and found["estimated"] == 1
    assert found["completion_tokens"] == 30_000  # the model's max_output_tokens, as held
    assert found["charged_pico"] == found["cost_pico"] == 30_000 * 2 * 10**6
    within(5, lambda: f"{model}-x" in upstream.hung_up)  # no connection left behind
    metrics = httpx.get(f"{router.url}/metrics").text
    assert f'lmrouter_usage_from_hold_total{{model="{model}",provider="up"}} 1.0' in metrics


def test_a_drain_under_way_at_shutdown_is_ended_and_settled(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Stopping the router does not wait out ``drain_seconds``: the drain is ended, its request
    charged the hold, and the record written before the store closes."""
    text = config(upstream.base_url).replace("drain_seconds = 3", "drain_seconds = 600")
    server = RouterServer(text, workdir=tmp_path)
    with server:
        key = operator.user_with_key(server.config_path, "stop@example.com")
        operator.cli(server.config_path, "credits", "grant", "stop@example.com", "1")
        hung_up = upstream.hung_up.count("silent-x")
        request_id = read_text_and_leave(server, key, "silent")
        assert server.stop() == 0
    assert upstream.hung_up.count("silent-x") == hung_up + 1
    found = record(tmp_path / "disconnect.db", request_id)
    assert found["status"] == "client_disconnected" and found["usage_source"] == "hold"
    assert found["charged_pico"] == 30_000 * 2 * 10**6
