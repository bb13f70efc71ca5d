"""A fake Anthropic upstream that speaks the real Messages API, for tests.

Point the router (or the anthropic SDK) at it instead of ``https://api.anthropic.com``::

    from lmrouter.testing.fake_anthropic import Behavior, FakeAnthropic

    fake = FakeAnthropic(api_key="sk-ant-test")
    fake.script("claude-x", Behavior(text="Hi there", chunk_delay=0.01))
    with fake.run_in_thread() as base_url:  # "http://127.0.0.1:PORT" — clients add /v1/messages
        ...
    assert fake.requests[0].json["model"] == "claude-x"

What it reproduces from the real API, so that converters are built for the real protocol:

* ``POST /v1/messages``: the key in ``x-api-key`` (or ``Authorization: Bearer``) and a required
  ``anthropic-version`` header; Anthropic's request validation with its ``field: problem``
  messages — ``model``/``max_tokens``/``messages`` required, roles, content block shapes, no
  empty text blocks, every ``tool_use`` answered by a ``tool_result`` in the next message (and
  no ``tool_result`` without its ``tool_use``), ``temperature``/``top_p`` in 0 to 1, tool schemas,
  ``tool_choice``, thinking budgets (at least 1024 and below ``max_tokens``), no thinking with
  a forced tool choice, structured output (``output_config.format``, and ``output_format``
  under its beta header) answered with JSON that fits the schema and refused for models
  before it (Claude 3.x, Sonnet and Opus 4.0, by name), ``system`` messages inside
  ``messages`` only under the ``mid-conversation-system-…`` beta header, and no ``thinking``
  setting at all for Claude 3.5 and older models (by name).
* ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}`` counted as for a message.
* The ``message`` object: ``msg_…`` ids, content blocks (thinking with a signature when
  ``thinking`` is enabled, text, ``tool_use`` with an input built from the tool's schema when
  tools are given), ``stop_reason`` (end_turn, tool_use, max_tokens, stop_sequence with the
  sequence found in the text), usage with cache counts.
* Streams: every event with its ``event:`` line — ``message_start`` (input and cache usage),
  per block ``content_block_start`` / ``content_block_delta`` (``text_delta``,
  ``input_json_delta`` starting with an empty fragment, ``thinking_delta``, ``signature_delta``)
  / ``content_block_stop``, a ``ping`` after the first block start, ``message_delta`` with the
  stop reason and *cumulative* usage, ``message_stop``.
* Errors ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with Anthropic's
  statuses and types (402 billing_error, 429 rate_limit_error with ``retry-after``, 529
  overloaded_error …); ``request-id`` on every answer.

Failure scripting (:class:`Behavior`): delays before the headers and between events, a dropped
connection after N content deltas, a mid-stream ``event: error`` after N content deltas, scripted
usage (cache counts) and stop reasons. Streaming clients that go away are recorded in
:attr:`FakeAnthropic.disconnects`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson
from aiohttp import web

from lmrouter.testing.fakeserver import (
    Disconnect,
    Event,
    FakeServer,
    Recorded,
    ToolCall,
    close_connection,
    content_index,
    content_text,
    retry_after,
    sample_arguments,
    sample_json,
    split_text,
)

__all__ = ["Behavior", "Disconnect", "FakeAnthropic", "Recorded", "ToolCall"]

_JSON_TYPE = "application/json"
_SSE_TYPE = "text/event-stream; charset=utf-8"
_MIN_BUDGET = 1024
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
)

_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    # status: (type, message) — what the real API sends for these statuses.
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: (
        "billing_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans &"
        " Billing to upgrade or purchase credits.",
    ),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per"
        " minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(slots=True)
class Behavior:
    """How the fake answers requests for one model (see :meth:`FakeAnthropic.script`).

    Everything is optional; ``Behavior()`` answers like a healthy, fast Claude model.
    """

    text: str | None = None
    """The reply. ``None``: ``"Hello! You said: "`` + the first 40 characters of the last user
    message's text."""
    tool_call: bool = True
    """Answer a request with ``tools`` (and ``tool_choice`` other than ``none``) with a
    ``tool_use`` of the named tool or else the first one, its input built from the schema —
    unless the last message carries ``tool_result`` blocks (then answer with text, so a round
    trip ends). With ``tool_choice`` ``auto`` a short text block comes first, as Claude does."""
    call: ToolCall | None = None
    """The ``tool_use`` to make instead, when the request offers that tool."""
    tool_input: dict[str, Any] | None = None
    """The ``tool_use`` input instead of one built from the schema (a model that followed a
    prompt, say a JSON schema written in it, where the tool's own schema is only ``object``)."""
    thinking: str | None = None
    """The thinking text when the request enables ``thinking`` (default: ``"Let me think about
    "`` + the first 30 characters of the last user text)."""
    status: int | None = None
    """Answer with this HTTP status and an Anthropic error body instead of a message."""
    error_message: str | None = None
    """The error's ``message`` (default: what Anthropic says for that status)."""
    error_type: str | None = None
    """The error's ``type`` (default per status: ``rate_limit_error`` for 429 …)."""
    retry_after: float | None = None
    """Send a ``retry-after`` header (seconds) with the error."""
    first_byte_delay: float = 0.0
    """Seconds to wait before sending the status line and headers."""
    chunk_delay: float = 0.0
    """Seconds between stream events. ``0`` sends the whole stream in one write."""
    chunk_chars: int = 4
    """Characters per content delta (text, thinking or tool input); ``<= 0``: one delta."""
    drop_after_chunks: int | None = None
    """Stream: close the connection right after that many content deltas. Non-stream: close
    without any response."""
    error_after_chunks: int | None = None
    """Stream: after that many content deltas send ``event: error`` (``stream_error_type``) and
    end the stream, as Anthropic does when it is overloaded mid-answer."""
    stream_error_type: str = "overloaded_error"
    """The mid-stream error's type."""
    usage: dict[str, int] | None = None
    """Override usage: ``input_tokens``, ``output_tokens``, ``cache_creation_input_tokens``,
    ``cache_read_input_tokens``. Unset ones are computed: input = characters of the prompt's
    text // 4 + 4 per message; output = number of content deltas (same in stream and not)."""
    stop_reason: str | None = None
    """Override the ``stop_reason``."""


