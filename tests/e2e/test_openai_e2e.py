"""The OpenAI path end to end: the official openai SDK → the real router (granian) → a fake
OpenAI upstream on loopback. Results through the router must match the upstream's own."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_probe.records import ends

ADMIN = "sk-admin-e2e"
UPSTREAM_KEY = "sk-upstream-secret-42"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
HELLO = [{"role": "user", "content": "Hello there, router!"}]


GPT_PRICE = {"input": 0.15, "output": 0.60, "cache_read": 0.075}


def config(upstream: str, dead: str, record: Path) -> str:
    up = kit.provider("openai", upstream, UPSTREAM_KEY)
    return kit.config(
        admin=[ADMIN, ""],
        server={"max_body_mb": 0.05},
        routing={"backoff": 0.01, "drain_seconds": 0},  # a client that leaves: closed at once
        probe={"record": record},
        providers={
            "up": up,
            "up2": up,
            "impatient": {**up, "first_byte_timeout": 0.5},
            "dead": kit.provider("openai", dead, UPSTREAM_KEY, connect_timeout=1),
            "probed": kit.provider("probe", upstream, "probe-key", tag="from-config"),
        },
        models={
            "gpt": kit.model(
                kit.route(
                    "up", "gpt-x", price={"input": 0.15, "output": 0.60, "cache_read": 0.075}
                ),
                max_output_tokens=1000,
            ),
            "fallback-503": [kit.route("up", "down-503"), kit.route("up2", "gpt-x")],
            "fallback-refused": [kit.route("dead", "gpt-x"), kit.route("up", "gpt-x")],
            "all-down": [kit.route("up", "down-503"), kit.route("up", "down-429")],
            "lag": kit.route("up", "lag"),
            "down-500": kit.route("up", "down-500"),
            "bad": [kit.route("up", "bad-400"), kit.route("up2", "gpt-x")],
            "slow": kit.route("impatient", "sleepy"),
            "trickle": kit.route("up", "trickle", price={"input": 1, "output": 2}),
            "drop": kit.route("up", "drop"),
            "probe": kit.route("probed", "gpt-x"),
            "embed": kit.route("up", "text-embed", price={"input": 0.02}),
        },
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.script("down-503", Behavior(status=503, error_message=f"overloaded ({UPSTREAM_KEY})"))
    fake.script("down-429", Behavior(status=429, error_message="slow down", retry_after=1))
    fake.script("lag", Behavior(first_byte_delay=0.3))
    fake.script("down-500", Behavior(status=500, error_message="it exploded"))
    fake.script("bad-400", Behavior(status=400, error_message="messages[0].role is invalid"))
    fake.script("sleepy", Behavior(first_byte_delay=2.0))
    fake.script("trickle", Behavior(text="x" * 400, chunk_chars=4, chunk_delay=0.02))
    fake.script("drop", Behavior(text="y" * 200, chunk_chars=4, drop_after_chunks=3))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(fake: FakeOpenAI, probe_path: str, record: Path) -> Iterator[RouterServer]:
    with socket.socket() as closed:  # a port nobody listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    with RouterServer(config(fake.base_url, dead, record), python_path=[probe_path]) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def direct(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=UPSTREAM_KEY, max_retries=0)


def choices(completion: Any) -> list[dict[str, Any]]:
    return [c.model_dump() for c in completion.choices]


def collect(stream: Any) -> tuple[dict[int, dict[str, Any]], list[Any], Any]:
    """Reassemble a chat stream: per choice index its text, tool calls and finish reason."""
    out: dict[int, dict[str, Any]] = {}
    chunks = []
    usage = None
    for chunk in stream:
        chunks.append(chunk)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            slot = out.setdefault(choice.index, {"text": "", "tools": {}, "finish": None})
            delta = choice.delta
            if delta.content:
                slot["text"] += delta.content
            for call in delta.tool_calls or ():
                tool = slot["tools"].setdefault(call.index, {"id": None, "name": "", "args": ""})
                if call.id:
                    tool["id"] = call.id
                if call.function and call.function.name:
                    tool["name"] += call.function.name
                if call.function and call.function.arguments:
                    tool["args"] += call.function.arguments
            if choice.finish_reason:
                slot["finish"] = choice.finish_reason
    for slot in out.values():  # tool call ids are random per response; compare the rest
        for tool in slot["tools"].values():
            assert tool["id"], "every streamed tool call carries an id"
            tool["id"] = "<id>"
    return out, chunks, usage


# -- results match the upstream's own ----------------------------------------------------------


def test_non_stream_matches_direct(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    via = client.chat.completions.create(model="gpt", messages=HELLO)
    raw = direct.chat.completions.create(model="gpt-x", messages=HELLO)
    assert choices(via) == choices(raw)
    assert via.choices[0].message.content and "Hello there" in via.choices[0].message.content
    assert via.usage is not None and raw.usage is not None
    assert via.usage.prompt_tokens == raw.usage.prompt_tokens > 0
    assert via.usage.completion_tokens == raw.usage.completion_tokens > 0


def test_non_stream_reports_exact_cost(client: openai.OpenAI) -> None:
    via = client.chat.completions.create(model="gpt", messages=HELLO)
    usage = via.usage
    assert usage is not None
    expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)


def test_tool_calls_match_direct(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"messages": HELLO, "tools": TOOLS, "tool_choice": "required"}
    via = client.chat.completions.create(model="gpt", **kwargs)
    raw = direct.chat.completions.create(model="gpt-x", **kwargs)
    assert via.choices[0].finish_reason == raw.choices[0].finish_reason == "tool_calls"
    via_call = via.choices[0].message.tool_calls[0]  # type: ignore[index]
    raw_call = raw.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert via_call.function.name == raw_call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(via_call.function.arguments) == json.loads(raw_call.function.arguments)  # type: ignore[union-attr]


@pytest.mark.parametrize("n", [1, 3])
def test_stream_matches_direct(client: openai.OpenAI, direct: openai.OpenAI, n: int) -> None:
    via, _, _ = collect(
        client.chat.completions.create(model="gpt", messages=HELLO, n=n, stream=True)
    )
    raw, _, _ = collect(
        direct.chat.completions.create(model="gpt-x", messages=HELLO, n=n, stream=True)
    )
    assert via == raw
    assert sorted(via) == list(range(n))
    assert all(slot["finish"] == "stop" and slot["text"] for slot in via.values())


def test_tool_call_stream_matches_direct(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"messages": HELLO, "tools": TOOLS, "stream": True}
    via, _, _ = collect(client.chat.completions.create(model="gpt", **kwargs))
    raw, _, _ = collect(direct.chat.completions.create(model="gpt-x", **kwargs))
    assert via == raw
    assert via[0]["finish"] == "tool_calls"
    assert json.loads(via[0]["tools"][0]["args"])["city"]


def test_stream_usage_only_when_asked(
    client: openai.OpenAI, direct: openai.OpenAI, fake: FakeOpenAI
) -> None:
    _, chunks, usage = collect(
        client.chat.completions.create(model="gpt", messages=HELLO, stream=True)
    )
    sent = fake.requests[-1].json
    assert sent["stream_options"] == {"include_usage": True}, "the router always meters streams"
    assert usage is None and all(chunk.choices for chunk in chunks), "no usage chunk unasked"

    _, chunks, usage = collect(
        client.chat.completions.create(
            model="gpt", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    _, _, raw_usage = collect(
        direct.chat.completions.create(
            model="gpt-x", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert usage is not None and raw_usage is not None
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        raw_usage.prompt_tokens,
        raw_usage.completion_tokens,
    )
    expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected, rel=1e-12)


def test_upstream_gets_its_own_model_and_key(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    client.chat.completions.create(model="gpt", messages=HELLO)
    sent = fake.requests[-1]
    assert sent.json["model"] == "gpt-x"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "stream_options" not in sent.json  # only allowed with stream=true upstream


def test_embeddings_match_direct(client: openai.OpenAI, direct: openai.OpenAI) -> None:
    texts = ["alpha", "beta gamma"]
    via = client.embeddings.create(model="embed", input=texts)  # the SDK asks for base64
    raw = direct.embeddings.create(model="text-embed", input=texts)
    assert [d.embedding for d in via.data] == [d.embedding for d in raw.data]
    assert len(via.data) == 2 and len(via.data[0].embedding) > 0
    assert via.usage.prompt_tokens == raw.usage.prompt_tokens


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt" in ids and "embed" in ids
    assert client.models.retrieve("gpt").id == "gpt"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# -- failure and fallback -----------------------------------------------------------------------


def test_fallback_on_503(client: openai.OpenAI, fake: FakeOpenAI, record: Path) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="fallback-503", messages=HELLO
    )
    completion = response.parse()
    assert "Hello there" in (completion.choices[0].message.content or "")
    request_id = response.headers["x-request-id"]
    [end] = ends(record, request_id)
    assert end["status"] == "ok" and end["route"] == "up2"
    assert end["attempts"] == [["up", 503], ["up2", 200]]


def test_fallback_on_refused_connection(client: openai.OpenAI, record: Path) -> None:
    stream = client.chat.completions.with_raw_response.create(
        model="fallback-refused", messages=HELLO, stream=True
    )
    text, _, _ = collect(stream.parse())
    assert "Hello there" in text[0]["text"]
    [end] = ends(record, stream.headers["x-request-id"])
    assert [a[0] for a in end["attempts"]] == ["dead", "up"]
    assert end["attempts"][0][1] is None


def test_all_routes_failed_without_key(client: openai.OpenAI) -> None:
    """The last route's 429 is passed on with its Retry-After; the message names every route's
    failure in the provider's own words, never its key."""
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="all-down", messages=HELLO)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "upstream_rate_limited"
    assert "All 2 routes failed" in body["message"]
    assert "slow down" in body["message"]  # the provider's own words…
    assert UPSTREAM_KEY not in json.dumps(body)  # …never its key


