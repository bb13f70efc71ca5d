"""The Responses API end to end: the official openai SDK's ``client.responses`` → the real router
(granian) → the openai provider's IR converters → a fake OpenAI Chat Completions upstream.

The fake speaks only Chat Completions, so everything here crosses the IR both ways: the answers
must equal what the upstream generated, in the shape the SDK's own models and stream helper
accept, with usage and an exact ``cost``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lmrouter.sse import SSEDecoder
from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_probe.records import ends

ADMIN = "sk-admin-responses"
UPSTREAM_KEY = "sk-upstream-responses"
HELLO = "Hello there, router!"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# How the router reports a stream its upstream cut: a broken body or one that just ended.
CUT_CODES = ("upstream_error", "upstream_incomplete")
INPUT_PRICE, OUTPUT_PRICE = 0.15, 0.60  # USD per 1M tokens, as configured below


def config(upstream: str, record: Path) -> str:
    price = {"input": INPUT_PRICE, "output": OUTPUT_PRICE}
    return kit.config(
        admin=ADMIN,
        probe={"record": record},
        # converted to Chat Completions: what this file tests
        providers={"up": kit.provider("openai", upstream, UPSTREAM_KEY, responses=False)},
        models={
            "gpt": kit.route("up", "gpt-x", price=price),
            "long": kit.route("up", "long-x", price=price),
            "drop": kit.route("up", "drop-x"),
            "bad": kit.route("up", "bad-400"),
        },
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=UPSTREAM_KEY)
    fake.script("long-x", Behavior(text="z" * 200, chunk_chars=4))
    fake.script("drop-x", Behavior(text="y" * 200, chunk_chars=4, drop_after_chunks=3))
    fake.script("bad-400", Behavior(status=400, error_message="messages[0] is invalid"))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def router(fake: FakeOpenAI, probe_path: str, record: Path) -> Iterator[RouterServer]:
    with RouterServer(config(fake.base_url, record), python_path=[probe_path]) as server:
        yield server


@pytest.fixture
def client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def direct(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=UPSTREAM_KEY, max_retries=0)


def expected_cost(usage: Any) -> float:
    return (usage.input_tokens * INPUT_PRICE + usage.output_tokens * OUTPUT_PRICE) / 1e6


def upstream_text(direct: openai.OpenAI, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    return direct.chat.completions.create(model="gpt-x", messages=messages, **kwargs)  # type: ignore[arg-type]


# -- text ---------------------------------------------------------------------------------------


def test_create_matches_the_upstream(
    client: openai.OpenAI, direct: openai.OpenAI, fake: FakeOpenAI, record: Path
) -> None:
    raw = client.responses.with_raw_response.create(
        model="gpt", instructions="Be brief.", input=HELLO, max_output_tokens=500
    )
    response = raw.parse()
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == "gpt-x"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    roles = [m["role"] for m in sent.json["messages"]]
    assert roles[-1] == "user" and roles[0] in ("system", "developer")
    assert "Be brief." in json.dumps(sent.json["messages"][0])
    assert 500 in (sent.json.get("max_completion_tokens"), sent.json.get("max_tokens"))

    want = upstream_text(direct, [{"role": "user", "content": HELLO}]).choices[0].message.content
    assert response.output_text == want and HELLO in response.output_text
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.model == "gpt-x", "answers carry the upstream's model name"
    assert [item.type for item in response.output] == ["message"]
    assert response.instructions == "Be brief." and response.store is True  # kept (plugin)
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected_cost(usage), rel=1e-12)

    [end] = ends(record, raw.headers["x-request-id"])
    assert end["status"] == "ok" and end["usage"]["prompt_tokens"] == usage.input_tokens
    assert end["cost_pico"] == round(expected_cost(usage) * 1e12)


def test_stream_events_and_usage(client: openai.OpenAI) -> None:
    whole = client.responses.create(model="gpt", input=HELLO)
    events = list(client.responses.create(model="gpt", input=HELLO, stream=True))
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1, "text arrives in pieces"
    final = events[-1].response  # type: ignore[union-attr]
    assert "".join(deltas) == final.output_text == whole.output_text
    assert final.id == events[0].response.id  # type: ignore[union-attr]
    usage = final.usage
    assert usage is not None and usage.input_tokens == whole.usage.input_tokens  # type: ignore[union-attr]
    assert usage.model_extra is not None
    assert usage.model_extra["cost"] == pytest.approx(expected_cost(usage), rel=1e-12)


def test_stream_helper_accumulates_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt", input=HELLO) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts) and HELLO in final.output_text
    assert final.status == "completed" and final.usage is not None


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model="long", input=HELLO, max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "z" * 64  # the fake stops after 16 four-character pieces
    assert response.output[-1].status == "incomplete"  # type: ignore[union-attr]

    events = list(
        client.responses.create(model="long", input=HELLO, max_output_tokens=16, stream=True)
    )
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert last.response.output_text == "z" * 64


# -- tools --------------------------------------------------------------------------------------


def test_function_call_round_trip(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first = client.responses.create(model="gpt", input=question, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id and call.id and call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    sent = fake.requests[-1].json
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]

    # Stateless: the client sends the whole conversation back, the call and its output.
    follow_up = [
        *question,
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "12 degrees"},
    ]
    second = client.responses.create(model="gpt", input=follow_up, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert second.output_text and second.output[0].type == "message"
    messages = fake.requests[-1].json["messages"]
    assistant = next(m for m in messages if m["role"] == "assistant")
    assert assistant["tool_calls"][0]["id"] == call.call_id
    assert assistant["tool_calls"][0]["function"]["arguments"] == call.arguments
    tool = messages[-1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == call.call_id
    assert "12 degrees" in json.dumps(tool["content"])


def test_streamed_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="gpt",
        input="Weather in Rome?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == "".join(deltas) and json.loads(call.arguments)["city"]
    assert call.status == "completed"


# -- errors, in OpenAI's shape ------------------------------------------------------------------


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="nope", input=HELLO)
    assert info.value.code == "model_not_found"
    assert info.value.body == {
        "message": "The model `nope` does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"previous_response_id": "resp_abc"}, "previous_response_id", "not found"),
        ({"background": True, "store": False}, "background", "store"),
        ({"tools": [{"type": "custom", "name": "x"}]}, "tools[0].type", "namespace"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type", "json_schema"),
        (
            # files convert (tests/test_files_e2e.py), but only in user messages
            {"input": [{"role": "assistant", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
            "only supported in user messages",
        ),
    ],
)
def test_unsupported_requests_are_400(
    client: openai.OpenAI, fake: FakeOpenAI, kwargs: dict[str, Any], param: str, words: str
) -> None:
    fake.reset()
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(**{"model": "gpt", "input": HELLO, **kwargs})
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == param and words in body["message"]
    assert body["type"] == "invalid_request_error"
    assert not fake.requests, "refused before anything went upstream"


def test_previous_response_id_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt", input=HELLO, previous_response_id="resp_abc")
    assert info.value.body["message"] == (  # type: ignore[index]
        "Previous response with id 'resp_abc' not found."
    )


def test_upstream_400_passes_through(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="bad", input=HELLO)
    assert "messages[0] is invalid" in str(info.value)


def test_stream_cut_upstream_raises_in_the_sdk(client: openai.OpenAI, record: Path) -> None:
    raw = client.responses.with_raw_response.create(model="drop", input=HELLO, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as info:
        for event in raw.parse():
            if event.type == "response.output_text.delta":
                text += event.delta
    body = info.value.body
    assert isinstance(body, dict) and body["code"] in CUT_CODES and body["message"]
    assert text == "y" * 12, "what came before the cut reached the client"
    [end] = ends(record, raw.headers["x-request-id"])
    assert end["status"] == "upstream_error"


def test_stream_cut_error_event_is_numbered(router: RouterServer) -> None:
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{router.openai_url}/responses",
            json={"model": "drop", "input": HELLO, "stream": True},
            headers={"authorization": f"Bearer {ADMIN}"},
        ) as response,
    ):
        frames = SSEDecoder().feed(response.read())
    events = [json.loads(frame.data) for frame in frames]
    assert [frame.event for frame in frames] == [event["type"] for event in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "error" and events[-1]["code"] in CUT_CODES
    assert events[-1]["error"]["message"] == events[-1]["message"]
    assert b"[DONE]" not in b"".join(frame.data for frame in frames)
