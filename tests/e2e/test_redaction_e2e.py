"""A provider key never reaches a client, whatever the upstream quotes back: in a non-JSON error
body however long, and in error events in the middle of a stream, in every dialect and for the
operator's key as for a caller's own (BYOK). Against the real router and an upstream that, like
some vendors, repeats the key it was given in its errors."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from lmrouter.testing import config as kit
from lmrouter.testing.server import RouterServer

ADMIN = "sk-admin-redaction-e2e"
UPSTREAM_KEY = "sk-upstream-REDACTME-0123456789abcdef0123456789"
BYOK_KEY = "sk-users-own-REDACTME-fedcba9876543210fedcba98"
HELLO = [{"role": "user", "content": "Hello!"}]


def _key_of(request: web.Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") or request.headers.get("x-api-key", "")


def _sse(data: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def _openai(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    key = _key_of(request)
    if body["model"] == "plain-error":
        # a proxy's HTML-ish page: the key straddles the first 300 characters
        return web.Response(
            status=500, text="x" * 280 + f" bad key {key} end", content_type="text/plain"
        )
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    delta = {"role": "assistant", "content": "Hel"}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
    await response.write(
        _sse({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    )
    error = {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error"}
    await response.write(_sse({"error": {**error, "param": None, "code": "invalid_api_key"}}))
    await response.write_eof()
    return response


async def _anthropic(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    key = _key_of(request)
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    await response.write(_sse({"type": "message_start", "message": message}, "message_start"))
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    await response.write(_sse(block, "content_block_start"))
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hel"},
    }
    await response.write(_sse(delta, "content_block_delta"))
    error = {"type": "error", "error": {"type": "api_error", "message": f"invalid x-api-key {key}"}}
    await response.write(_sse(error, "error"))
    await response.write_eof()
    return response


async def _responses(request: web.Request) -> web.StreamResponse:
    """OpenAI's Responses stream: some text, then an ``error`` event quoting the key."""
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    created = {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}
    await response.write(_sse(created, "response.created"))
    delta = {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hel"}
    await response.write(_sse(delta, "response.output_text.delta"))
    error = {"type": "error", "code": "server_error", "message": f"bad key {key}", "param": None}
    await response.write(_sse(error, "error"))
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _openai)
    app.router.add_post("/v1/messages", _anthropic)
    app.router.add_post("/v1/responses", _responses)
    runner = web.AppRunner(app)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(runner.setup(), loop).result(10)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    asyncio.run_coroutine_threadsafe(site.start(), loop).result(10)
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def router(upstream: str) -> Iterator[RouterServer]:
    byok = {"api_key": UPSTREAM_KEY, "byok": True}
    text = kit.config(
        admin=ADMIN,
        disabled=kit.STATEFUL_EXCEPT_ACCOUNTS,
        storage={"url": "sqlite:///redaction.db"},
        accounts={"allow_anonymous_byok": True},
        providers={
            "oai": kit.provider("openai", f"{upstream}/v1", **byok),
            "oaiconv": kit.provider("openai", f"{upstream}/v1", **byok, responses=False),
            "ant": kit.provider("anthropic", upstream, **byok),
        },
        models={
            "via-openai": kit.route("oai", "gpt-x"),
            "via-openai-converted": kit.route("oaiconv", "gpt-x"),
            "via-anthropic": kit.route("ant", "claude-x"),
            "plain-error": kit.route("oai", "plain-error"),
        },
    )
    with RouterServer(text) as server:
        yield server


def _post(router: RouterServer, path: str, key: str, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{router.url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("caller_key", [ADMIN, f"BYOK:{BYOK_KEY}"], ids=["operator", "byok"])
@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/chat/completions", "via-openai"),  # pass-through
        ("/v1/messages", "via-anthropic"),  # pass-through
        ("/v1/chat/completions", "via-anthropic"),  # converted
        ("/v1/messages", "via-openai"),  # converted
        ("/v1/responses", "via-openai"),  # pass-through
        ("/v1/responses", "via-openai-converted"),  # converted
    ],
)
def test_an_error_event_mid_stream_never_carries_a_provider_key(
    router: RouterServer, path: str, model: str, caller_key: str
) -> None:
    body: dict = {"model": model, "stream": True}
    if path == "/v1/responses":
        body["input"] = "Hello!"
    else:
        body |= {"messages": HELLO, "max_tokens": 20}
    answer = _post(router, path, caller_key, body)
    assert answer.status_code == 200
    stream = answer.text
    assert "Hel" in stream and "error" in stream  # the text, then the relayed error event
    assert "REDACTME" not in stream, stream


def test_a_long_non_json_error_body_is_redacted_before_it_is_cut(router: RouterServer) -> None:
    answer = _post(
        router, "/v1/chat/completions", ADMIN, {"model": "plain-error", "messages": HELLO}
    )
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]
    assert "xxxx" in message  # the provider's own words are passed on…
    assert "REDACTME" not in message and UPSTREAM_KEY[:10] not in message  # …but no key