def test_all_routes_failed_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="down-500", messages=HELLO)
    assert info.value.status_code == 502
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "upstream_error"
    assert "exploded" in body["message"]


def test_upstream_400_is_the_callers_error(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.reset()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="bad", messages=HELLO)
    assert "messages[0].role is invalid" in str(info.value)
    assert [r.json["model"] for r in fake.requests] == ["bad-400"], "no fallback on a 400"


def test_upstream_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="slow", messages=HELLO)
    # the upstream answers after 2 s, and would have given a 200: only the route's 0.5 s
    # first-byte timeout makes a 504 (not a clock in the test, which a busy machine slows)
    assert info.value.status_code == 504


def test_stream_cut_by_upstream_ends_with_error_event(client: openai.OpenAI, record: Path) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="drop", messages=HELLO, stream=True
    )
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in response.parse():
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "y" * 12, "what came before the cut reached the client"
    [end] = ends(record, response.headers["x-request-id"])
    assert end["status"] == "upstream_error"
    assert end["usage"]["estimated"] and end["usage"]["completion_tokens"] >= 3


def test_client_disconnect_closes_upstream_and_ends_once(
    router: RouterServer, fake: FakeOpenAI, record: Path
) -> None:
    fake.reset()
    body = {"model": "trickle", "messages": HELLO, "stream": True}
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{router.openai_url}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {ADMIN}"},
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: ")
            if received >= 5:
                break
        left_at = time.monotonic()
    deadline = time.monotonic() + 3
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.disconnects, "the router must close its upstream connection"
    assert fake.disconnects[0].at - left_at < 1.0
    assert fake.disconnects[0].chunks_sent < 100, "generation stopped long before the end"
    [end] = ends(record, request_id)
    assert end["status"] == "client_disconnected"
    assert end["usage"]["completion_tokens"] >= 4, "the client pays for what was generated"
    assert end["cost_pico"] > 0


