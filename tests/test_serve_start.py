"""What ``lmrouter serve`` does before it serves: a taken port is refused before the banner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from lmrouter.testing.server import RouterServer, free_port

CONFIG = """
[auth]
keys = ["sk-operator-test-key"]
"""


def serve(config: Path, port: int) -> subprocess.CompletedProcess[str]:
    """``lmrouter serve`` that must exit by itself; one still serving after 30 s is stopped and
    reported as such (code None)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmrouter.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, None, out, err)  # type: ignore[arg-type]


def test_a_second_router_on_the_same_port_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace("sk-operator-test-key", "sk-another-operator-key"))
    with RouterServer(CONFIG) as first:
        result = serve(other, first.port)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == f"error: 127.0.0.1:{first.port} is already in use"
        assert "listening" not in result.stderr and "Traceback" not in result.stderr
        for _ in range(6):  # every request still reaches the first router alone
            with urllib.request.urlopen(f"{first.url}/health", timeout=5) as response:
                assert response.status == 200


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so-reuseport"])
def test_a_port_held_by_another_program_is_refused(tmp_path: Path, reuse_port: bool) -> None:
    config = tmp_path / "lmrouter.toml"
    config.write_text(CONFIG)
    port = free_port()
    with socket.socket() as holder:
        if reuse_port:  # as granian's own workers bind: it must not let us in beside it
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = serve(config, port)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"error: 127.0.0.1:{port} is already in use"