@dataclass(slots=True)
class _ApiError(Exception):
    status: int
    type: str
    message: str
    headers: dict[str, str] | None = None


@dataclass(slots=True)
class _Block:
    kind: str  # text, thinking, tool_use
    pieces: list[str]
    id: str = ""
    name: str = ""
    signature: str = ""


@dataclass(slots=True)
class _Request:
    model: str
    max_tokens: int
    messages: list[dict[str, Any]]
    system: Any
    stream: bool
    tools: list[dict[str, Any]]
    tool_choice: dict[str, Any]
    stop_sequences: list[str]
    thinking: bool
    output_schema: dict[str, Any] | None = None


@dataclass(slots=True)
class _Plan:
    blocks: list[_Block]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any] = field(default_factory=dict)


class FakeAnthropic(FakeServer[Behavior]):
    """An Anthropic-compatible HTTP server on loopback with scriptable behaviour per model.

    ``api_key=None`` accepts any key or none; otherwise a request must carry exactly that key in
    ``x-api-key`` (or as ``Authorization: Bearer``) or get Anthropic's 401. :attr:`base_url` is
    ``http://HOST:PORT`` once started (no ``/v1``: clients append ``/v1/messages``).
    """

    _behavior_type = Behavior
    _max_body = 32 * 1024 * 1024  # the Messages API's request size limit
    _thread_name = "fake-anthropic"

    # -- request handling ---------------------------------------------------------------------

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        # By lower-case name, the last value winning (as in the record), for the checks below.
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            route = (request.method, request.path)
            if route not in (("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")):
                raise _ApiError(404, "not_found_error", "Not found")
            self._authenticate(headers)
            if "anthropic-version" not in headers:
                raise _ApiError(
                    400, "invalid_request_error", "anthropic-version: header is required"
                )
            if bad_json or not isinstance(parsed, dict):
                raise _ApiError(
                    400,
                    "invalid_request_error",
                    "There was an issue with the format of your request: the body must be a"
                    " JSON object.",
                )
            betas = {b.strip() for b in headers.get("anthropic-beta", "").split(",")}
            if request.path.endswith("/count_tokens"):
                return _count_tokens(parsed, betas)
            return await self._messages(request, parsed, at, betas)
        except _ApiError as err:
            return _error_response(err)

    def _authenticate(self, headers: dict[str, str]) -> None:
        if self.api_key is None:
            return
        key = headers.get("x-api-key")
        if key is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise _ApiError(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            raise _ApiError(401, "authentication_error", "invalid x-api-key")

    async def _messages(
        self, request: web.BaseRequest, body: dict[str, Any], at: float, betas: set[str]
    ) -> web.StreamResponse:
        req = _validate(body, betas)
        behavior = self._behavior(req.model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, req.model, req.stream)
        if behavior.status is not None:
            raise _scripted_error(behavior, req.model)
        if behavior.drop_after_chunks is not None and not req.stream:
            close_connection(request)
            return web.Response()
        plan = self._plan(req, behavior)
        mid = self._next_id("msg_01")
        if req.stream:
            return await self._stream(request, req, behavior, plan, mid)
        message = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [_full_block(block) for block in plan.blocks],
            "stop_reason": plan.stop_reason,
            "stop_sequence": plan.stop_sequence,
            "usage": plan.usage,
        }
        headers = _headers()
        headers["Content-Type"] = _JSON_TYPE
        return web.Response(body=orjson.dumps(message), status=200, headers=headers)

    def _plan(self, req: _Request, behavior: Behavior) -> _Plan:
        """Every block's pieces, decided once so stream and non-stream agree exactly."""
        size = behavior.chunk_chars
        blocks: list[_Block] = []
        user_text = _last_user_text(req.messages)
        if req.thinking:
            thought = behavior.thinking or f"Let me think about {user_text[:30]}"
            signature = base64.b64encode(hashlib.sha256(thought.encode()).digest() * 3).decode()
            blocks.append(_Block("thinking", split_text(thought, size), signature=signature))
        tool = self._chosen_tool(req) if behavior.tool_call else None
        stop_reason, stop_sequence = "end_turn", None
        if tool is not None:
            tool_input = behavior.tool_input
            if tool_input is None:
                tool_input = sample_arguments(tool.get("input_schema"))
            arguments = orjson.dumps(tool_input).decode()
            call = behavior.call
            if call is not None and any(t.get("name") == call.name for t in req.tools):
                tool, arguments = {"name": call.name}, orjson.dumps(call.arguments).decode()
            if req.tool_choice.get("type", "auto") == "auto":
                blocks.append(
                    _Block("text", split_text(f"I'll use the {tool['name']} tool.", size))
                )
            tool_id = self._next_id("toolu_01")
            blocks.append(_Block("tool_use", split_text(arguments, size), tool_id, tool["name"]))
            stop_reason = "tool_use"
        else:
            text = behavior.text
            if text is None:
                text = "Hello! You said: " + user_text[:40]
                if req.output_schema is not None:
                    text = sample_json(req.output_schema)
            cut, stop_sequence = _stop_at(text, req.stop_sequences)
            if stop_sequence is not None:
                text, stop_reason = cut, "stop_sequence"
            blocks.append(_Block("text", split_text(text, size)))
        budget = req.max_tokens  # output tokens: one per content delta
        for position, block in enumerate(blocks):
            if len(block.pieces) > budget:
                del block.pieces[budget:]
                del blocks[position + (1 if block.pieces else 0) :]
                stop_reason, stop_sequence = "max_tokens", None
                break
            budget -= len(block.pieces)
        if behavior.stop_reason is not None:
            stop_reason = behavior.stop_reason
        output = sum(len(block.pieces) for block in blocks)
        return _Plan(blocks, stop_reason, stop_sequence, _usage(req, behavior, output))

    @staticmethod
    def _chosen_tool(req: _Request) -> dict[str, Any] | None:
        if not req.tools or req.tool_choice.get("type") == "none":
            return None
        last = req.messages[-1]
        content = last.get("content")
        if (
            last.get("role") == "user"
            and isinstance(content, list)
            and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
        ):
            return None
        name = req.tool_choice.get("name")
        custom = [tool for tool in req.tools if tool.get("type", "custom") == "custom"]
        for tool in custom:  # server tools run on Anthropic's side: never called as tool_use
            if name is None or tool.get("name") == name:
                return tool
        return custom[0] if custom else None

    async def _stream(
        self,
        request: web.BaseRequest,
        req: _Request,
        behavior: Behavior,
        plan: _Plan,
        mid: str,
    ) -> web.StreamResponse:
        events = _stream_events(req, plan, mid)
        headers = _headers()
        headers["Content-Type"] = _SSE_TYPE
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        drop, fail = behavior.drop_after_chunks, behavior.error_after_chunks
        # Both cut before the content delta that would exceed them (the drop wins a tie).
        drop_at = None if drop is None else content_index(events, drop)
        fail_at = None if fail is None else content_index(events, fail)
        cut, tail = False, b""
        if drop_at is not None and (fail_at is None or drop_at <= fail_at):
            events, cut = events[:drop_at], True
        elif fail_at is not None:
            events, tail = events[:fail_at], _stream_error(behavior.stream_error_type)
        return await self._write_stream(
            request,
            response,
            events,
            model=req.model,
            delay=behavior.chunk_delay,
            cut=cut,
            tail=tail,
        )

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{self._id_prefix[:14]}{next(self._ids):08d}"