# -- the door for third-party plugins ----------------------------------------------------------


def test_out_of_tree_provider_plugin(client: openai.OpenAI, fake: FakeOpenAI, record: Path) -> None:
    response = client.chat.completions.with_raw_response.create(model="probe", messages=HELLO)
    assert "Hello there" in (response.parse().choices[0].message.content or "")
    sent = fake.requests[-1]
    assert sent.headers["x-probe"] == "from-config"
    assert sent.headers["x-probe-key"] == "probe-key"
    assert "authorization" not in sent.headers
    [end] = ends(record, response.headers["x-request-id"])
    assert end["route"] == "probed" and end["status"] == "ok"


# -- the caller's mistakes, in the caller's dialect ---------------------------------------------


def test_bad_keys_get_401(router: RouterServer) -> None:
    bad = openai.OpenAI(base_url=router.openai_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="gpt", messages=HELLO)
    assert info.value.code == "invalid_api_key"
    # The config lists an empty operator key too: an empty key must never authenticate.
    for headers in ({"authorization": "Bearer"}, {"x-api-key": ""}, {}):
        response = httpx.post(
            f"{router.openai_url}/chat/completions",
            headers=headers,
            json={"model": "gpt", "messages": HELLO},
        )
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_unknown_model_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=HELLO)
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "gpt"}', "messages"),
        (b'{"model": "gpt", "messages": [], "stream": true}', "messages"),
        (
            b'{"model": "gpt", "messages": [{"role":"user","content":"x"}], "stream": "yes"}',
            "stream",
        ),
        (
            b'{"model": "gpt", "messages": [{"role":"user","content":"x"}], "max_tokens": -1}',
            "max_tokens",
        ),
        (
            b'{"model": "gpt", "messages": [{"role":"user","content":"x"}],'
            b' "stream_options": {"include_usage": true}}',
            "stream_options",
        ),
    ],
)
def test_invalid_requests_name_the_field(
    router: RouterServer, body: bytes, param: str | None
) -> None:
    response = httpx.post(
        f"{router.openai_url}/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_oversized_body_413(router: RouterServer) -> None:
    big = {"model": "gpt", "messages": [{"role": "user", "content": "x" * 60_000}]}
    response = httpx.post(
        f"{router.openai_url}/chat/completions",
        json=big,
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_request_ids(router: RouterServer, client: openai.OpenAI) -> None:
    mine = client.chat.completions.with_raw_response.create(
        model="gpt", messages=HELLO, extra_headers={"x-request-id": "trace-123"}
    )
    assert mine.headers["x-request-id"] == "trace-123"
    deadline = time.monotonic() + 3
    while '"request_id":"trace-123"' not in router.logs() and time.monotonic() < deadline:
        time.sleep(0.02)
    line = next(x for x in router.logs().splitlines() if '"request_id":"trace-123"' in x)
    assert json.loads(line)["model"] == "gpt"
    theirs = httpx.get(f"{router.url}/health", headers={"x-request-id": "bad id!"})
    assert theirs.headers["x-request-id"] != "bad id!"
    assert len(theirs.headers["x-request-id"]) == 24


def test_unknown_path_and_method(router: RouterServer) -> None:
    missing = httpx.get(f"{router.url}/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(
        f"{router.openai_url}/chat/completions", headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert wrong.status_code == 405


def test_overhead_header(client: openai.OpenAI) -> None:
    """The router's own time (all but the waits on the upstream) is in a header, for
    benchmarks: with an upstream that takes 300 ms to answer, it stays below that (a check of
    what it counts, not of speed: the benchmarks measure it)."""
    for stream in (False, True):
        started = time.monotonic()
        response = client.chat.completions.with_raw_response.create(
            model="lag", messages=HELLO, stream=stream
        )
        assert time.monotonic() - started > 0.3
        overhead = float(response.headers["x-lmrouter-overhead-ms"])
        assert 0 < overhead < 300
