"""The Anthropic dialect's converters and readers, alone.

* Round trip: a valid Anthropic request → ``to_ir`` → the anthropic provider's ``build`` is the
  original request again, after the normalisations documented in both modules (strings become
  text blocks, ``cache_control`` becomes ``{"type": "ephemeral"}``, defaults and ``top_k``
  drop out).
* What the renderers write is what the anthropic SDK accepts: ``Message.model_validate`` for
  whole answers, ``RawMessageStreamEvent`` for every stream event, and the SDK's own stream
  accumulator rebuilds the same message ``render`` gives.
* Renderer → the provider's stream parser gives the IR events back.
* Unconvertible input is a 400 naming the field; the pass-through relay keeps ``event:`` lines
  and adds ``usage.cost``.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import anthropic
import orjson
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrouter import ir, sse
from lmrouter.config import Route
from lmrouter.dialects import anthropic as dialect
from lmrouter.errors import RouterError
from lmrouter.money import Rates, format_usd
from lmrouter.usage import Usage
from lmrouter.wire import anthropic as anthropic_wire
from lmrouter_anthropic import AnthropicConfig, AnthropicProvider, MessagesStreamParser

PROVIDER = AnthropicProvider(
    "claude", AnthropicConfig(type="anthropic", base_url="https://api.anthropic.com")
)
CTX: Any = SimpleNamespace(
    headers={},
    max_output_tokens=None,
    model=SimpleNamespace(max_output_tokens=None, reasoning=None),
    response_headers=[],
)
EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
RATES = Rates(
    input=3_000_000, output=15_000_000, cache_read=300_000, cache_write=3_750_000, request=0
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- a strategy for valid Anthropic requests ------------------------------------------------------

words = st.text(min_size=1, max_size=12).filter(str.strip)  # Anthropic refuses blank text
cache_control = st.sampled_from([None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}])
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
tool_input = st.dictionaries(st.text(max_size=6), json_value, max_size=3)


@st.composite
def text_block(draw: st.DrawFn) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": draw(words)}
    control = draw(cache_control)
    if control is not None:
        block["cache_control"] = control
    return block


image_block = st.one_of(
    st.builds(
        lambda media, data: {
            "type": "image",
            "source": {"type": "base64", "media_type": media, "data": data},
        },
        st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]),
        st.text("ABCDEFGHabcdefgh0123456789+/", min_size=4, max_size=16),
    ),
    st.builds(
        lambda path: {
            "type": "image",
            "source": {"type": "url", "url": f"https://img.test/{path}"},
        },
        st.text("abcdefgh", min_size=1, max_size=8),
    ),
)
thinking_block = st.one_of(
    st.builds(
        lambda text, sig: {"type": "thinking", "thinking": text, "signature": sig},
        st.text(max_size=12),
        words,
    ),
    st.builds(lambda data: {"type": "redacted_thinking", "data": data}, words),
)


@st.composite
def tool_result(draw: st.DrawFn, tool_id: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id}
    content = draw(
        st.one_of(
            st.none(),
            st.just(""),
            words,
            st.lists(st.one_of(text_block(), image_block), max_size=2),
        )
    )
    if content is not None:
        block["content"] = content
    is_error = draw(st.sampled_from([None, False, True]))
    if is_error is not None:
        block["is_error"] = is_error
    return block


@st.composite
def conversation(draw: st.DrawFn, tool_names: list[str]) -> list[dict[str, Any]]:
    """Alternating turns from the user; every tool_use answered first thing in the next turn."""
    ids = (f"toolu_{i:04d}" for i in itertools.count())
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    for turn in range(draw(st.integers(1, 3))):
        content: list[dict[str, Any]] = [draw(tool_result(tool_id)) for tool_id in pending]
        content += draw(
            st.lists(st.one_of(text_block(), image_block), min_size=0 if pending else 1, max_size=3)
        )
        if len(content) == 1 and "cache_control" not in content[0] and content[0]["type"] == "text":
            messages.append(
                {"role": "user", "content": draw(st.sampled_from([content, content[0]["text"]]))}
            )
        else:
            messages.append({"role": "user", "content": content})
        if turn == 2 or not draw(st.booleans()):
            break
        blocks = draw(st.lists(thinking_block, max_size=1)) + draw(
            st.lists(text_block(), max_size=2)
        )
        pending = []
        for _ in range(draw(st.integers(0, 2))):
            tool_id = next(ids)
            pending.append(tool_id)
            name = draw(st.sampled_from(tool_names)) if tool_names else draw(words)
            blocks.append(
                {"type": "tool_use", "id": tool_id, "name": name, "input": draw(tool_input)}
            )
        if not blocks:
            blocks = [draw(text_block())]
        messages.append({"role": "assistant", "content": blocks})
    if not pending and draw(st.booleans()) and messages[-1]["role"] == "user":
        messages.append({"role": "assistant", "content": [{"type": "text", "text": draw(words)}]})
    return messages


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.text("abcdefgh_-", min_size=1, max_size=8), max_size=3, unique=True))
    tools = []
    for name in names:
        tool: dict[str, Any] = {
            "name": name,
            "input_schema": {
                "type": "object",
                "properties": draw(st.dictionaries(words, st.just({"type": "string"}), max_size=2)),
            },
        }
        if draw(st.booleans()):
            tool["description"] = draw(words)
        tools.append(tool)
    thinking = draw(st.booleans())
    max_tokens = draw(st.integers(1025 if thinking else 1, 64_000))
    doc: dict[str, Any] = {
        "model": draw(words),
        "max_tokens": max_tokens,
        "messages": draw(conversation(names)),
    }
    system = draw(st.one_of(st.none(), words, st.lists(text_block(), min_size=1, max_size=2)))
    if system is not None:
        doc["system"] = system
    if tools:
        doc["tools"] = tools
        # Anthropic refuses thinking with a tool choice that forces a tool.
        forcing = [] if thinking else ["any", "tool"]
        choice = draw(st.sampled_from([None, "auto", "none", *forcing]))
        if choice is not None:
            doc["tool_choice"] = {"type": choice}
            if choice == "tool":
                doc["tool_choice"]["name"] = draw(st.sampled_from(names))
            if choice != "none" and draw(st.booleans()):
                doc["tool_choice"]["disable_parallel_tool_use"] = draw(st.booleans())
    if thinking:
        budget = draw(st.integers(1024, max_tokens - 1))
        doc["thinking"] = {"type": "enabled", "budget_tokens": budget}
        # With thinking on, Anthropic wants the last assistant turn that calls tools to open
        # with its (signed) thinking.
        assistants = [m for m in doc["messages"] if m["role"] == "assistant"]
        last = assistants[-1]["content"] if assistants else []
        if any(b["type"] == "tool_use" for b in last) and last[0]["type"] not in (
            "thinking",
            "redacted_thinking",
        ):
            last.insert(0, draw(thinking_block))
    optional: dict[str, st.SearchStrategy[Any]] = {
        "stop_sequences": st.lists(words, max_size=3),
        "temperature": st.just(1) if thinking else st.floats(0, 1),
        "top_p": st.floats(0.95, 1) if thinking else st.floats(0, 1),
        "top_k": st.integers(1, 500),
        "metadata": st.builds(lambda user: {"user_id": user}, words),
        "stream": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            doc[key] = draw(strategy)
    return doc


def blocks_of(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def normalised(doc: dict[str, Any], model: str) -> dict[str, Any]:
    """The documented normalisations: what an Anthropic request looks like after the IR."""

    def block(b: dict[str, Any]) -> dict[str, Any]:
        b = dict(b)
        if "cache_control" in b:
            b["cache_control"] = {"type": "ephemeral"}  # the IR keeps the breakpoint, not its ttl
        if b["type"] == "tool_result":
            content = [block(c) for c in blocks_of(b.pop("content", []))]
            if content:
                b["content"] = content
            if b.pop("is_error", False):
                b["is_error"] = True  # false is the default: not sent
        return b

    out = {k: v for k, v in doc.items() if k not in ("top_k",)}  # no IR field: dropped
    out["model"] = model
    out["messages"] = [
        {"role": m["role"], "content": [block(b) for b in blocks_of(m["content"])]}
        for m in doc["messages"]
    ]
    if "system" in doc:
        out["system"] = [block(b) for b in blocks_of(doc["system"])]
    choice = doc.get("tool_choice")
    if choice is not None and choice.get("disable_parallel_tool_use") is False:
        out["tool_choice"] = {k: v for k, v in choice.items() if k != "disable_parallel_tool_use"}
    if not doc.get("stop_sequences"):
        out.pop("stop_sequences", None)
    if not doc.get("stream"):
        out.pop("stream", None)
    return out


@SETTINGS
@given(requests())
def test_request_round_trip(doc: dict[str, Any]) -> None:
    request = dialect.to_ir(doc)
    sent = PROVIDER.build(CTX, request, Route(provider="claude", model="upstream"), "sk-ant")
    assert orjson.loads(sent.body) == normalised(orjson.loads(orjson.dumps(doc)), "upstream")


@SETTINGS
@given(requests(), st.sampled_from([{"type": "adaptive"}, {"type": "disabled"}, None]))
def test_valid_requests_always_convert(doc: dict[str, Any], thinking: Any) -> None:
    """Anthropic-only settings are dropped, never refused: ``adaptive``/``disabled`` thinking,
    server-side fields, per-tool ``cache_control``."""
    if thinking is not None:
        doc = {**doc, "thinking": thinking, "service_tier": "auto", "container": None}
    for tool in doc.get("tools", []):
        tool["cache_control"] = {"type": "ephemeral"}
    request = dialect.to_ir(doc)
    assert len(request.messages) == len(doc["messages"])
    if thinking is not None:
        assert request.thinking_budget is None
    PROVIDER.build(CTX, request, Route(provider="claude", model="upstream"), "sk-ant")


def test_to_ir_fields() -> None:
    request = dialect.to_ir(
        {
            "model": "claude",
            "max_tokens": 2000,
            "system": [
                {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "Sunny"}],
                            "is_error": True,
                        }
                    ],
                },
            ],
            "tools": [{"name": "w", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "temperature": 1,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "metadata": {"user_id": "u-1"},
            "stream": True,
        }
    )
    assert request.system == [ir.Text(text="Be terse.", cache=True)]
    assert request.messages[1].parts == [
        ir.Thinking(text="hmm", signature="sig"),
        ir.ToolCall(id="t1", name="w", arguments='{"city":"Paris"}'),
    ]
    assert request.messages[2].parts == [
        ir.ToolResult(id="t1", content=[ir.Text(text="Sunny")], is_error=True)
    ]
    assert request.tools == [ir.Tool(name="w", description="d", parameters={"type": "object"})]
    assert request.tool_choice == ir.ToolChoice(mode="required")
    assert request.parallel_tool_calls is False
    assert (request.stop, request.temperature, request.thinking_budget) == (["END"], 1.0, 1024)
    assert (request.user, request.stream, request.max_tokens) == ("u-1", True, 2000)


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("effort", "expected"),
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"), ("max", "high")],
)
def test_output_config_effort(effort: str, expected: str) -> None:
    doc = {"model": "m", "max_tokens": 10, "messages": [USER], "output_config": {"effort": effort}}
    assert dialect.to_ir(doc).reasoning_effort == expected


# -- what cannot be converted: a 400 naming the field ---------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": "ok"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "see"},
                            {"type": "document", "source": {}},
                        ],
                    },
                ]
            },
            "messages[2].content[1].source.type",  # documents convert; this one has no source
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "search_result"}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0].source",  # a search result needs its source
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source.type",
        ),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        ({"tools": [{"name": "t"}]}, "tools[0].input_schema"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    USER,
                    {"role": "system", "content": [{"type": "thinking", "thinking": ""}]},
                ]
            },
            "messages[1].content",
        ),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"temperature": "hot"}, "temperature"),
        (
            {"output_config": {"format": {"type": "xml", "schema": {}}}},
            "output_config.format.type",
        ),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
    ],
)
def test_unconvertible_input_names_the_field(extra: dict[str, Any], param: str) -> None:
    doc = {"model": "m", "max_tokens": 10, "messages": [USER], **extra}
    with pytest.raises(RouterError) as info:
        dialect.to_ir(doc)
    assert info.value.status == 400 and info.value.param == param
    assert info.value.message.startswith(param)
    body = orjson.loads(dialect.error_body(info.value))
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"nope", None),
        (b"[]", None),
        (b'{"max_tokens": 5, "messages": [{}]}', "model"),
        (b'{"model": "m", "messages": [{}]}', "max_tokens"),
        (b'{"model": "m", "max_tokens": 0, "messages": [{}]}', "max_tokens"),
        (b'{"model": "m", "max_tokens": true, "messages": [{}]}', "max_tokens"),
        (b'{"model": "m", "max_tokens": 5}', "messages"),
        (b'{"model": "m", "max_tokens": 5, "messages": []}', "messages"),
        (b'{"model": "m", "max_tokens": 5, "messages": [{}], "stream": "yes"}', "stream"),
    ],
)
def test_parse_checks(body: bytes, param: str | None) -> None:
    with pytest.raises(RouterError) as info:
        dialect.parse_messages(body)
    assert info.value.status == 400 and info.value.param == param


def test_parse_reads_routing_fields() -> None:
    parsed = dialect.parse_messages(
        b'{"model": "m", "max_tokens": 77, "messages": [{"role": "user", "content": "hi"}],'
        b' "stream": true}'
    )
    assert (parsed.model, parsed.stream, parsed.max_output_tokens, parsed.n) == ("m", True, 77, 1)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_shapes(status: int, kind: str) -> None:
    err = RouterError(status, "words")
    assert orjson.loads(dialect.error_body(err)) == {
        "type": "error",
        "error": {"type": kind, "message": "words"},
    }
    assert dialect.stream_error(err) == b"event: error\ndata: " + dialect.error_body(err) + b"\n\n"


# -- answers: render ------------------------------------------------------------------------------

finish_reasons = st.sampled_from(["stop", "length", "tool_calls", "content_filter"])


@st.composite
def usages(draw: st.DrawFn) -> Usage | None:
    if not draw(st.booleans()):
        return None
    cached, written = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    completion = draw(st.integers(0, 10**6))
    return Usage(
        prompt_tokens=cached + written + draw(st.integers(0, 10**6)),
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=draw(st.integers(0, completion)),
    )


text_part = st.builds(lambda t: ir.Text(text=t), st.text(max_size=20))
call_part = st.builds(
    lambda i, name, args: ir.ToolCall(id=f"call_{i}", name=name, arguments=args),
    st.integers(0, 99),
    words,
    st.one_of(tool_input.map(lambda v: orjson.dumps(v).decode()), st.text(max_size=10)),
)
thinking_part = st.one_of(
    st.builds(
        lambda t, s: ir.Thinking(text=t, signature=s), st.text(max_size=10), st.text(max_size=10)
    ),
    st.builds(lambda d: ir.Thinking(redacted=d), words),
)


@st.composite
def answers(draw: st.DrawFn) -> ir.ChatResponse:
    finish = draw(finish_reasons)
    return ir.ChatResponse(
        id=draw(st.sampled_from(["chatcmpl-1", "msg_2", ""])),
        model=draw(words),
        parts=draw(st.lists(st.one_of(text_part, call_part, thinking_part), max_size=5)),
        finish_reason=finish,
        stop_sequence=draw(st.one_of(st.none(), words)) if finish == "stop" else None,
        usage=draw(usages()),
    )


STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


@SETTINGS
@given(answers(), st.integers(0, 10**12))
def test_render_is_a_valid_message(answer: ir.ChatResponse, cost: int) -> None:
    doc = orjson.loads(dialect.render(answer, {"model": "asked"}, cost))
    message = anthropic.types.Message.model_validate(doc)
    assert message.id.startswith("msg_") and message.model == answer.model
    expected = "stop_sequence" if answer.stop_sequence else STOP_REASONS[answer.finish_reason]
    assert message.stop_reason == expected and message.stop_sequence == answer.stop_sequence
    kept = [p for p in answer.parts if not (isinstance(p, ir.Text) and not p.text)]
    assert [b.type for b in message.content] == [
        {"Text": "text", "ToolCall": "tool_use"}.get(type(p).__name__)
        or ("redacted_thinking" if p.redacted else "thinking")  # type: ignore[union-attr]
        for p in kept
    ]
    usage = answer.usage or Usage()
    assert (
        message.usage.input_tokens
        + (message.usage.cache_read_input_tokens or 0)
        + (message.usage.cache_creation_input_tokens or 0)
        == usage.prompt_tokens
    )
    assert message.usage.cache_read_input_tokens == usage.cached_tokens
    assert message.usage.output_tokens == usage.completion_tokens
    assert doc["usage"]["cost"] == float(format_usd(cost))


def test_render_tool_input_is_an_object() -> None:
    answer = ir.ChatResponse(
        id="x",
        model="gpt",
        parts=[
            ir.ToolCall(id="a", name="f", arguments='{"k": [1, 2]}'),
            ir.ToolCall(id="b", name="f", arguments="{broken"),
            ir.ToolCall(id="c", name="f", arguments="[1]"),
        ],
        finish_reason="tool_calls",
    )
    content = orjson.loads(dialect.render(answer, {}, 0))["content"]
    assert [c["input"] for c in content] == [{"k": [1, 2]}, {}, {}]


# -- streams: the renderer ------------------------------------------------------------------------


def stream_of(answer: ir.ChatResponse, size: int) -> list[ir.Event]:
    """The IR events a provider would send for ``answer`` (tool arguments in ``size`` pieces)."""
    events: list[ir.Event] = [ir.StreamStart(id=answer.id, model=answer.model)]
    tools = 0
    for part in answer.parts:
        if isinstance(part, ir.Text):
            events += [
                ir.TextDelta(text=part.text[i : i + size]) for i in range(0, len(part.text), size)
            ]
        elif isinstance(part, ir.ToolCall):
            events.append(ir.ToolCallStart(index=tools, id=part.id, name=part.name))
            args = part.arguments
            events += [
                ir.ToolCallDelta(index=tools, arguments=args[i : i + size])
                for i in range(0, len(args), size)
            ]
            tools += 1
        elif isinstance(part, ir.Thinking):
            if part.text:
                events.append(ir.ThinkingDelta(text=part.text))
            if part.signature:
                events.append(ir.ThinkingDelta(signature=part.signature))
    events.append(ir.Finish(finish_reason=answer.finish_reason, stop_sequence=answer.stop_sequence))
    return events


@st.composite
def streamable_answers(draw: st.DrawFn) -> ir.ChatResponse:
    """Answers a stream can carry exactly: tool arguments are JSON objects, no redacted thinking,
    no two text (or thinking) parts in a row (a stream joins them into one block)."""
    answer = draw(answers())
    parts: list[ir.Part] = []
    for part in answer.parts:
        if isinstance(part, ir.Thinking) and part.redacted:
            continue
        if isinstance(part, ir.ToolCall) and not isinstance(
            anthropic_wire.tool_input(part.arguments), dict
        ):
            continue
        if isinstance(part, ir.ToolCall):
            part = ir.ToolCall(
                id=part.id,
                name=part.name,
                arguments=orjson.dumps(anthropic_wire.tool_input(part.arguments)).decode(),
            )
        if isinstance(part, ir.Text | ir.Thinking) and not (
            part.text or getattr(part, "signature", "")
        ):
            continue
        if parts and type(parts[-1]) is type(part) and not isinstance(part, ir.ToolCall):
            continue
        parts.append(part)
    answer.parts = parts
    return answer


def rendered(events: list[ir.Event], usage: Usage | None, cost: int, cut: int) -> bytes:
    renderer = dialect.MessagesRenderer({"model": "asked"}, True)
    out = renderer.render(events[:cut]) + renderer.render(events[cut:])
    return out + renderer.finish(usage, cost)


def sdk_events(body: bytes) -> list[Any]:
    decoder = sse.SSEDecoder()
    out = []
    for event in decoder.feed(body) + decoder.close():
        data = orjson.loads(event.data)
        assert event.event == data["type"], "every event carries its event: line"
        out.append(EVENT.validate_python(data))
    return out


@SETTINGS
@given(streamable_answers(), st.integers(1, 5), st.integers(0, 30), st.integers(0, 10**9))
def test_renderer_events_build_the_rendered_message(
    answer: ir.ChatResponse, size: int, cut: int, cost: int
) -> None:
    """The SDK's own accumulator, fed the stream, ends with the message ``render`` gives."""
    events = sdk_events(rendered(stream_of(answer, size), answer.usage, cost, cut))
    assert [e.type for e in events[:1] + events[-2:]] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    whole = anthropic.types.Message.model_validate(orjson.loads(dialect.render(answer, {}, cost)))
    assert [b.model_dump(exclude={"parsed_output"}) for b in snapshot.content] == [
        b.model_dump() for b in whole.content
    ]
    assert (snapshot.stop_reason, snapshot.stop_sequence) == (
        whole.stop_reason,
        whole.stop_sequence,
    )
    assert snapshot.usage.input_tokens == whole.usage.input_tokens
    assert snapshot.usage.output_tokens == whole.usage.output_tokens
    assert snapshot.usage.cache_read_input_tokens == whole.usage.cache_read_input_tokens
    assert events[-2].usage.model_extra["cost"] == pytest.approx(float(format_usd(cost)))
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.index for e in starts] == list(range(len(starts))), "block indexes count up"
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert stops == [e.index for e in starts], "every block is closed, in order"


