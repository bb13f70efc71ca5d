"""The fake OpenAI as a standalone server (``python -m lmrouter.testing.fake_openai``) with
several workers, as the benchmarks run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import openai

MESSAGES: Any = [{"role": "user", "content": "Hi"}]  # Any: the SDK wants its TypedDicts


def test_standalone_server_with_workers() -> None:
    command = [sys.executable, "-m", "lmrouter.testing.fake_openai", "--port", "0"]
    command += ["--workers", "2", "--text", "bench", "--chunk-chars", "2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdout=pipe, stderr=pipe, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline().decode().strip()
            prefix = "fake-openai listening on "
            assert line.startswith(prefix), (line, proc.stderr.read())
            base_url = line[len(prefix) :]
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            for _ in range(4):  # fresh connections, spread over the workers by the kernel
                client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10)
                with client:
                    stream = client.chat.completions.create(
                        model="m", messages=MESSAGES, stream=True
                    )
                    assert [c.choices[0].delta.content for c in stream][1:-1] == ["be", "nc", "h"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=10) == 0
            finally:
                proc.kill()
