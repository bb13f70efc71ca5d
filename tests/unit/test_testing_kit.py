"""The test kit's config builder and in-process app: what they write is a config the router
accepts, and the app they start serves the whole pipeline, hooks included."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lmrouter import hookimpl
from lmrouter.gateway import load
from lmrouter.testing.config import ADMIN_KEY, config, config_file, model, provider, route, toml
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI


def test_the_builder_writes_the_tables_a_config_has(tmp_path: Path) -> None:
    text = config(
        providers={"up": provider("openai", "http://127.0.0.1:9", first_byte_timeout=0.5)},
        models={
            "gpt": route("up", "gpt-x", price={"input": 1, "output": 2}),
            "fb": [route("up", "down"), route("up", "gpt-x")],
            "capped": model(route("up", "gpt-x"), max_output_tokens=100),
        },
        disabled=["credits", "ratelimit"],
        routing={"drain_seconds": 0},
        server={"log_format": "json"},
    )
    doc = tomllib.loads(text)
    assert doc["plugins"] == {"disabled": ["credits", "ratelimit"]}
    assert doc["auth"] == {"keys": [ADMIN_KEY]}
    assert doc["providers"]["up"]["first_byte_timeout"] == 0.5
    assert [m["id"] for m in doc["models"]] == ["gpt", "fb", "capped"]
    assert doc["models"][0]["routes"] == [
        {"provider": "up", "model": "gpt-x", "price": {"input": 1, "output": 2}}
    ]
    assert [r["model"] for r in doc["models"][1]["routes"]] == ["down", "gpt-x"]
    assert doc["models"][2]["max_output_tokens"] == 100
    path = config_file(
        tmp_path,
        providers={"up": provider("openai", "http://127.0.0.1:9")},
        models={"gpt": route("up", "gpt-x")},
    )
    cfg, _ = load(path)  # the router's own validation accepts it
    assert list(cfg.models) == ["gpt"]


def test_extra_text_sections_and_no_auth() -> None:
    text = config(admin=None, extra='[probe]\nrecord = "x"', storage={"url": "sqlite:///r.db"})
    assert tomllib.loads(text) == {"storage": {"url": "sqlite:///r.db"}, "probe": {"record": "x"}}


@pytest.mark.parametrize(
    "value",
    ["plain", 'quote " and \\ and \n newline', "ünïcode", 0, -3, 1.5, 1e-6, True, [1, "a"]],
)
def test_values_round_trip_through_toml(value: Any) -> None:
    doc = {"t": {"v": value, "inline": {"k": value}}, "rows": [{"v": value}, {"v": value}]}
    assert tomllib.loads(toml(doc)) == doc


class Seen:
    """A plugin that records the outcome of every request."""

    def __init__(self) -> None:
        self.statuses: list[str] = []

    @hookimpl
    def lmrouter_request_end(self, ctx: Any, outcome: Any) -> None:
        self.statuses.append(outcome.status)


def test_the_in_process_app_runs_the_pipeline_and_its_hooks(lmrouter_app: Any) -> None:
    seen = Seen()

    async def scenario() -> None:
        fake = FakeOpenAI()
        fake.script("gpt-x", Behavior(text="Hi from upstream"))
        await fake.start()
        text = config(
            providers={"up": provider("openai", fake.base_url)},
            models={"gpt": route("up", "gpt-x")},
            disabled=["accounts", "credits", "ratelimit", "dashboard", "stripe", "metrics"],
        )
        try:
            async with lmrouter_app(text, plugins={"seen": seen}) as router:
                response = await router.client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                )
                assert response.status_code == 200, response.text
                answer = response.json()["choices"][0]["message"]["content"]
                assert answer == "Hi from upstream"
                refused = await router.client.post(
                    "/v1/chat/completions", json={}, headers={"Authorization": "Bearer nope"}
                )
                assert refused.status_code == 401
        finally:
            await fake.stop()
        assert len(fake.requests) == 1

    asyncio.run(scenario())
    assert seen.statuses == ["ok"]


def test_the_guides_example_of_the_builder_runs() -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "writing-a-provider-plugin.md"
    blocks = re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), re.S)
    [example] = [b for b in blocks if "from lmrouter.testing import config as kit" in b]
    scope: dict[str, Any] = {"fake": SimpleNamespace(base_url="http://127.0.0.1:9")}
    exec(example, scope)
    doc = tomllib.loads(scope["text"])
    assert doc["providers"]["acme"]["region"] == "eu"
    assert [len(m["routes"]) for m in doc["models"]] == [1, 2]
    assert doc["plugins"]["disabled"] == ["credits", "ratelimit"]
