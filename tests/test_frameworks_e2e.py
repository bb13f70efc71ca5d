"""Structured output through the router from the agent frameworks people use, each pointed at it
as a user would (a base URL and a key), on every route: an OpenAI, an Anthropic model with
native structured outputs, one without (the forced answer tool), a Gemini and an Azure model.

Each test checks the pydantic object the framework parsed *and* what reached the fake upstream:
the schema in the provider's own place (OpenAI ``response_format`` / ``text.format``, Anthropic
``output_config.format`` or the answer tool, Gemini ``responseJsonSchema``). Where a framework
streams by default (``llm``, pydantic-ai's Anthropic model), that is the variant tested; the
other streamed variants have their own test. The openai SDK's other structured calls are in
test_structured_e2e.py.

The same calls, pointed straight at the fake OpenAI and Anthropic servers, capture what each
framework sends: ``python tests/test_frameworks_e2e.py`` rewrites tests/fixtures/frameworks/
(each file names the framework's version), and ``test_replay`` pushes every captured body through
every route, so what these versions send stays covered after they are upgraded.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import instructor
import llm
import openai
import orjson
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    set_tracing_disabled,
)
from click.testing import CliRunner
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI
from llm.cli import cli as llm_cli
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import NativeOutput
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.openai import OpenAIResponsesModel as PydanticResponsesModel
from pydantic_ai.profiles.anthropic import anthropic_model_profile
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from lmrouter.structured import ANSWER_TOOL
from lmrouter.testing import fake_anthropic, fake_gemini, fake_openai
from lmrouter.testing.server import RouterServer

sys.path.insert(0, str(Path(__file__).parent))
from structured_routes import (  # noqa: F401  (fixtures)
    ADMIN,
    EXPECTED,
    MODELS,
    ROUTES,
    Event,
    Fakes,
    assert_event_schema,
    fakes_fixture,
    router_fixture,
    schema_reached,
)

set_tracing_disabled(True)  # the Agents SDK would send traces to OpenAI
# LangChain's own stream handling (langchain-openai 1.8) warns while serializing its parsed
# chunk; nothing the router sends is involved.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
PROMPT = "Alice's party is on the 5th."


@dataclass(frozen=True)
class Urls:
    """Where a framework is pointed: the OpenAI dialect's base (``…/v1``), the Anthropic one's."""

    openai: str
    anthropic: str


# -- each framework's structured-output call, as its docs show it ------------------------------


def agents_responses(urls: Urls, model: str) -> Any:
    """The Agents SDK's default model speaks Responses."""
    client = openai.AsyncOpenAI(base_url=urls.openai, api_key=ADMIN, max_retries=0)
    agent = Agent(name="x", instructions="Extract the event.", output_type=Event)
    agent.model = OpenAIResponsesModel(model, client)
    return Runner.run_sync(agent, PROMPT).final_output


def agents_chat(urls: Urls, model: str) -> Any:
    client = openai.AsyncOpenAI(base_url=urls.openai, api_key=ADMIN, max_retries=0)
    agent = Agent(name="x", instructions="Extract the event.", output_type=Event)
    agent.model = OpenAIChatCompletionsModel(model, client)
    return Runner.run_sync(agent, PROMPT).final_output


def agents_streamed(urls: Urls, model: str) -> Any:
    client = openai.AsyncOpenAI(base_url=urls.openai, api_key=ADMIN, max_retries=0)
    agent = Agent(name="x", instructions="Extract the event.", output_type=Event)
    agent.model = OpenAIResponsesModel(model, client)

    async def run() -> Any:
        result = Runner.run_streamed(agent, PROMPT)
        events = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in events  # it did stream
        return result.final_output

    return asyncio.run(run())


def pydantic_ai_chat(urls: Urls, model: str) -> Any:
    provider = OpenAIProvider(base_url=urls.openai, api_key=ADMIN)
    agent = PydanticAgent(
        OpenAIChatModel(model, provider=provider), output_type=NativeOutput(Event)
    )
    return agent.run_sync(PROMPT).output


def pydantic_ai_responses(urls: Urls, model: str) -> Any:
    provider = OpenAIProvider(base_url=urls.openai, api_key=ADMIN)
    chosen = PydanticResponsesModel(model, provider=provider)
    return PydanticAgent(chosen, output_type=NativeOutput(Event)).run_sync(PROMPT).output


