"""The plugin as the router loads it: its config table, and what it refuses at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lmrouter import plugins
from lmrouter.config import ConfigError
from lmrouter.gateway import Gateway, load
from lmrouter_accounts import service

# Plugins that would change request outcomes (credit holds, rate limits) stay out of these tests.
BASE = """
[plugins]
disabled = ["credits", "ratelimit"]
[storage]
url = "sqlite:///accounts.db"
[providers.up]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
[[models]]
id = "m"
  [[models.routes]]
  provider = "up"
  model = "m"
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "lmrouter.toml"
    path.write_text(BASE + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[accounts]\nsecret = "short"\n', "at least 16 characters"),
        ("[accounts]\nallow_anonymous_byk = true\n", "accounts.allow_anonymous_byk`: unknown key"),
        ("[accounts]\nallow_anonymous_byok = 1\n", "Expected `bool`"),
    ],
)
def test_config_mistakes_are_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, extra))


def test_defaults_without_a_table(tmp_path: Path) -> None:
    config, _ = load(write(tmp_path, ""))
    section = config.section("accounts")
    assert (section.secret, section.allow_anonymous_byok) == ("", False)


def test_several_workers_on_sqlite_are_refused_by_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(write(tmp_path, "[server]\nworkers = 2\n"))  # what `check` and `serve` run
    text = str(refused.value)
    assert "lmrouter.toml" in text and "server.workers" in text
    assert "API-key cache" in text and "(accounts)" in text and "postgresql://" in text


def test_one_worker_starts_and_authenticates_through_the_hooks(tmp_path: Path) -> None:
    gateway = Gateway.from_path(write(tmp_path, "[server]\nworkers = 1\n"))

    async def go() -> None:
        await gateway.start()
        try:
            user = await service.create_user(gateway.store, "a@example.com")
            new = await service.create_key(gateway.store, user.id)
            hook = plugins.Hook(gateway.pm, "lmrouter_authenticate")
            found = await hook.first(gateway, new.secret, {})
            assert found.user_id == user.id and found.key_id == new.key.id
            assert await hook.first(gateway, "sk-x", {}) is None
        finally:
            await gateway.stop()

    asyncio.run(go())
