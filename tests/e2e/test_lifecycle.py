"""Server lifecycle: startup output, health, and a graceful stop that lets streams finish."""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

import httpx

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer


def config(upstream: str, **more: Any) -> str:
    """``more``: providers and models besides the ones every test here has."""
    return kit.config(
        admin="sk-life",
        providers={"up": kit.provider("openai", upstream), **more.get("providers", {})},
        models={"trickle": kit.route("up", "trickle"), **more.get("models", {})},
    )


def test_sigterm_lets_running_streams_finish(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("trickle", Behavior(text="z" * 60, chunk_chars=4, chunk_delay=0.08))
    server = RouterServer(config(fake_openai.base_url)).start()
    lines: list[str] = []

    def consume() -> None:
        with httpx.stream(
            "POST",
            f"{server.openai_url}/chat/completions",
            json={
                "model": "trickle",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"authorization": "Bearer sk-life"},
            timeout=60,
        ) as response:
            # one by one, as they come: the test waits for the first
            for line in response.iter_lines():
                lines.append(line)  # noqa: PERF402

    reader = threading.Thread(target=consume)
    reader.start()
    # SIGTERM once the stream is running (lines.extend(…) used to add them all at its end, so
    # the signal came after it, or, on a busy machine, at a moment the clock chose)
    deadline = time.monotonic() + 60
    while not any(line.startswith("data:") for line in lines):
        assert time.monotonic() < deadline, "no chunk came"
        time.sleep(0.01)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    reader.join(60)
    assert not reader.is_alive()
    data = [line for line in lines if line.startswith("data:")]
    assert data[-1] == "data: [DONE]", "the stream ran to its end after SIGTERM"
    text = "".join(
        httpx.Response(200, content=line[6:]).json()["choices"][0]["delta"].get("content") or ""
        for line in data[:-1]
        if '"choices":[{' in line.replace(" ", "")
    )
    assert text == "z" * 60
    # it exits by itself once the stream is over (stop() now would send a second SIGTERM to a
    # router still shutting down, on a busy machine, and that one kills it: -15)
    assert server.process.wait(60) == 0
    server.stop()
    logs = server.logs()
    assert "listening on http://127.0.0.1" in logs
    assert "note: no operator key set" not in logs


def test_health_reports_store_and_providers(lmrouter_server, fake_openai: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    server = lmrouter_server(
        config(
            fake_openai.base_url,
            providers={"dead": kit.provider("openai", dead, "sk-dead")},
            models={"flaky": [kit.route("dead", "x"), kit.route("up", "trickle")]},
        )
    )
    fresh = httpx.get(f"{server.url}/health").json()
    assert fresh["status"] == "ok" and fresh["store"] == "ok"
    assert fresh["providers"]["up"]["status"] == "unknown"
    body = {"model": "flaky", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(3):
        answer = httpx.post(
            f"{server.openai_url}/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk-life"},
        )
        assert answer.status_code == 200  # the second route saves every request
    health = httpx.get(f"{server.url}/health", headers={"authorization": "Bearer sk-life"})
    assert health.status_code == 200
    report = health.json()
    assert report["status"] == "degraded"
    assert report["providers"]["dead"]["status"] == "failing"
    assert "cannot connect" in report["providers"]["dead"]["last_error"]
    assert report["providers"]["up"]["status"] == "ok"
    # the error's words are for operators: anyone else sees the status alone
    anonymous = httpx.get(f"{server.url}/health").json()
    assert anonymous["providers"]["dead"]["status"] == "failing"
    assert "last_error" not in anonymous["providers"]["dead"]