def pydantic_ai_stream(urls: Urls, model: str) -> Any:
    provider = OpenAIProvider(base_url=urls.openai, api_key=ADMIN)
    agent = PydanticAgent(
        OpenAIChatModel(model, provider=provider), output_type=NativeOutput(Event)
    )

    async def run() -> Any:
        async with agent.run_stream(PROMPT) as result:
            return await result.get_output()

    return asyncio.run(run())


def pydantic_ai_anthropic(urls: Urls, model: str) -> Any:
    """pydantic-ai's Anthropic model decides native output from the model's name: a router's
    ids are the operator's, so the user names the profile (of a model that has it)."""
    provider = AnthropicProvider(base_url=urls.anthropic, api_key=ADMIN)
    profile = anthropic_model_profile("claude-sonnet-4-5")
    chosen = AnthropicModel(model, provider=provider, profile=profile)
    return PydanticAgent(chosen, output_type=NativeOutput(Event)).run_sync(PROMPT).output


def openai_parse(urls: Urls, model: str) -> Any:
    client = openai.OpenAI(base_url=urls.openai, api_key=ADMIN, max_retries=0)
    reply = client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": PROMPT}], response_format=Event
    )
    return reply.choices[0].message.parsed


def llm_command(*options: str) -> Callable[[Urls, str], Any]:
    """``llm -m MODEL --schema …`` on a model added to extra-openai-models.yaml (llm's way to an
    OpenAI-compatible server), in the user directory the ``llm_home`` fixture makes."""

    def call(urls: Urls, model: str) -> Any:
        responses = "--responses" in options
        kind = "responses" if responses else "chat"
        home = llm.user_dir()  # LLM_USER_PATH, set by the llm_home fixture
        yaml = (
            f"- model_id: router-{kind}-{model}\n  model_name: {model}\n"
            f"  api_base: {urls.openai}\n  api_key_name: lmrouter\n  supports_schema: true\n"
            + ("  responses: true\n" if responses else "")
        )
        (home / "extra-openai-models.yaml").write_text(yaml)
        args = [o for o in options if o != "--responses"]
        schema = json.dumps(Event.model_json_schema())
        runner = CliRunner()
        result = runner.invoke(
            llm_cli, ["-m", f"router-{kind}-{model}", *args, "--schema", schema, PROMPT]
        )
        assert result.exit_code == 0, result.output
        return Event.model_validate_json(result.output)

    return call


def instructor_mode(mode: instructor.Mode) -> Callable[[Urls, str], Any]:
    def call(urls: Urls, model: str) -> Any:
        raw = openai.OpenAI(base_url=urls.openai, api_key=ADMIN, max_retries=0)
        client = instructor.from_openai(raw, mode=mode)
        return client.chat.completions.create(
            model=model,
            response_model=Event,
            max_retries=0,  # a wrong answer fails the test, not a second try
            messages=[{"role": "user", "content": PROMPT}],
        )

    return call


def langchain_openai(urls: Urls, model: str, **options: Any) -> Any:
    chat = ChatOpenAI(model=model, base_url=urls.openai, api_key=ADMIN, max_retries=0, **options)  # type: ignore[arg-type]
    return chat.with_structured_output(Event, method="json_schema").invoke(PROMPT)


def langchain_responses(urls: Urls, model: str) -> Any:
    return langchain_openai(urls, model, use_responses_api=True)


def langchain_stream(urls: Urls, model: str) -> Any:
    chat = ChatOpenAI(model=model, base_url=urls.openai, api_key=ADMIN, max_retries=0)  # type: ignore[arg-type]
    chunks = list(chat.with_structured_output(Event, method="json_schema").stream(PROMPT))
    assert chunks
    return chunks[-1]


def langchain_anthropic(urls: Urls, model: str) -> Any:
    chat = ChatAnthropic(model=model, base_url=urls.anthropic, api_key=ADMIN, max_retries=0)  # type: ignore[arg-type,call-arg]
    return chat.with_structured_output(Event, method="json_schema").invoke(PROMPT)


@dataclass(frozen=True)
class Call:
    framework: str  # the distribution, for its version
    dialect: str  # "openai" or "anthropic": what the framework speaks to the router
    run: Callable[[Urls, str], Any]
    mode: str = "json_schema"  # or "json_object", "prompt": where the schema travels
    streams: bool = False  # whether the framework asks for a stream here