# -- validation ------------------------------------------------------------------------------------


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "invalid_request_error", message)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SYSTEM_BETA = "mid-conversation-system-"
_NO_THINKING = re.compile(r"claude-(?:3-5-|3-)(?:haiku|sonnet|opus)")  # before Claude 3.7
_OUTPUT_FORMAT_BETA = "structured-outputs-2025-11-13"
# Models before structured outputs (Anthropic's list: Opus 4.1 and every model from 4.5 on).
_NO_STRUCTURED = re.compile(r"claude-(?:3|2|instant)|claude-(?:sonnet|opus)-4(?:-0)?(?:-\d{8})?$")


def _count_tokens(body: dict[str, Any], betas: Collection[str]) -> web.Response:
    """``/v1/messages/count_tokens``: what a message would count as input (no ``max_tokens``)."""
    req = _validate({"max_tokens": 1024, **body}, betas)
    tokens = _prompt_chars(req) // 4 + 4 * len(req.messages)
    headers = _headers()
    headers["Content-Type"] = _JSON_TYPE
    return web.Response(body=orjson.dumps({"input_tokens": tokens}), headers=headers)


def _check_output_format(body: dict[str, Any], betas: Collection[str]) -> dict[str, Any] | None:
    """``output_config.format`` (or the beta's ``output_format``): the answer's JSON schema."""
    config = body.get("output_config")
    fmt, where = None, "output_config.format"
    if config is not None:
        if not isinstance(config, dict):
            raise _invalid("output_config: Input should be a valid dictionary")
        effort = config.get("effort")
        if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
            raise _invalid(
                "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
            )
        fmt = config.get("format")
    if "output_format" in body:
        if _OUTPUT_FORMAT_BETA not in betas:
            raise _invalid("output_format: Extra inputs are not permitted")
        fmt, where = body["output_format"], "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _invalid(f"{where}: Input tag does not match 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise _invalid(f"{where}.json_schema.schema: Field required")
    if schema.get("type") != "object":
        raise _invalid(f"{where}.json_schema.schema: the root must be of type 'object'")
    _check_output_schema(schema, f"{where}.schema")
    return schema


