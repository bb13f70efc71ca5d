"""The CLI contract: `lmrouter check` explains config mistakes; `plugins` lists what is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[auth]
keys = ["${ADMIN_KEY:-}"]

[providers.openai]
type = "openai"
base_url = "https://api.openai.com/v1"
api_key = "${OPENAI_API_KEY:-}"

[[models]]
id = "openai/gpt-4o-mini"
  [[models.routes]]
  provider = "openai"
  model = "gpt-4o-mini"
  price = { input = 0.15, output = 0.60 }
"""


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lmrouter.toml"
    path.write_text(text)
    return path


def test_check_good_config_summarises(tmp_path: Path) -> None:
    result = run("check", "--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout
    assert "openai/gpt-4o-mini" in result.stdout and "openai:gpt-4o-mini" in result.stdout
    # With the accounts plugin installed, user keys can sign in: no "no operator key" warning.
    assert "no operator key" not in result.stdout
    assert "has no api_key" in result.stdout  # a warning, not an error


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `lmrouter check | head -0`: every write meets a closed pipe
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lmrouter.cli", "check", "--config", str(write(tmp_path, GOOD))],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_check_default_config_in_repo() -> None:
    result = run("check", cwd=REPO, env={"LMROUTER_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert "config/lmrouter.toml" in result.stdout


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = run("check", cwd=tmp_path.parent, env={"LMROUTER_CONFIG": str(path)})
    assert result.returncode == 0 and str(path) in result.stdout


MISTAKES = [
    # (what a user wrote, what the error must say)
    (GOOD.replace("[auth]", "[auht]"), ["`auht`", "unknown section", "known sections"]),
    (
        GOOD.replace('base_url = "https', 'base_ur = "https'),
        ["`providers.openai.base_ur`", "unknown key", ":7"],
    ),
    (
        GOOD.replace('type = "openai"', 'type = "opneai"'),
        ["`providers.openai.type`", "unknown provider type 'opneai'", "openai"],
    ),
    (
        GOOD.replace('provider = "openai"', 'provider = "openia"'),
        ["`models[0].routes[0].provider`", "unknown provider 'openia'", ":13"],
    ),
    (
        GOOD.replace("input = 0.15", 'input = "cheap"'),
        ["`models[0].routes[0].price.input`", ":15"],
    ),
    (GOOD.replace("input = 0.15", "input = 0.1234567"), ["decimal places"]),
    (GOOD + '[server]\nport = "8080"\n', ["`server.port`", "Expected `int`"]),
    (
        GOOD.replace("${ADMIN_KEY:-}", "${LMROUTER_TEST_UNSET_VAR}"),
        ["`auth.keys[0]`", "LMROUTER_TEST_UNSET_VAR is not set"],
    ),
    (
        GOOD + '[[models]]\nid = "openai/gpt-4o-mini"\nroutes = [{provider="openai", model="x"}]\n',
        ["duplicate model id"],
    ),
    (GOOD.replace("https://api.openai.com/v1", "api.openai.com"), ["http:// or https://"]),
    (GOOD.replace("[[models]]", "[[models]\n"), ["invalid TOML"]),
    (GOOD + '[storage]\nurl = "mysql://db"\n', ["`storage.url`", "'mysql' is not installed"]),
    (GOOD.replace('  model = "gpt-4o-mini"\n', ""), ["`models[0].routes[0].model`", "required"]),
]


@pytest.mark.parametrize(("text", "expected"), MISTAKES)
def test_check_explains_mistakes(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    result = run("check", "--config", str(path))
    assert result.returncode == 1
    message = result.stderr
    assert message.startswith(f"error: {path}"), message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in message


def test_check_missing_file(tmp_path: Path) -> None:
    result = run("check", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 1 and "config file not found" in result.stderr


def test_plugins_lists_versions_and_hooks(tmp_path: Path) -> None:
    result = run("plugins", "--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0
    assert "openai" in result.stdout and "lmrouter-openai" in result.stdout
    assert "lmrouter_provider_types" in result.stdout and "hook API 1." in result.stdout


def blocks(listing: str) -> dict[str, list[str]]:
    """``lmrouter plugins``' output: each plugin's first line and the lines under it."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listing.splitlines()[1:]:
        if not line.startswith(" "):
            current = found.setdefault(line.split()[0], [])
        current.append(line.strip())
    return found


def test_plugins_show_hook_api_ranges_and_what_provider_types_serve(tmp_path: Path) -> None:
    listing = blocks(run("plugins", "--config", str(write(tmp_path, GOOD))).stdout)
    openai, anthropic = listing["openai"], listing["anthropic"]
    assert "hook API: >=1.7, <2" in openai
    served = "anthropic.messages, gemini.batch_embed, gemini.embed, gemini.generate, openai.chat"
    assert f"provider type 'openai': {served}, openai.embeddings, openai.responses" in openai
    # Anthropic converts chat only: no embeddings dialect is claimed.
    chat = "anthropic.messages, gemini.generate, openai.chat, openai.responses"
    assert f"provider type 'anthropic': {chat}" in anthropic
    assert "hook API: any (not declared)" in listing["operator_keys"]
    assert not any(line.startswith("provider type") for line in listing["accounts"])


def test_provider_claims_read_the_adapter_declarations() -> None:
    from lmrouter import provider_claims

    class Native:
        native_dialects = frozenset({"anthropic.messages"})

    class Embeds:
        native_dialects = frozenset({"openai.embeddings"})
        converts = frozenset({"embeddings"})

    assert provider_claims.dialects_of(Native) == ["anthropic.messages"]
    assert provider_claims.dialects_of(Embeds) == [
        "gemini.batch_embed",
        "gemini.embed",
        "openai.embeddings",
    ]


def test_disabled_plugin_is_listed_and_its_types_are_gone(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '[plugins]\ndisabled = ["openai"]\n')
    listing = run("plugins", "--config", str(path))
    assert any(line.split()[:2] == ["openai", "disabled"] for line in listing.stdout.splitlines())
    check = run("check", "--config", str(path))
    assert check.returncode == 1 and "unknown provider type 'openai'" in check.stderr


def test_check_documented_example_config() -> None:
    result = run("check", "--config", str(REPO / "config" / "example.toml"))
    assert result.returncode == 0, result.stderr
    assert "llama-3.3-70b" in result.stdout and "groq:llama-3.3-70b-versatile" in result.stdout
