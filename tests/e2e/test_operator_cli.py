"""The operator's commands at the edges: what cannot be undone asks first, wording of errors."""

from __future__ import annotations

import os
import pty
import re
import stat
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.operator import cli, query
from lmrouter.testing.server import RouterServer

CONFIG = """
[auth]
keys = ["sk-operator-test-key"]
[storage]
url = "sqlite:///ops.db"
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "lmrouter.toml"
    path.write_text(CONFIG)
    return path


def lmrouter(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def on_a_terminal(config: Path, *args: str, answer: str) -> tuple[int, str]:
    """The command with a terminal as its stdin, typing ``answer``; (exit code, stderr)."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(config)],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(primary, answer.encode() + b"\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    return proc.returncode, err


def status(config: Path, email: str) -> str:
    rows = query(config.parent / "ops.db", "SELECT status FROM users WHERE email = ?", (email,))
    return rows[0][0] if rows else "gone"


def test_users_delete_asks_on_a_terminal_and_refuses_without_one(config_path: Path) -> None:
    cli(config_path, "users", "add", "keep@example.com")
    refused = lmrouter(config_path, "users", "delete", "keep@example.com")
    assert refused.returncode == 1
    assert "add --yes to confirm" in refused.stderr
    assert status(config_path, "keep@example.com") == "active"

    code, err = on_a_terminal(config_path, "users", "delete", "keep@example.com", answer="no")
    assert code == 1 and "Delete keep@example.com?" in err and "not confirmed" in err
    assert status(config_path, "keep@example.com") == "active"

    code, err = on_a_terminal(config_path, "users", "delete", "keep@example.com", answer="yes")
    assert code == 0, err
    assert status(config_path, "keep@example.com") == "gone"  # its e-mail is erased

    cli(config_path, "users", "add", "script@example.com")
    done = lmrouter(config_path, "users", "delete", "script@example.com", "--yes")
    assert done.returncode == 0 and "deleted user" in done.stdout
    assert status(config_path, "script@example.com") == "gone"


def test_without_a_config_file_the_error_says_how_to_name_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LMROUTER_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # another folder: no lmrouter.toml, no config/lmrouter.toml
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "lmrouter.toml: config file not found" in result.stderr
    assert "--config" in result.stderr and "$LMROUTER_CONFIG" in result.stderr


def test_credits_commands_speak_plainly(config_path: Path) -> None:
    cli(config_path, "users", "add", "bob@example.com")
    for amount, message in (
        ("1e3", "'1e3': write the amount without an exponent, like 1000 or 0.25"),
        ("0.0000000000001", "has more than 12 decimal places"),
        ("ten", "'ten' is not a USD amount"),
    ):
        result = lmrouter(config_path, "credits", "grant", "bob@example.com", amount)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert "config" not in result.stderr and "1e-12" not in result.stderr
    nobody = lmrouter(config_path, "credits", "show", "nobody@example.com")
    assert nobody.stderr.startswith("error: no user 'nobody@example.com'"), nobody.stderr
    assert "config" not in nobody.stderr

    granted = lmrouter(config_path, "credits", "grant", "bob@example.com", "1000")
    assert granted.returncode == 0 and "granted 1000 USD" in granted.stdout
    assert "within half a second" in granted.stdout

    for action in ("grant", "show", "sweep"):
        helped = lmrouter(config_path, "credits", action, "--help")
        description = helped.stdout.split("\n\n")[1]  # the paragraph after the usage line
        assert not description.startswith(("positional", "options")), helped.stdout


def test_init_writes_a_working_config_for_the_keys_in_the_environment(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "OPENAI_API_KEY": "sk-from-the-environment",
        "GEMINI_API_KEY": "AIza-from-the-environment",
        "LMROUTER_CONFIG": "",
    }
    run = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "init"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    path = tmp_path / "lmrouter.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "providers: openai, google;" in run.stdout and "anthropic" not in run.stdout
    assert "next:" in run.stdout and "lmrouter serve" in run.stdout
    key = re.search(r"operator key: (sk-lmr-op-\S+)", run.stdout)
    assert key, run.stdout
    text = path.read_text()
    assert "sk-from-the-environment" not in text  # read from the environment, not copied
    check = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert check.returncode == 0 and "no api_key" not in check.stdout, check.stdout

    again = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "init"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert again.returncode == 1 and "exists already" in again.stderr
    assert path.read_text() == text

    served = text.replace("https://api.openai.com/v1", fake_openai.base_url)
    with RouterServer(served, env={"OPENAI_API_KEY": "sk-from-the-environment"}) as router:
        client = openai.OpenAI(base_url=router.openai_url, api_key=key.group(1))
        reply = client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.choices[0].message.content
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-from-the-environment"
