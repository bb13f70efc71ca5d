"""What ``lmrouter serve`` does before it serves: a taken port is refused before the banner."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.operator import cli, user_with_key
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


def byok_config(upstream: str) -> str:
    return kit.config(
        admin="sk-operator-test-key",
        disabled=["credits", "ratelimit"],
        storage={"url": "sqlite:///data/router.db"},
        accounts={"secret": "${LMROUTER_SECRET:-}"},
        providers={
            "up": kit.provider("openai", upstream, "sk-the-operators-provider-key", byok=True)
        },
        models={"gpt": kit.route("up", "gpt-x")},
    )


def test_byok_keys_survive_a_restart_without_an_exported_secret(
    tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LMROUTER_SECRET", raising=False)
    text = byok_config(fake_openai.base_url)
    with RouterServer(text, workdir=tmp_path) as router:
        secret = tmp_path / "data" / "router.db.secret"
        assert secret.is_file() and stat.S_IMODE(secret.stat().st_mode) == 0o600
        key = user_with_key(router.config_path, "ada@example.com")
        cli(
            router.config_path,
            "byok",
            "set",
            "ada@example.com",
            "up",
            "--key-stdin",
            stdin="sk-own",
        )
    with RouterServer(text, workdir=tmp_path) as router:  # a restart, nothing exported
        client = openai.OpenAI(base_url=router.openai_url, api_key=key)
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
        assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-own"

    # A secret set now is not the one the keys were stored with: the operator is told at start.
    other = {**os.environ, "LMROUTER_SECRET": "a-different-secret-0123456789"}
    for command in ("check", "serve"):
        result = subprocess.run(
            [sys.executable, "-m", "lmrouter.cli", command, "--config", str(router.config_path)],
            capture_output=True,
            text=True,
            env=other,
            timeout=60,
        )
        assert result.returncode == 1, result.stderr
        assert "`accounts.secret`: 1 of 1 stored BYOK keys do not open" in result.stderr
        assert "listening" not in result.stderr


def test_byok_keys_stored_under_an_exported_secret_need_it_at_start(
    tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMROUTER_SECRET", "the-secret-exported-once-0123456789")
    path = tmp_path / "lmrouter.toml"
    path.write_text(byok_config(fake_openai.base_url))
    user_with_key(path, "bob@example.com")
    cli(path, "byok", "set", "bob@example.com", "up", "--key-stdin", stdin="sk-bobs-own")
    monkeypatch.delenv("LMROUTER_SECRET")  # the restart where it was forgotten
    result = serve(path, free_port())
    assert result.returncode == 1, result.stderr
    assert "1 stored BYOK keys need the secret they were encrypted with" in result.stderr
    assert "LMROUTER_SECRET" in result.stderr and "listening" not in result.stderr


def test_the_first_address_leads_a_browser_to_the_dashboard() -> None:
    with RouterServer(CONFIG) as router:
        assert f"dashboard: http://127.0.0.1:{router.port}/dashboard" in router.logs()
        with httpx.Client(base_url=router.url) as http:
            assert http.head("/").status_code == 200
            first = http.get("/")
            assert first.status_code == 302 and first.headers["location"] == "/dashboard"


def test_without_a_dashboard_the_root_says_what_is_there() -> None:
    with RouterServer(CONFIG + '[plugins]\ndisabled = ["dashboard"]\n') as router:
        assert "dashboard:" not in router.logs()
        with httpx.Client(base_url=router.url) as http:
            assert http.head("/").status_code == 200
            assert http.get("/").json()["health"] == "/health"


def test_a_provider_without_a_key_is_named_at_start_and_in_health(fake_openai: FakeOpenAI) -> None:
    config = kit.config(
        admin="sk-operator-test-key",
        providers={
            "keyless": kit.provider(
                "openai", fake_openai.base_url, "${LMROUTER_TEST_NO_SUCH_KEY:-}"
            ),
            "keyed": kit.provider("openai", fake_openai.base_url, "sk-set"),
        },
        models={"m": [kit.route("keyless", "x"), kit.route("keyed", "x")]},
    )
    with RouterServer(config) as router:
        banner = router.logs().split("\n{")[0]  # what serve printed before the JSON log lines
        assert "warning: provider 'keyless' has no api_key" in banner
        assert "provider 'keyed'" not in banner
        operator = {"authorization": "Bearer sk-operator-test-key"}  # details: admins only
        health = httpx.get(f"{router.url}/health", headers=operator).json()
    assert health["status"] == "degraded"
    assert health["providers"]["keyless"]["status"] == "unconfigured"
    assert "no api_key" in health["providers"]["keyless"]["last_error"]
    assert health["providers"]["keyed"]["status"] == "unknown"  # nothing asked of it yet


def test_after_the_banner_every_log_line_is_json_granians_too(tmp_path: Path) -> None:
    with RouterServer(CONFIG, workdir=tmp_path) as router:
        httpx.get(f"{router.url}/health")
    lines = router.logs().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert all(line.startswith("lmrouter ") or ":" in line for line in lines[:start])
    records = [json.loads(line) for line in lines[start:]]  # each one JSON, none plain text
    events = [r["event"] for r in records if r.get("logger", "").startswith("_granian")]
    assert any(e.startswith("Starting granian") for e in events), events
    assert any(e.startswith("Stopping worker") for e in events), events


def test_files_a_run_leaves_beside_the_database_are_not_in_git_status() -> None:
    repo = Path(__file__).resolve().parents[2]
    for name in ("lmrouter.db.credits.lock", "lmrouter.db.secret", "lmrouter.db-wal"):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", f"config/{name}"], cwd=repo, timeout=30
        )
        assert ignored.returncode == 0, f"config/{name} would show in git status"
