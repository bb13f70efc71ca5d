"""What is Bedrock's own, through the real router with the official SDKs: API keys and session
tokens, a wrong secret, Bedrock's errors sorted into the caller's and the route's, exceptions
inside a stream, structured output by a forced tool, and CountTokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from lmrouter.testing.server import RouterServer
from lmrouter_bedrock.fake import Behavior, FakeBedrock

ADMIN = "sk-admin-bedrock"
AKID = "AKIAIOSFODNN7ROUTER01"
SECRET = "bedrock-secret/K7MDENG+router0123456789"
TOKEN = "FwoGZXIvYXdzEBYaDsession-token-0123456789"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS1fake0123456789"
CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
LLAMA = "us.meta.llama3-3-70b-instruct-v1:0"
SONNET = "us.anthropic.claude-sonnet-4-20250514-v1:0"
HELLO: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    fake = FakeBedrock({AKID: SECRET}, session_token=TOKEN, api_keys={API_KEY})
    fake.script("backup", Behavior(text="from the backup"))
    fake.script("invalid", Behavior(status=400, error_message="messages.0: text is too long"))
    fake.script(
        "bad-id", Behavior(status=400, error_message="The provided model identifier is invalid.")
    )
    fake.script("throttled", Behavior(status=429))
    fake.script("not-ready", Behavior(status=429, error_type="ModelNotReadyException"))
    fake.script("unavailable", Behavior(status=503))
    fake.script("denied", Behavior(status=403))
    fake.script("broken", Behavior(text="x" * 40, exception_after_chunks=2))
    fake.script(CLAUDE, Behavior(input_tokens=1234))
    fake.script(SONNET, Behavior(text="Paris.", thinking="The capital of France is Paris."))
    fake.script("guarded", Behavior(text="Sorry.", stop_reason="guardrail_intervened"))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(fake: FakeBedrock) -> Iterator[RouterServer]:
    signed = (
        f'access_key_id = "{AKID}"\nsecret_access_key = "{SECRET}"\nsession_token = "{TOKEN}"\n'
    )
    providers = {
        "sigv4": signed,
        "apikey": f'api_key = "{API_KEY}"\n',
        "wrong": f'access_key_id = "{AKID}"\nsecret_access_key = "wrong-{SECRET}"\n'
        f'session_token = "{TOKEN}"\n',
    }
    text = f'[auth]\nkeys = ["{ADMIN}"]\n[routing]\nbackoff = 0.01\n'
    for name, extra in providers.items():
        text += (
            f'[providers.{name}]\ntype = "bedrock"\nbase_url = "{fake.base_url}"\n'
            f'region = "us-east-1"\n{extra}'
        )
    models = {
        "claude": [("sigv4", CLAUDE)],
        "sonnet": [("sigv4", SONNET)],
        "guarded": [("sigv4", "guarded")],
        "llama": [("sigv4", LLAMA)],
        "keyed": [("apikey", CLAUDE)],
        "wrong-secret": [("wrong", CLAUDE), ("sigv4", "backup")],
        "broken": [("sigv4", "broken")],
        "all-throttled": [("sigv4", "throttled"), ("apikey", "throttled")],
    }
    for name in ("invalid", "bad-id", "throttled", "not-ready", "unavailable", "denied"):
        models[name] = [("sigv4", name), ("apikey", "backup")]
    for model, routes in models.items():
        text += f'[[models]]\nid = "{model}"\n'
        for provider, upstream in routes:
            text += f'  [[models.routes]]\n  provider = "{provider}"\n  model = "{upstream}"\n'
    with RouterServer(text) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


def test_sigv4_with_a_session_token_and_api_keys(client: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.reset()
    assert client.chat.completions.create(model="claude", messages=HELLO).choices[0].message
    signed = fake.requests[-1]
    assert signed.path == f"/model/{CLAUDE}/converse"
    assert signed.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert signed.headers["x-amz-security-token"] == TOKEN
    assert client.chat.completions.create(model="keyed", messages=HELLO).choices[0].message
    keyed = fake.requests[-1]
    assert keyed.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in keyed.headers


def test_a_wrong_secret_moves_on_and_is_never_shown(
    client: openai.OpenAI, fake: FakeBedrock, router: RouterServer
) -> None:
    fake.reset()
    answer = client.chat.completions.create(model="wrong-secret", messages=HELLO)
    assert answer.choices[0].message.content == "from the backup"
    assert [r.path.split("/")[2] for r in fake.requests] == [CLAUDE, "backup"]
    assert f"wrong-{SECRET}" not in router.logs() and SECRET not in router.logs()


@pytest.mark.parametrize("model", ["bad-id", "throttled", "not-ready", "unavailable", "denied"])
def test_route_errors_move_on(client: openai.OpenAI, model: str) -> None:
    answer = client.chat.completions.create(model=model, messages=HELLO)
    assert answer.choices[0].message.content == "from the backup"


def test_validation_errors_are_the_callers(client: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.reset()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="invalid", messages=HELLO)
    assert "text is too long" in refused.value.message
    assert not any("backup" in r.path for r in fake.requests)


def test_throttled_everywhere_passes_429_on(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="all-throttled", messages=HELLO)


def test_an_exception_inside_the_stream_ends_it_with_an_error(
    client: openai.OpenAI, router: RouterServer
) -> None:
    got = ""
    with pytest.raises(openai.APIError) as failed:
        for chunk in client.chat.completions.create(model="broken", messages=HELLO, stream=True):
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert got == "x" * 8  # two deltas of four characters, then the exception
    assert "modelStreamErrorException" in str(failed.value)
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    with (
        pytest.raises(anthropic.APIError) as also,
        claude.messages.stream(model="broken", max_tokens=100, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass
    assert "modelStreamErrorException" in str(also.value)


def test_structured_output_through_a_forced_tool(client: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.reset()
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["city", "celsius"],
    }
    answer = client.chat.completions.create(
        model="claude",
        messages=HELLO,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        },
    )
    assert json.loads(answer.choices[0].message.content or "") == {"city": "test", "celsius": 1}
    assert answer.choices[0].finish_reason == "stop"
    sent = fake.requests[-1].json["toolConfig"]
    assert sent["toolChoice"] == {"tool": {"name": "json_answer"}}
    assert sent["tools"][0]["toolSpec"]["inputSchema"]["json"] == schema


def test_count_tokens_asks_bedrock_for_claude_and_estimates_the_rest(
    router: RouterServer, fake: FakeBedrock
) -> None:
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    fake.reset()
    counted = claude.messages.with_raw_response.count_tokens(model="claude", messages=HELLO)
    assert counted.parse().input_tokens == 1234
    assert counted.headers["x-lmrouter-token-count"] == "provider"
    sent = fake.requests[-1]
    assert sent.path == f"/model/{CLAUDE}/count-tokens"
    assert sent.json == {"input": {"converse": {"messages": [
        {"role": "user", "content": [{"text": "Hi"}]}
    ]}}}  # fmt: skip
    estimated = claude.messages.with_raw_response.count_tokens(model="llama", messages=HELLO)
    assert estimated.headers["x-lmrouter-token-count"] == "estimate"
    assert estimated.parse().input_tokens > 0


def test_llama_refuses_tools_in_a_stream_as_bedrock_does(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="llama", messages=HELLO, tools=tools, stream=True)
    assert "tool use in streaming mode" in refused.value.message
    whole = client.chat.completions.create(model="llama", messages=HELLO, tools=tools)
    assert whole.choices[0].message.tool_calls


def test_claude_thinking_is_asked_for_signed_streamed_and_sent_back(
    router: RouterServer, fake: FakeBedrock
) -> None:
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    fake.reset()
    thinking: Any = {"type": "enabled", "budget_tokens": 2048}
    message = claude.messages.create(
        model="sonnet", max_tokens=4096, thinking=thinking, messages=HELLO
    )
    sent = fake.requests[-1].json
    assert sent["additionalModelRequestFields"] == {"thinking": thinking}
    assert sent["inferenceConfig"]["maxTokens"] == 4096
    first, answer = message.content
    assert first.type == "thinking" and first.thinking == "The capital of France is Paris."
    assert first.signature and answer.type == "text" and answer.text == "Paris."
    with claude.messages.stream(
        model="sonnet", max_tokens=4096, thinking=thinking, messages=HELLO
    ) as stream:
        streamed = stream.get_final_message()
    assert [block.type for block in streamed.content] == ["thinking", "text"]
    assert streamed.content[0].signature == first.signature  # type: ignore[union-attr]
    history: Any = [
        *HELLO,
        {"role": "assistant", "content": [first.model_dump(), {"type": "text", "text": "Paris."}]},
        {"role": "user", "content": "And Italy?"},
    ]
    claude.messages.create(model="sonnet", max_tokens=4096, thinking=thinking, messages=history)
    reasoning = fake.requests[-1].json["messages"][1]["content"][0]["reasoningContent"]
    assert reasoning["reasoningText"] == {"text": first.thinking, "signature": first.signature}


def test_a_guardrail_intervention_is_a_content_filter_finish(
    client: openai.OpenAI, router: RouterServer
) -> None:
    answer = client.chat.completions.create(model="guarded", messages=HELLO)
    assert answer.choices[0].finish_reason == "content_filter"
    claude = anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)
    message = claude.messages.create(model="guarded", max_tokens=100, messages=HELLO)
    assert message.stop_reason == "refusal"