# Keywords structured outputs cannot enforce: Anthropic refuses schemas that hold them.
_UNENFORCEABLE = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
)


def _check_output_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    kind = schema.get("type", "schema")
    for key in _UNENFORCEABLE:
        if key in schema:
            raise _invalid(f"{where}: For '{kind}' type, property '{key}' is not supported")
    if schema.get("minItems", 0) not in (0, 1):
        raise _invalid(
            f"{where}: For 'array' type, 'minItems' values other than 0 or 1 are not supported"
        )
    if (kind == "object" or "properties" in schema) and schema.get(
        "additionalProperties"
    ) is not False:
        raise _invalid(
            f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
        )
    for name, sub in (schema.get("properties") or {}).items():
        _check_output_schema(sub, f"{where}.properties.{name}")
    for key in ("anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key) or ()):
            _check_output_schema(sub, f"{where}.{key}.{i}")
    for name, sub in (schema.get("$defs") or {}).items():
        _check_output_schema(sub, f"{where}.$defs.{name}")
    _check_output_schema(schema.get("items"), f"{where}.items")


def _validate(body: dict[str, Any], betas: Collection[str] = ()) -> _Request:
    """Reject what Anthropic rejects, with its ``field: problem`` messages."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _invalid(f"{name}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise _invalid("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not _is_int(max_tokens):
        raise _invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    system_messages = any(beta.startswith(_SYSTEM_BETA) for beta in betas)
    for i, message in enumerate(messages):
        _check_message(i, message, last=i == len(messages) - 1, system=system_messages)
    if system_messages:  # they are part of the system prompt; the turns around them remain
        messages = [m for m in messages if m["role"] != "system"]
    _check_tool_pairs(messages)
    _check_system(body.get("system"))
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not _is_number(value):
                raise _invalid(f"{name}: Input should be a valid number")
            if not 0 <= value <= 1:
                raise _invalid(f"{name}: Input should be less than or equal to 1")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("stop_sequences: Input should be a valid list of strings")
    tools = _check_tools(body.get("tools"))
    choice = _check_tool_choice(body.get("tool_choice"), tools)
    thinking = _check_thinking(body.get("thinking"), max_tokens)
    if body.get("thinking") is not None and _NO_THINKING.search(model):
        raise _invalid(f"thinking: '{model}' does not support extended thinking.")
    if thinking:
        if choice.get("type") in ("any", "tool"):
            raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
        _check_thinking_turn(messages)
    output_schema = _check_output_format(body, betas)
    if output_schema is not None and _NO_STRUCTURED.search(model):
        where = "output_format" if "output_format" in body else "output_config.format"
        raise _invalid(f"{where}: '{model}' does not support structured outputs.")
    return _Request(
        model=model,
        max_tokens=max_tokens,
        messages=messages,
        system=body.get("system"),
        stream=stream is True,
        tools=tools,
        tool_choice=choice,
        stop_sequences=stops,
        thinking=thinking,
        output_schema=output_schema,
    )


def _check_message(i: int, message: Any, *, last: bool, system: bool = False) -> None:
    where = f"messages.{i}"
    if not isinstance(message, dict):
        raise _invalid(f"{where}: Input should be a valid dictionary")
    roles = ("user", "assistant", "system") if system else ("user", "assistant")
    if message.get("role") not in roles:
        raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'")
    if "content" not in message:
        raise _invalid(f"{where}.content: Field required")
    content = message["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(f"{where}.content: Input should be a valid list")
    if not content and not (last and message["role"] == "assistant"):
        raise _invalid(
            f"{where}: all messages must have non-empty content except for the optional final"
            " assistant message"
        )
    for j, block in enumerate(content):
        _check_block(f"{where}.content.{j}", block)


def _check_block(where: str, block: Any) -> None:
    if not isinstance(block, dict):
        raise _invalid(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in _BLOCK_TYPES:
        expected = ", ".join(f"'{t}'" for t in _BLOCK_TYPES)
        raise _invalid(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected"
            f" tags: {expected}"
        )
    required = {
        "text": ("text",),
        "image": ("source",),
        "tool_use": ("id", "name", "input"),
        "tool_result": ("tool_use_id",),
        "document": ("source",),
        "thinking": ("thinking", "signature"),
        "redacted_thinking": ("data",),
    }.get(kind, ())
    for name in required:
        if name not in block:
            raise _invalid(f"{where}.{kind}.{name}: Field required")
    if kind == "text":
        if not isinstance(block["text"], str):
            raise _invalid(f"{where}.text.text: Input should be a valid string")
        if not block["text"]:
            raise _invalid("messages: text content blocks must be non-empty")
    elif kind == "image":
        _check_image(where, block["source"])
    elif kind == "document":
        _check_document(where, block["source"])
    elif kind == "tool_use":
        if not isinstance(block["input"], dict):
            raise _invalid(f"{where}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            for k, item in enumerate(content):
                _check_block(f"{where}.tool_result.content.{k}", item)
        elif not isinstance(content, str):
            raise _invalid(f"{where}.tool_result.content: Input should be a valid list")


# Document sources (Anthropic's PDF support and citations docs): base64 PDF, plain text, URL of
# a PDF, content blocks, or a Files API id.
_DOCUMENT_MEDIA = {"base64": "application/pdf", "text": "text/plain"}


def _check_document(where: str, source: Any) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind not in ("base64", "text", "url", "content", "file"):
        raise _invalid(
            f"{where}.document.source: Input tag does not match 'base64', 'text', 'content', "
            "'url', 'file'"
        )
    expected = _DOCUMENT_MEDIA.get(kind)
    if expected is not None:
        if source.get("media_type") != expected:
            raise _invalid(
                f"{where}.document.source.{kind}.media_type: Input should be '{expected}'"
            )
        if not isinstance(source.get("data"), str):
            raise _invalid(f"{where}.document.source.{kind}.data: Field required")
    elif kind == "url" and not isinstance(source.get("url"), str):
        raise _invalid(f"{where}.document.source.url.url: Field required")


def _check_image(where: str, source: Any) -> None:
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
        raise _invalid(f"{where}.image.source: Input tag does not match 'base64', 'url', 'file'")
    if source["type"] == "base64":
        if source.get("media_type") not in _IMAGE_TYPES:
            raise _invalid(
                f"{where}.image.source.base64.media_type: Input should be 'image/jpeg',"
                " 'image/png', 'image/gif' or 'image/webp'"
            )
        if not isinstance(source.get("data"), str):
            raise _invalid(f"{where}.image.source.base64.data: Field required")
    elif source["type"] == "url" and not isinstance(source.get("url"), str):
        raise _invalid(f"{where}.image.source.url.url: Field required")


def _blocks(message: dict[str, Any], kind: str) -> list[tuple[int, dict[str, Any]]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [(j, b) for j, b in enumerate(content) if b.get("type") == kind]


def _check_tool_pairs(messages: list[dict[str, Any]]) -> None:
    """Every tool_use is answered in the very next (user) message; no stray tool_result."""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            wanted = [b["id"] for _, b in _blocks(message, "tool_use")]
            if not wanted:
                continue
            following = messages[i + 1] if i + 1 < len(messages) else None
            if following is None:
                continue  # the conversation ends with the call: the model answers it again
            answered = {b["tool_use_id"] for _, b in _blocks(following, "tool_result")}
            missing = (
                [w for w in wanted if w not in answered] if following["role"] == "user" else wanted
            )
            if missing:
                raise _invalid(
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks"
                    f" immediately after: {', '.join(missing)}. Each `tool_use` block must have a"
                    " corresponding `tool_result` block in the next message."
                )
        else:
            previous = messages[i - 1] if i else None
            known = (
                {b["id"] for _, b in _blocks(previous, "tool_use")}
                if previous is not None and previous["role"] == "assistant"
                else set()
            )
            for j, block in _blocks(message, "tool_result"):
                if block["tool_use_id"] not in known:
                    raise _invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in"
                        f" `tool_result` blocks: {block['tool_use_id']}. Each `tool_result` block"
                        " must have a corresponding `tool_use` block in the previous message."
                    )


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _invalid(f"system.{i}: Input tag does not match the expected tag 'text'")
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise _invalid("system: text content blocks must be non-empty")


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid(f"tools.{i}: Input should be a valid dictionary")
        if tool.get("type", "custom") != "custom":
            continue  # server tools have shapes of their own
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise _invalid(
                f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"tools.{i}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise _invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    return tools


def _check_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> dict[str, Any]:
    if choice is None:
        return {}
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _invalid("tool_choice: Input tag does not match 'auto', 'any', 'tool', 'none'")
    if choice["type"] == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise _invalid("tool_choice.tool.name: Field required")
        if name not in {t.get("name") for t in tools}:
            raise _invalid(f"Tool '{name}' not found in provided tools")
    if "disable_parallel_tool_use" in choice and choice["type"] == "none":
        raise _invalid("tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted")
    return choice


def _check_thinking(thinking: Any, max_tokens: int) -> bool:
    if thinking is None:
        return False
    if not isinstance(thinking, dict):
        raise _invalid("thinking: Input should be a valid dictionary")
    kind = thinking.get("type")
    if kind in ("disabled", "adaptive"):
        return False
    if kind != "enabled":
        raise _invalid("thinking: Input tag does not match 'enabled', 'disabled', 'adaptive'")
    budget = thinking.get("budget_tokens")
    if not _is_int(budget):
        raise _invalid("thinking.enabled.budget_tokens: Field required")
    if budget < _MIN_BUDGET:
        raise _invalid(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to"
            f" {_MIN_BUDGET}"
        )
    if max_tokens <= budget:
        raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    return True


def _check_thinking_turn(messages: list[dict[str, Any]]) -> None:
    """With thinking on, the last assistant turn that calls tools must open with its thinking."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message["role"] != "assistant":
            continue
        content = message["content"]
        if not _blocks(message, "tool_use"):
            return
        first = content[0].get("type")
        if first not in ("thinking", "redacted_thinking"):
            raise _invalid(
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but"
                f" found `{first}`. When `thinking` is enabled, a final `assistant` message must"
                " start with a thinking block (preceeding the lastmost set of `tool_use` and"
                " `tool_result` blocks). To avoid this requirement, disable `thinking`."
            )
        return


# -- answers ---------------------------------------------------------------------------------------


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            text = content_text(message.get("content"))
            if text:
                return text
    return ""


def _prompt_chars(req: _Request) -> int:
    chars = len(content_text(req.system))
    for message in req.messages:
        content = message.get("content")
        chars += len(content_text(content))
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_use":
                    chars += len(block["name"]) + len(orjson.dumps(block["input"]))
                elif block.get("type") == "tool_result":
                    chars += len(content_text(block.get("content")))
    if req.tools:
        chars += len(orjson.dumps(req.tools))
    return chars


def _usage(req: _Request, behavior: Behavior, output: int) -> dict[str, Any]:
    override = behavior.usage or {}
    written = override.get("cache_creation_input_tokens", 0)
    return {
        "input_tokens": override.get(
            "input_tokens", _prompt_chars(req) // 4 + 4 * len(req.messages)
        ),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": override.get("cache_read_input_tokens", 0),
        "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
        "output_tokens": override.get("output_tokens", output),
        "service_tier": "standard",
    }


def _stop_at(text: str, stops: list[str]) -> tuple[str, str | None]:
    """The text up to the first stop sequence in it, and that sequence."""
    found = [(text.find(stop), stop) for stop in stops if stop and stop in text]
    if not found:
        return text, None
    position, stop = min(found)
    return text[:position], stop


def _full_block(block: _Block) -> dict[str, Any]:
    joined = "".join(block.pieces)
    if block.kind == "text":
        return {"type": "text", "text": joined}
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": joined, "signature": block.signature}
    try:
        value = orjson.loads(joined) if joined else {}
    except orjson.JSONDecodeError:
        value = {}  # cut by max_tokens: the real API returns what parses, here nothing
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": value}


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _stream_error(error_type: str) -> bytes:
    """The ``event: error`` that ends a stream when Anthropic fails mid-answer."""
    message = _DEFAULT_ERRORS.get(_status_of(error_type), ("", "Overloaded"))[1]
    return _event("error", {"type": "error", "error": {"type": error_type, "message": message}})


_DELTAS = {"text": ("text_delta", "text"), "thinking": ("thinking_delta", "thinking")}


def _stream_events(req: _Request, plan: _Plan, mid: str) -> list[Event]:
    """Every event of the stream, encoded, each flagged whether it is a content delta."""
    usage = plan.usage
    start_usage = {**usage, "output_tokens": 1}  # the real API counts its first token here
    message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events = [(_event("message_start", {"type": "message_start", "message": message}), False)]
    for index, block in enumerate(plan.blocks):
        start: dict[str, Any]
        if block.kind == "text":
            start = {"type": "text", "text": ""}
        elif block.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        events.append(
            (
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                ),
                False,
            )
        )
        if index == 0:
            events.append((_event("ping", {"type": "ping"}), False))
        deltas: list[tuple[dict[str, Any], bool]] = []
        if block.kind == "tool_use":
            deltas.append(({"type": "input_json_delta", "partial_json": ""}, False))
            deltas.extend(
                ({"type": "input_json_delta", "partial_json": piece}, True)
                for piece in block.pieces
            )
        else:
            kind, key = _DELTAS[block.kind]
            deltas.extend(({"type": kind, key: piece}, True) for piece in block.pieces)
        if block.kind == "thinking":
            deltas.append(({"type": "signature_delta", "signature": block.signature}, False))
        for delta, is_content in deltas:
            payload = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append((_event("content_block_delta", payload), is_content))
        events.append(
            (_event("content_block_stop", {"type": "content_block_stop", "index": index}), False)
        )
    final = {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "output_tokens": usage["output_tokens"],
    }
    delta = {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence}
    events.append(
        (_event("message_delta", {"type": "message_delta", "delta": delta, "usage": final}), False)
    )
    events.append((_event("message_stop", {"type": "message_stop"}), False))
    return events


# -- responses -------------------------------------------------------------------------------------


def _headers() -> dict[str, str]:
    return {
        "request-id": "req_01" + os.urandom(11).hex(),
        "anthropic-organization-id": "00000000-0000-4000-8000-00000fake001",
    }


def _status_of(error_type: str) -> int:
    for status, (kind, _) in _DEFAULT_ERRORS.items():
        if kind == error_type:
            return status
    return 500


def _error_response(err: _ApiError) -> web.Response:
    headers = _headers()
    headers["Content-Type"] = _JSON_TYPE
    headers["x-should-retry"] = (
        "true" if err.status in (408, 409, 429) or err.status >= 500 else "false"
    )
    if err.headers:
        headers.update(err.headers)
    payload = {
        "type": "error",
        "error": {"type": err.type, "message": err.message},
        "request_id": headers["request-id"],
    }
    return web.Response(body=orjson.dumps(payload), status=err.status, headers=headers)


def _scripted_error(behavior: Behavior, model: str) -> _ApiError:
    status = behavior.status or 500
    kind, message = _DEFAULT_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    )
    return _ApiError(
        status,
        behavior.error_type or kind,
        behavior.error_message or message.replace("{model}", model),
        retry_after(behavior.retry_after),
    )