@SETTINGS
@given(streamable_answers(), st.integers(1, 5), st.integers(0, 30))
def test_renderer_then_stream_parser_gives_the_events_back(
    answer: ir.ChatResponse, size: int, cut: int
) -> None:
    sent = stream_of(answer, size)
    body = rendered(sent, answer.usage, 0, cut)
    parser = MessagesStreamParser()
    got: list[ir.Event] = []
    for i in range(0, len(body), 17):
        got += parser.feed(body[i : i + 17])
    got += parser.close()
    usage_updates = [e for e in got if isinstance(e, ir.UsageUpdate)]
    content = [e for e in got if not isinstance(e, ir.UsageUpdate)]
    start = sent[0]
    assert isinstance(start, ir.StreamStart)
    first = content[0]
    assert isinstance(first, ir.StreamStart) and first.model == start.model
    assert first.id == dialect.message_id(start.id) if start.id else first.id.startswith("msg_")
    assert content[1:] == sent[1:]
    assert usage_updates[-1].usage == (answer.usage or Usage())


def test_renderer_without_stream_start_still_opens_the_message() -> None:
    renderer = dialect.MessagesRenderer({"model": "asked"}, True)
    body = renderer.render([ir.TextDelta(text="hi")]) + renderer.finish(None, 0)
    events = sdk_events(body)
    assert events[0].type == "message_start" and events[0].message.model == "asked"
    assert events[-2].usage.output_tokens == 0 and events[-1].type == "message_stop"


