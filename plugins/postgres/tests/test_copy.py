"""``lmrouter store copy``: an embedded deployment with users, keys, credits, spending and usage
moved to PostgreSQL, where a router then serves the same keys with the same balances."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from lmrouter.testing import operator
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_credits.testing import ledger_matches_lots

ADMIN = "sk-admin-copy"


def config(upstream: str, store: str) -> str:
    return f"""
[plugins]
disabled = ["ratelimit"]
[auth]
keys = ["{ADMIN}"]
[storage]
url = "{store}"
[accounts]
secret = "a-long-enough-server-secret-for-tests"
[credits]
flush_interval = 0.02
[providers.up]
type = "openai"
base_url = "{upstream}"
api_key = "sk-upstream"
byok = true
[[models]]
id = "priced"
  [[models.routes]]
  provider = "up"
  model = "priced-x"
  price = {{ input = 1, output = 2 }}
"""


def credits(url: str, key: str) -> dict[str, object]:
    answer = httpx.get(f"{url}/v1/credits", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_deployment_moves_to_postgres_and_serves_the_same(
    tmp_path: Path, postgres_url: str
) -> None:
    fake = FakeOpenAI()
    fake.script("priced-x", Behavior(usage={"prompt_tokens": 1000, "completion_tokens": 50}))
    with fake.run_in_thread():
        embedded = config(fake.base_url, "sqlite:///router.db")
        with RouterServer(embedded, workdir=tmp_path) as router:
            path = router.config_path
            alice = operator.user_with_key(path, "alice@example.com")
            bob = operator.user_with_key(path, "bob@example.com")
            operator.cli(path, "credits", "grant", "alice@example.com", "1")
            operator.cli(path, "credits", "grant", "bob@example.com", "2.5")
            operator.cli(
                path, "byok", "set", "bob@example.com", "up", "--key-stdin", stdin="sk-bobs-own"
            )
            client = openai.OpenAI(base_url=router.openai_url, api_key=alice, max_retries=0)
            for _ in range(3):
                client.chat.completions.create(
                    model="priced", messages=[{"role": "user", "content": "hi"}]
                )
            before = {key: credits(router.url, key) for key in (alice, bob)}
        assert before[alice]["balance_usd"] == "0.9967"  # three requests at 0.0011 each

        out = operator.cli(path, "store", "copy", "--to", postgres_url)
        assert "copied and verified" in out
        ledger_matches_lots(postgres_url)
        usage = operator.query(postgres_url, "SELECT COUNT(*) FROM usage")
        assert usage == [(3,)]

        path.write_text(config(fake.base_url, postgres_url))
        (tmp_path / "pg").mkdir()
        with RouterServer(path.read_text(), workdir=tmp_path / "pg") as moved:
            assert {key: credits(moved.url, key) for key in (alice, bob)} == before
            client = openai.OpenAI(base_url=moved.openai_url, api_key=alice, max_retries=0)
            client.chat.completions.create(
                model="priced", messages=[{"role": "user", "content": "hi"}]
            )
            assert credits(moved.url, alice)["balance_usd"] == "0.9956"
        # rows made after the copy are numbered after the copied ones
        ledger_matches_lots(postgres_url)
        shown = json.loads(operator.cli(path, "credits", "show", "alice@example.com", "--json"))
        assert shown["balance_usd"] == "0.9956"


def test_copy_refuses_a_database_that_is_not_empty(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "lmrouter.toml"
    path.write_text(config("http://127.0.0.1:1", "sqlite:///router.db"))
    operator.cli(path, "users", "add", "a@example.com")
    operator.cli(path, "store", "copy", "--to", postgres_url)
    with pytest.raises(AssertionError, match="is not empty"):
        operator.cli(path, "store", "copy", "--to", postgres_url)
    with pytest.raises(AssertionError, match="postgresql:// URL"):
        operator.cli(path, "store", "copy", "--to", "sqlite:///other.db")