CALLS = {
    "openai_chat_completions_parse": Call("openai", "openai", openai_parse),
    "openai_agents_responses": Call("openai-agents", "openai", agents_responses),
    "openai_agents_chat": Call("openai-agents", "openai", agents_chat),
    "openai_agents_streamed": Call("openai-agents", "openai", agents_streamed, streams=True),
    "pydantic_ai_chat": Call("pydantic-ai-slim", "openai", pydantic_ai_chat),
    "pydantic_ai_responses": Call("pydantic-ai-slim", "openai", pydantic_ai_responses),
    "pydantic_ai_stream": Call("pydantic-ai-slim", "openai", pydantic_ai_stream, streams=True),
    "pydantic_ai_anthropic": Call(
        "pydantic-ai-slim", "anthropic", pydantic_ai_anthropic, streams=True
    ),
    "llm_schema": Call("llm", "openai", llm_command(), streams=True),  # llm streams by default
    "llm_schema_no_stream": Call("llm", "openai", llm_command("--no-stream")),
    "llm_schema_responses": Call("llm", "openai", llm_command("--responses"), streams=True),
    "instructor_json_schema": Call(
        "instructor", "openai", instructor_mode(instructor.Mode.JSON_SCHEMA)
    ),
    "instructor_json": Call(
        "instructor", "openai", instructor_mode(instructor.Mode.JSON), "json_object"
    ),
    "instructor_md_json": Call(
        "instructor", "openai", instructor_mode(instructor.Mode.MD_JSON), "prompt"
    ),
    "langchain_openai": Call("langchain-openai", "openai", langchain_openai),
    "langchain_openai_responses": Call("langchain-openai", "openai", langchain_responses),
    "langchain_openai_stream": Call("langchain-openai", "openai", langchain_stream, streams=True),
    "langchain_anthropic": Call("langchain-anthropic", "anthropic", langchain_anthropic),
}

# instructor's JSON and MD_JSON modes write the schema into the prompt (json_object, or no JSON
# mode at all): what a model that followed the prompt answers.
ANSWER = EXPECTED.model_dump_json()
PROMPTED = {
    "json_object": {
        "oai": fake_openai.Behavior(text=ANSWER),
        "az": fake_openai.Behavior(text=ANSWER),
        "gem": fake_gemini.Behavior(text=ANSWER),
        "ant": fake_anthropic.Behavior(tool_input=EXPECTED.model_dump()),  # the answer tool
    },
    "prompt": {
        "oai": fake_openai.Behavior(text=f"```json\n{ANSWER}\n```"),
        "az": fake_openai.Behavior(text=f"```json\n{ANSWER}\n```"),
        "gem": fake_gemini.Behavior(text=f"```json\n{ANSWER}\n```"),
        "ant": fake_anthropic.Behavior(text=f"```json\n{ANSWER}\n```"),
    },
}


# -- the router and its fakes ------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def llm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llm's user directory (models, keys, its log database), with the router's key stored
    the way a user does: ``llm keys set lmrouter``."""
    home = str(tmp_path_factory.mktemp("llm"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLM_USER_PATH", home)
        result = CliRunner().invoke(llm_cli, ["keys", "set", "lmrouter", "--value", ADMIN])
        assert result.exit_code == 0, result.output
        yield home


# -- what reached the upstream -----------------------------------------------------------------


def assert_json_mode(body: dict[str, Any], model: str) -> None:
    """``json_object``: the provider's JSON mode (the answer tool, any object, on Anthropic)."""
    if model in ("gpt", "azure"):
        assert body["response_format"] == {"type": "json_object"}
    elif model.startswith("claude"):
        assert body["tools"][0]["name"] == ANSWER_TOOL
        assert body["tools"][0]["input_schema"] == {"type": "object"}
    else:
        assert body["generationConfig"]["responseMimeType"] == "application/json"


