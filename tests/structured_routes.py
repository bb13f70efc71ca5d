"""What the structured-output tests share (test_structured_e2e.py, test_frameworks_e2e.py): the
routes, one per way a provider takes a schema, the fakes behind them, the router's config, and
where each provider's upstream request carries the schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pydantic
import pytest

from lmrouter.structured import ANSWER_TOOL
from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.server import RouterServer
from lmrouter_azure.fake import FakeAzure

ROUTES = {  # model id: (fake, upstream model)
    "gpt": ("oai", "gpt-up"),
    "claude-native": ("ant", "claude-sonnet-4-5"),  # has output_config.format
    "claude-tool": ("ant", "claude-3-5-haiku-latest"),  # has not: the forced answer tool
    "gemini": ("gem", "gemini-up"),
    "azure": ("az", "gpt-deployment"),  # Azure OpenAI: OpenAI's wire on deployment URLs
}
MODELS = list(ROUTES)
ADMIN = "sk-structured"  # the operator key the tests call with
PROVIDER_TYPES = {"oai": "openai", "ant": "anthropic", "gem": "google", "az": "azure"}
AZURE_KEY = "azure-key"


class Event(pydantic.BaseModel):
    name: str
    day: int
    tags: list[str]


# What the fakes answer for Event's schema (a value that fits it).
EXPECTED = Event(name="test", day=1, tags=["test"])


class Fakes:
    """The fake OpenAI, Anthropic and Gemini servers behind :data:`ROUTES`."""

    def __init__(self) -> None:
        self.by_name: dict[str, Any] = {
            "oai": fake_openai.FakeOpenAI(),
            "ant": fake_anthropic.FakeAnthropic(),
            "gem": fake_gemini.FakeGemini(),
            "az": FakeAzure(api_key=AZURE_KEY),
        }

    @contextmanager
    def running(self) -> Iterator[dict[str, str]]:
        """Serve all three; yields each one's base URL by name."""
        with ExitStack() as stack:
            yield {n: stack.enter_context(f.run_in_thread()) for n, f in self.by_name.items()}

    def reset(self) -> None:
        """Forget the requests; every route's model answers by its fake's default again."""
        for fake in self.by_name.values():
            fake.reset()
        for name, upstream in ROUTES.values():
            fake = self.by_name[name]
            fake.script(upstream, type(fake.default)())

    def of(self, model: str) -> Any:
        return self.by_name[ROUTES[model][0]]

    def last(self, model: str) -> dict[str, Any]:
        """The body of the last upstream request for a model id."""
        fake = self.of(model)
        assert fake.requests, f"nothing reached {ROUTES[model][0]}"
        return dict(fake.requests[-1].json)


def router_config(admin: str, urls: dict[str, str]) -> str:
    """The router's TOML: an operator key, the three fakes as providers, :data:`ROUTES`."""
    text = f'[auth]\nkeys = ["{admin}"]\n'
    for name, url in urls.items():
        text += f'[providers.{name}]\ntype = "{PROVIDER_TYPES[name]}"\nbase_url = "{url}"\n'
        if name == "az":
            text += f'api_key = "{AZURE_KEY}"\n'
    for model, (provider, upstream) in ROUTES.items():
        text += f'[[models]]\nid = "{model}"\n[[models.routes]]\n'
        text += f'provider = "{provider}"\nmodel = "{upstream}"\n'
    return text


@contextmanager
def serve(fakes: Fakes, admin: str) -> Iterator[RouterServer]:
    """The fakes running and the router in front of them, with ``admin`` as operator key."""
    with fakes.running() as urls, RouterServer(router_config(admin, urls)) as server:
        yield server


def schema_reached(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The JSON schema an upstream got, from wherever its provider takes it."""
    if model == "gpt" and "input" in body:  # the Responses API, passed through to OpenAI
        fmt = body["text"]["format"]
        assert fmt["type"] == "json_schema"
        return dict(fmt["schema"])
    if model in ("gpt", "azure"):  # Azure: Responses converted to Chat Completions
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        return dict(fmt["json_schema"]["schema"])
    if model == "claude-native":
        assert "tools" not in body
        return dict(body["output_config"]["format"]["schema"])
    if model == "claude-tool":  # from the Anthropic dialect too: Claude 3.5 refuses the native form
        assert "output_config" not in body and "output_format" not in body
        assert "thinking" not in body
        assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
        (tool,) = body["tools"]
        assert tool["name"] == ANSWER_TOOL
        return dict(tool["input_schema"])
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    return dict(config["responseJsonSchema"])


def assert_event_schema(schema: dict[str, Any]) -> None:
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"name", "day", "tags"}
    assert set(schema["required"]) == {"name", "day", "tags"}


# Fixtures `router` and `fakes`, imported into each module that uses them (one router each).


@pytest.fixture(scope="module", name="router")
def router_fixture() -> Iterator[RouterServer]:
    """The router before the fakes (``router.fakes``), one per test module that imports it."""
    fakes = Fakes()
    with serve(fakes, ADMIN) as server:
        server.fakes = fakes  # type: ignore[attr-defined]
        yield server


@pytest.fixture(name="fakes")
def fakes_fixture(router: RouterServer) -> Fakes:
    fakes: Fakes = router.fakes  # type: ignore[attr-defined]
    fakes.reset()
    return fakes
