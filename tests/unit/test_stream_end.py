"""How a stream's end is counted when the client leaves right after reading it.

The SDKs close the connection as soon as they read ``data: [DONE]``. If that happens before the
router sends the response's closing (empty) frame, granian raises on that last send; the client
had every byte, so the request is ``ok``, not ``client_disconnected`` (found by make
test-stress: under load, a complete stream was now and then counted as a 499 in the metrics)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from lmrouter import hookimpl
from lmrouter.testing.config import ADMIN_KEY, STATEFUL, config, provider, route
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI

HELLO = [{"role": "user", "content": "hi"}]


class Outcomes:
    def __init__(self) -> None:
        self.statuses: list[str] = []

    @hookimpl
    def lmrouter_request_end(self, ctx: Any, outcome: Any) -> None:
        self.statuses.append(outcome.status)


async def stream_once(
    app: Any, *, leave_after_done: bool, drop_last_frame: bool, model: str = "gpt"
) -> list[bytes]:
    """One streamed request straight through the ASGI app. The client "leaves" (the server
    reports ``http.disconnect``) once it has read ``[DONE]``; a send that finds it gone raises,
    as granian does."""
    done = asyncio.Event()
    sent: list[bytes] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            body = orjson.dumps({"model": model, "stream": True, "messages": HELLO})
            return {"type": "http.request", "body": body, "more_body": False}
        await (done if leave_after_done else asyncio.Event()).wait()  # or stays to the end
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        if done.is_set() and drop_last_frame and not message.get("more_body"):
            raise OSError("the client closed the connection")
        sent.append(message["body"])
        if b"[DONE]" in message["body"]:
            done.set()
            await asyncio.sleep(0)  # the disconnect is noticed before the last frame is sent

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {ADMIN_KEY}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    return sent


def test_a_client_gone_after_reading_the_whole_stream_was_served(lmrouter_app: Any) -> None:
    """Both ways the end can meet a client gone: the closing frame's send raises, or the
    router is still reading the upstream's end when it hears of the disconnect and cuts that
    read (at once here: ``drain_seconds = 0``)."""
    outcomes = Outcomes()

    async def scenario() -> list[list[bytes]]:
        fake = FakeOpenAI()
        fake.script("gpt-x", Behavior(text="Hello there", chunk_chars=3))
        # the end marker, then a pause before the body ends: the client leaves meanwhile
        fake.script("gpt-slow-end", Behavior(text="Hello there", chunk_chars=3, end_delay=5))
        await fake.start()
        text = config(
            providers={"up": provider("openai", fake.base_url)},
            models={"gpt": route("up", "gpt-x"), "slow-end": route("up", "gpt-slow-end")},
            disabled=list(STATEFUL),
            routing={"drain_seconds": 0},
        )
        try:
            async with lmrouter_app(text, plugins={"outcomes": outcomes}) as router:
                whole = await stream_once(router.app, leave_after_done=True, drop_last_frame=True)
                stays = await stream_once(router.app, leave_after_done=False, drop_last_frame=False)
                cut = await stream_once(
                    router.app, leave_after_done=True, drop_last_frame=True, model="slow-end"
                )
                return [whole, stays, cut]
        finally:
            await fake.stop()

    for sent in asyncio.run(scenario()):
        assert b"[DONE]" in b"".join(sent)
    assert outcomes.statuses == ["ok", "ok", "ok"]
