"""Nothing a request leaves behind outlives it.

In-process: the real app (``create_app``) driven through ASGI by a small client that behaves like
granian (``send`` raises once the client has gone, ``receive`` answers ``http.disconnect``), in
front of the faithful fake OpenAI on loopback. After a few thousand requests of one shape, the
counts of the router's own objects and of live tasks must be back where they started. Nothing is
timed: a leak shows as objects that are still reachable after a full collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import uvloop

from lmrouter.app import RouterApp
from lmrouter.context import RequestContext
from lmrouter.headers import Headers
from lmrouter.testing import config as kit
from lmrouter.testing import operator
from lmrouter.testing.app import in_process
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI

KEY = "sk-leak-test"
BARE = ["accounts", "credits", "ratelimit", "stripe", "dashboard", "metrics"]
FULL = ["stripe", "dashboard", "metrics"]  # accounts + credits + ratelimit on


def config(base: str, disabled: list[str], drain: float) -> str:
    return kit.config(
        admin=KEY,
        disabled=disabled,
        storage={"url": "sqlite:///router.db"},
        ratelimit={"rpm": 100000000, "tpm": 100000000000, "max_concurrent": 100000},
        server={"log_requests": False},
        routing={"drain_seconds": drain},
        providers={"openai": kit.provider("openai", base, "sk-upstream")},
        models={
            "m": kit.model(
                kit.route("openai", "gpt-4o-mini", price={"input": 1, "output": 2}),
                max_output_tokens=100,
            )
        },
    )


# Objects of the request path: one of each per request while it runs, none once it has ended.
TRACKED = (RequestContext, Headers, aiohttp.ClientResponse, asyncio.Task)


def counts() -> dict[str, int]:
    gc.collect()
    found = dict.fromkeys((t.__name__ for t in TRACKED), 0)
    for obj in gc.get_objects():
        for kind in TRACKED:
            if isinstance(obj, kind):
                found[kind.__name__] += 1
    return found


class Client:
    """One ASGI request as granian presents it. ``leave`` is when the client hangs up:
    ``"after_first_chunk"`` (a user pressing stop), ``"before_first_byte"``, or ``None``."""

    def __init__(self, body: bytes, leave: str | None, key: str = KEY) -> None:
        self.body = body
        self.key = key
        self.leave = leave
        self.gone = asyncio.Event()
        self.sent_body = False
        self.status: int | None = None
        self.chunks: list[bytes] = []
        if leave == "before_first_byte":
            self.gone.set()

    async def receive(self) -> dict[str, Any]:
        if not self.sent_body:
            self.sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone.is_set() and self.leave is not None:
            raise OSError("client disconnected")  # what granian's send does
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.chunks.append(message.get("body", b""))
            if self.leave == "after_first_chunk":
                self.gone.set()

    def scope(self, path: str) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [
                (b"authorization", f"Bearer {self.key}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
            ],
            "query_string": b"",
            "lmrouter.request_id": "",
        }


@contextlib.asynccontextmanager
async def router(
    tmp_path: Path, behavior: Behavior, disabled: list[str] = BARE, drain: float = 30
) -> AsyncIterator[tuple[RouterApp, FakeOpenAI]]:
    """The app and its upstream, both in this event loop (uvloop, as under granian)."""
    fake = FakeOpenAI()
    fake.script("gpt-4o-mini", behavior)
    await fake.start()
    async with in_process(config(fake.base_url, disabled, drain), tmp_path) as running:
        yield running.app, fake
        await fake.stop()


def run(coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def chat(stream: bool) -> bytes:
    return orjson.dumps(
        {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi " * 20}]}
    )


async def run_many(
    app: RouterApp, make: Callable[[], Client], n: int, *, cancel_after: float | None = None
) -> list[Client]:
    """``n`` requests, 16 at a time, as a busy server would see them."""
    clients: list[Client] = []
    gate = asyncio.Semaphore(16)

    async def one() -> None:
        async with gate:
            client = make()
            clients.append(client)
            call = app(client.scope("/v1/chat/completions"), client.receive, client.send)
            if cancel_after is None:
                await call
                return
            task = asyncio.ensure_future(call)
            await asyncio.sleep(cancel_after)
            task.cancel()  # what granian does with a request whose client has gone
            with pytest.raises(asyncio.CancelledError):
                await task

    await asyncio.gather(*(one() for _ in range(n)))
    return clients


async def assert_no_growth(
    app: RouterApp,
    make: Callable[[], Client],
    *,
    n: int = 2000,
    fake: FakeOpenAI | None = None,
    check: Callable[[list[Client]], None] | None = None,
    **kw: Any,
) -> list[Client]:
    """With ``fake``, every object counts (the fake's own records are forgotten before each
    census, and the clients before the last): no kind of object may grow by one per request,
    the router's own or a library's. Then the clients are not returned: ``check`` sees them."""
    await run_many(app, make, 50, **kw)  # warm-up: pools, caches, lazy imports
    if fake is not None:
        fake.reset()
    before = counts()
    before_all = len(gc.get_objects())
    clients = await run_many(app, make, n, **kw)
    await asyncio.sleep(0.05)  # let closed connections call connection_lost
    if check is not None:
        check(clients)
    if fake is not None:
        fake.reset()
        clients.clear()
    after = counts()
    grown = {k: after[k] - before[k] for k in after if after[k] - before[k] > 5}
    if fake is not None and len(gc.get_objects()) - before_all > n // 20:
        grown["all objects"] = len(gc.get_objects()) - before_all
    assert not grown, f"after {n} requests these are still alive: {grown}"
    return clients


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "drain",
    [0, 0.005, 30],
    ids=["upstream-cut-at-once", "cut-while-draining", "drained-to-the-end"],
)
def test_streams_abandoned_after_the_first_chunk_leave_nothing(
    tmp_path: Path, drain: float
) -> None:
    # The client is gone while the relay waits for the next upstream chunk (20 chunks, 2 ms
    # apart). The router reads on for the usage within [routing] drain_seconds, then closes the
    # upstream, and nothing of the request may stay: whichever way the upstream ends.
    async def scenario() -> None:
        behavior = Behavior(text="x" * 80, chunk_delay=0.002)
        async with router(tmp_path, behavior, drain=drain) as (app, fake):
            clients = await assert_no_growth(app, lambda: Client(chat(True), "after_first_chunk"))
            assert all(c.status == 200 and len(c.chunks) == 1 for c in clients)
            cut = len(fake.disconnects)
            if drain == 30:
                assert cut == 0, "read to the end for the usage"
            else:
                assert cut >= 1500, "the upstream was closed when the bound ran out"

    run(scenario())


@pytest.mark.timeout(300)
def test_streams_read_to_the_end_leave_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with router(tmp_path, Behavior(text="x" * 40, chunk_delay=0.001)) as (app, _):
            clients = await assert_no_growth(app, lambda: Client(chat(True), None), n=1000)
            assert all(c.chunks[-1] == b"" or b"[DONE]" in b"".join(c.chunks) for c in clients)

    run(scenario())


@pytest.mark.timeout(300)
def test_clients_gone_before_the_first_byte_leave_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with router(tmp_path, Behavior(text="x" * 40, chunk_delay=0.001)) as (app, _):
            clients = await assert_no_growth(app, lambda: Client(chat(True), "before_first_byte"))
            assert all(c.status is None for c in clients), "nothing reached a client that had left"

    run(scenario())


@pytest.mark.timeout(300)
def test_upstreams_failing_mid_stream_leave_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with router(
            tmp_path, Behavior(text="x" * 40, chunk_delay=0.001, drop_after_chunks=3)
        ) as (app, _):
            clients = await assert_no_growth(app, lambda: Client(chat(True), None))
            assert all(b"upstream" in b"".join(c.chunks) for c in clients), (
                "each got an error event"
            )

    run(scenario())


@pytest.mark.timeout(300)
def test_cancelled_non_streaming_requests_leave_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with router(tmp_path, Behavior(text="x" * 40, first_byte_delay=0.05)) as (app, _):
            clients = await assert_no_growth(
                app, lambda: Client(chat(False), "before_first_byte"), n=500, cancel_after=0.01
            )
            assert all(c.status is None for c in clients)

    run(scenario())


@pytest.mark.timeout(300)
def test_the_full_plugin_set_leaves_nothing_behind(tmp_path: Path) -> None:
    """Accounts, credits and rate limits on, a user's key, and every way a request can end."""
    path = tmp_path / "lmrouter.toml"
    path.write_text(config("http://127.0.0.1:9", FULL, 30))
    key = operator.user_with_key(path, "leak@example.com")
    operator.cli(path, "credits", "grant", "leak@example.com", "1000")
    kinds = [(True, "after_first_chunk"), (True, None), (False, None), (True, "before_first_byte")]
    made = itertools.count()

    def mixed() -> Client:
        stream, leave = kinds[next(made) % len(kinds)]
        return Client(chat(stream), leave, key)

    async def scenario() -> None:
        behavior = Behavior(text="x" * 40, chunk_delay=0.002)

        def check(clients: list[Client]) -> None:
            assert {c.status for c in clients} == {200, None}

        async with router(tmp_path, behavior, FULL) as (app, fake):
            await assert_no_growth(app, mixed, n=1000, fake=fake, check=check)

    run(scenario())
