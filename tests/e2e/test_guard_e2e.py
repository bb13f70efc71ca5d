"""Callers without a valid key cannot make the router hold their bodies: the key is checked from
the headers before a byte of the body is read, a body that trickles in is cut off at
``[server] body_timeout``, and an address that keeps sending bad keys is throttled. Against the
real router (granian) with raw sockets where the SDKs would not hold a body half-sent."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator

import anthropic
import openai
import pytest

from lmrouter.testing.config import config, provider, route
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer

ADMIN = "sk-admin-guard-e2e"
UPSTREAM_KEY = "sk-upstream-guard-42"
HELLO = [{"role": "user", "content": "Hello!"}]
FAILURES = 5


def guard_config(upstream: str) -> str:
    return config(
        admin=ADMIN,
        providers={"up": provider("openai", upstream, UPSTREAM_KEY)},
        models={"gpt": route("up", "gpt-x")},
        disabled=["credits", "ratelimit", "dashboard", "stripe", "metrics"],
        server={"body_timeout": 1, "auth_failures_per_minute": FAILURES},
        storage={"url": "sqlite:///guard.db"},
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key=UPSTREAM_KEY)
    fake.script("gpt-x", Behavior(text="Hi there"))
    with fake.run_in_thread() as base_url:
        yield fake, base_url


@pytest.fixture
def router(fake: tuple[FakeOpenAI, str]) -> Iterator[RouterServer]:
    # One router per test: the failure counts of one test must not throttle the next.
    with RouterServer(guard_config(fake[1])) as server:
        yield server


def _send_head(
    server: RouterServer, path: str, headers: dict[str, str], length: int
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


@pytest.mark.parametrize(
    ("path", "headers", "dialect"),
    [
        ("/v1/chat/completions", {"Authorization": "Bearer sk-wrong"}, "openai"),
        ("/v1/chat/completions", {}, "openai"),
        (
            "/v1/messages",
            {"x-api-key": "sk-lmr-" + "x" * 32, "anthropic-version": "2023-06-01"},
            "anthropic",
        ),
    ],
)
def test_a_bad_key_gets_401_while_the_body_is_still_unsent(
    router: RouterServer, path: str, headers: dict[str, str], dialect: str
) -> None:
    # 10 MB announced, 1 kB sent, the rest held back: the answer must not wait for it.
    sock = _send_head(router, path, {"Content-Type": "application/json", **headers}, 10_000_000)
    with sock:
        sock.sendall(b"{" + b" " * 1023)
        status, _, body = _read_response(sock)
    assert status == 401
    error = json.loads(body)
    if dialect == "openai":
        assert error["error"]["code"] == "invalid_api_key"
    else:
        assert error == {
            "type": "error",
            "error": {"type": "authentication_error", "message": error["error"]["message"]},
        }


def test_a_body_trickled_slower_than_the_deadline_is_cut_off(router: RouterServer) -> None:
    body = json.dumps({"model": "gpt", "messages": HELLO}).encode()
    sock = _send_head(
        router,
        "/v1/chat/completions",
        {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        len(body),
    )
    with sock:
        # A byte every 0.2 s: the 1 s deadline passes long before the body is complete.
        for byte in body[:-1]:
            sock.sendall(bytes([byte]))
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                break
        else:
            pytest.fail("the router waited for the whole trickled body")
        status, headers, answer = _read_response(sock)
    assert status == 408
    assert json.loads(answer)["error"]["code"] == "request_timeout"
    assert headers.get("connection") == "close"


def test_keys_are_taken_from_every_header_the_dialects_use(router: RouterServer) -> None:
    client = openai.OpenAI(base_url=router.openai_url, api_key="unused", max_retries=0)
    for headers, query in (
        ({"x-goog-api-key": ADMIN}, {}),
        ({}, {"key": ADMIN}),
        ({"x-api-key": ADMIN}, {}),
    ):
        answer = client.with_options(
            api_key="", default_headers={"Authorization": "", **headers}, default_query=query
        ).chat.completions.create(model="gpt", messages=HELLO)
        assert answer.choices[0].message.content == "Hi there"


def test_an_address_sending_bad_keys_is_throttled(router: RouterServer) -> None:
    bad = openai.OpenAI(base_url=router.openai_url, api_key="sk-lmr-" + "y" * 32, max_retries=0)
    for _ in range(FAILURES):
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="gpt", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as refused:
        bad.chat.completions.create(model="gpt", messages=HELLO)
    assert 0 < int(refused.value.response.headers["retry-after"]) <= 60
    other = anthropic.Anthropic(base_url=router.url, api_key="sk-other", max_retries=0)
    with pytest.raises(anthropic.RateLimitError):  # every dialect's door, same address
        other.messages.create(model="gpt", max_tokens=5, messages=HELLO)


def test_the_database_and_its_wal_are_readable_by_the_owner_only(router: RouterServer) -> None:
    # The running router has the database open in WAL mode: all three files exist now.
    modes = {
        name: (router.workdir / name).stat().st_mode & 0o777
        for name in ("guard.db", "guard.db-wal", "guard.db-shm")
    }
    assert modes == dict.fromkeys(modes, 0o600)