# -- pass-through: the relay and whole answers ----------------------------------------------------


def frame(name: str | None, data: dict[str, Any]) -> bytes:
    return sse.encode(orjson.dumps(data), name)


UPSTREAM = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 100,
                    "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 10,
                    "output_tokens": 1,
                },
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello there"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 20},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]
UPSTREAM_BODY = b"".join(frame(name, data) for name, data in UPSTREAM)
FINAL = Usage(prompt_tokens=1110, completion_tokens=20, cached_tokens=1000, cache_write_tokens=10)


def relay_all(body: bytes, size: int) -> tuple[dialect.MessagesStreamRelay, bytes]:
    relay = dialect.MessagesStreamRelay(True, RATES)
    out = b"".join(relay.feed(body[i : i + size]) for i in range(0, len(body), size))
    return relay, out + relay.close()


@SETTINGS
@given(st.integers(1, len(UPSTREAM_BODY)))
def test_relay_keeps_events_and_adds_cost(size: int) -> None:
    relay, out = relay_all(UPSTREAM_BODY, size)
    assert relay.complete and not relay.failed
    assert relay.usage == FINAL
    events = [(e.event, orjson.loads(e.data)) for e in sse.SSEDecoder().feed(out)]
    assert [name for name, _ in events] == [name for name, _ in UPSTREAM]
    delta = events[-2][1]
    cost = RATES.cost(FINAL)
    assert delta["usage"] == {"output_tokens": 20, "cost": float(format_usd(cost))}
    assert [data for _, data in events[:-2]] == [data for _, data in UPSTREAM[:-2]]


