"""Every answer gets its log line: not only the model endpoints' (the proxy's own "request"
line) but Starlette's 404s and 405s and refused WebSocket upgrades, which Codex tries on
/v1/responses before falling back to HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from lmrouter.testing.config import config, provider, route
from lmrouter.testing.server import RouterServer

CONFIG = config(
    admin="sk-admin-logs",
    providers={"up": provider("openai", "http://127.0.0.1:9")},
    models={"gpt": route("up", "gpt-x")},
    disabled=["credits", "ratelimit", "accounts", "dashboard", "stripe", "metrics"],
    server={"log_format": "json"},
)


def request_lines(server: RouterServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "request":
                lines.append(record)
    return lines


def logged_by_id(server: RouterServer, last: str, timeout: float = 10) -> dict[str, Any]:
    """The request lines by request id, once the line of ``last`` is in the log."""
    deadline = time.monotonic() + timeout
    while True:
        by_id = {line["request_id"]: line for line in request_lines(server)}
        if last in by_id or time.monotonic() > deadline:
            return by_id
        time.sleep(0.02)


def websocket_upgrade(url: str, path: str) -> bytes:
    """A browser-style upgrade request on a raw socket; returns the status line."""
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nx-request-id: ws-probe-1\r\n\r\n"
            ).encode()
        )
        return sock.recv(4096).split(b"\r\n", 1)[0]


def test_404_405_and_refused_websockets_are_logged() -> None:
    with RouterServer(CONFIG) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            missing = client.get("/nowhere", headers={"x-request-id": "probe-404"})
            wrong = client.get("/v1/responses", headers={"x-request-id": "probe-405"})
        assert missing.status_code == 404
        assert wrong.status_code == 405
        status_line = websocket_upgrade(server.url, "/v1/responses")
        # 426, not a bare refusal: Codex falls back to HTTP at once instead of retrying.
        assert status_line == b"HTTP/1.1 426 Upgrade Required"
        # the refusal is logged after it is sent: wait for its line, with a bound
        by_id = logged_by_id(server, "ws-probe-1")
    assert by_id["probe-404"]["status"] == 404
    assert by_id["probe-404"]["path"] == "/nowhere"
    assert by_id["probe-404"]["method"] == "GET"
    assert by_id["probe-405"]["status"] == 405
    assert by_id["ws-probe-1"]["method"] == "WEBSOCKET"
    assert by_id["ws-probe-1"]["path"] == "/v1/responses"
    assert by_id["ws-probe-1"]["status"] == 426
    assert all(isinstance(line["total_ms"], float | int) for line in by_id.values())