def prompt_text(value: Any) -> str:
    """Every string in a request's prompt, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(prompt_text(item) for item in value)
    if isinstance(value, dict):
        keys = ("messages", "contents", "system", "systemInstruction")
        return "\n".join(prompt_text(value[k]) for k in keys if k in value) or "\n".join(
            prompt_text(item) for item in value.values()
        )
    return ""


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", list(CALLS))
def test_structured_output(
    router: RouterServer, fakes: Fakes, llm_home: str, name: str, model: str
) -> None:
    call = CALLS[name]
    fakes.reset()
    for fake_name, behavior in PROMPTED.get(call.mode, {}).items():
        fakes.by_name[fake_name].script(ROUTES[model][1], behavior)
    urls = Urls(openai=router.openai_url, anthropic=router.url)
    parsed = call.run(urls, model)
    assert isinstance(parsed, Event) and parsed.model_dump() == EXPECTED.model_dump()
    (request,) = fakes.of(model).requests  # one request: no retry, no second try
    body = request.json
    assert (body.get("stream") is True or ":streamGenerateContent" in request.path) == call.streams
    if call.mode == "json_schema":
        assert_event_schema(schema_reached(body, model))
    else:  # the schema is in the prompt, which reached the model
        prompt = prompt_text(body)
        assert '"tags"' in prompt and "json" in prompt.lower()
        if call.mode == "json_object":
            assert_json_mode(body, model)


# -- replaying what they sent ------------------------------------------------------------------


def answer_text(path: str, response: httpx.Response, streamed: bool) -> str:
    """The answer's text from a response in the caller's dialect (a stream's deltas joined)."""
    if not streamed:
        data = response.json()
        if path.endswith("/chat/completions"):
            return str(data["choices"][0]["message"]["content"])
        if path.endswith("/responses"):
            items = [c for o in data["output"] if o["type"] == "message" for c in o["content"]]
            return "".join(c["text"] for c in items if c["type"] == "output_text")
        return "".join(block["text"] for block in data["content"] if block["type"] == "text")
    text = []
    for line in response.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = orjson.loads(line[6:])
        if path.endswith("/chat/completions"):
            text += [c["delta"].get("content") or "" for c in event["choices"]]
        elif event.get("type") == "response.output_text.delta":
            text.append(event["delta"])
        elif event.get("type") == "content_block_delta" and event["delta"]["type"] == "text_delta":
            text.append(event["delta"]["text"])
    return "".join(text)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_replay(router: RouterServer, fakes: Fakes, fixture: Path, model: str) -> None:
    """A captured request, sent as it was (the model aside) to every route."""
    record = json.loads(fixture.read_text())
    assert record["framework"] and record["version"]
    fakes.reset()
    for fake_name, behavior in PROMPTED.get(record["mode"], {}).items():
        fakes.by_name[fake_name].script(ROUTES[model][1], behavior)
    body = record["body"] | {"model": model}
    streamed = body.get("stream") is True
    response = httpx.post(
        router.url + record["path"],
        json=body,
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    text = answer_text(record["path"], response, streamed)
    if record["mode"] == "prompt":
        text = text.removeprefix("```json").removesuffix("```")
    assert Event.model_validate_json(text) == EXPECTED
    (request,) = fakes.of(model).requests
    if record["mode"] == "json_schema":
        assert_event_schema(schema_reached(request.json, model))
    elif record["mode"] == "json_object":
        assert_json_mode(request.json, model)


# -- capturing what each framework sends (python tests/test_frameworks_e2e.py) -----------------


def capture() -> None:
    """Run every call against the fakes themselves (as OpenAI and Anthropic) and keep the request
    each framework made, with its version, in tests/fixtures/frameworks/NAME.json."""
    oai, ant = fake_openai.FakeOpenAI(), fake_anthropic.FakeAnthropic()
    with (
        oai.run_in_thread() as oai_url,
        ant.run_in_thread() as ant_url,
        tempfile.TemporaryDirectory(prefix="llm-") as home,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("LLM_USER_PATH", home)
        CliRunner().invoke(llm_cli, ["keys", "set", "lmrouter", "--value", ADMIN])
        FIXTURES.mkdir(parents=True, exist_ok=True)
        for name, call in CALLS.items():
            fake = oai if call.dialect == "openai" else ant
            fake.reset()
            fake.script("MODEL", type(fake.default)())
            for behavior in PROMPTED.get(call.mode, {}).values():
                if isinstance(behavior, type(fake.default)):
                    fake.script("MODEL", behavior)
            call.run(Urls(openai=oai_url, anthropic=ant_url), "MODEL")
            request = fake.requests[-1]
            record = {
                "framework": call.framework,
                "version": importlib.metadata.version(call.framework),
                "captured_by": f"{name} in tests/test_frameworks_e2e.py",
                "mode": call.mode,
                "path": request.path.split("?")[0],
                "body": request.json,
            }
            path = FIXTURES / f"{name}.json"
            path.write_text(json.dumps(record, indent=2) + "\n")
            print(f"{path}: {call.framework} {record['version']}", file=sys.stderr)


if __name__ == "__main__":
    capture()