def test_relay_names_events_that_lack_a_name_and_finishes_a_stream_without_stop() -> None:
    body = b"".join(frame(None, data) for _, data in UPSTREAM[:-1])
    relay, out = relay_all(body, 64)
    names = [e.event for e in sse.SSEDecoder().feed(out)]
    assert names == [name for name, _ in UPSTREAM], "message_stop added: the answer was whole"
    assert relay.complete


def test_relay_on_a_cut_stream_estimates_only_the_output() -> None:
    relay, _ = relay_all(b"".join(frame(n, d) for n, d in UPSTREAM[:4]), 50)
    assert not relay.complete and relay.usage is None
    estimate = relay.estimated_usage(prompt_chars=40)
    assert estimate.estimated
    assert (estimate.prompt_tokens, estimate.cached_tokens) == (1110, 1000), (
        "exact from message_start"
    )
    assert estimate.completion_tokens == 3  # "Hello there": 11 characters


def test_relay_notes_an_error_event() -> None:
    error = frame(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    relay, out = relay_all(b"".join(frame(n, d) for n, d in UPSTREAM[:4]) + error, 1000)
    assert relay.failed and not relay.complete
    assert out.endswith(error)


def test_finish_json_reads_cache_usage_and_adds_cost() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "content": [],
        "usage": {
            "input_tokens": 100,
            "output_tokens": 20,
            "cache_creation_input_tokens": 10,
            "cache_read_input_tokens": 1000,
        },
    }
    body, usage, cost = dialect.finish_json(
        orjson.dumps(message, option=orjson.OPT_INDENT_2), RATES
    )
    assert usage == FINAL and cost == RATES.cost(FINAL)
    out = orjson.loads(body)
    assert out["usage"]["cost"] == float(format_usd(cost))
    assert {k: v for k, v in out["usage"].items() if k != "cost"} == message["usage"]
    assert dialect.finish_json(b"not json", RATES) == (b"not json", None, 0)


def test_server_tools_are_dropped_and_named() -> None:
    """Server tools only Anthropic runs are left out (the provider side names them in
    ``x-lmrouter-dropped-tools``, or refuses them by the operator's choice); web search is
    kept as a hosted tool, for providers with a search of their own."""
    tools = [
        {"name": "t", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search"},
        {"type": "code_execution_20250522", "name": "code_execution"},
    ]
    request = dialect.to_ir({"model": "m", "max_tokens": 10, "messages": [USER], "tools": tools})
    assert [tool.name for tool in request.tools] == ["t"]
    assert request.hosted_tools == [("tools[1].type", "web_search_20250305")]
    assert request.dropped_tools == [("tools[2].type", "code_execution_20250522")]
