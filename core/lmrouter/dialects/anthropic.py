"""The Anthropic Messages dialect (``POST /v1/messages``): request checks, error shape, the
pass-through readers that take usage off answers and streams, and the converter to and from the
internal representation for models whose provider speaks another dialect.

Wire facts this module relies on (see WIRE.md): every stream event carries an ``event:`` line
(the anthropic SDK skips events without one); ``message_delta`` usage is cumulative and may
repeat the input and cache counts; total prompt = input + cache creation + cache read.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

import msgspec
import orjson

from lmrouter import ir, sse
from lmrouter.dialects import Dialect, Parsed
from lmrouter.dialects.cost import cost_json, finish_reading
from lmrouter.errors import RouterError, invalid_request, validation_detail
from lmrouter.money import Rates
from lmrouter.usage import Usage, estimate_tokens, prompt_chars
from lmrouter.wire.anthropic import (
    WireUsage,
    thinking_block,
    tool_use_block,
)

# -- errors -----------------------------------------------------------------------------------


def error_body(err: RouterError) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}
    )


def stream_error(err: RouterError) -> bytes:
    """The anthropic SDK only reads events that carry an ``event:`` line."""
    return sse.encode(error_body(err), "error")


# -- requests ---------------------------------------------------------------------------------


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request(
            "There was an issue with the format of your request: the body is not valid JSON."
        ) from None
    if not isinstance(doc, dict):
        raise invalid_request("The request body must be a JSON object.")
    return doc


def parse_messages(body: bytes) -> Parsed:
    """What Anthropic checks first, with its words (``field: problem``). Any
    ``anthropic-version`` is accepted: the router does not depend on one."""
    doc = _load_object(body)
    model = doc.get("model")
    if model is None:
        raise invalid_request("model: Field required", "model")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: Input should be a non-empty string", "model")
    if "max_tokens" not in doc:
        raise invalid_request("max_tokens: Field required", "max_tokens")
    max_tokens = doc["max_tokens"]
    if type(max_tokens) is not int or max_tokens < 1:
        raise invalid_request("max_tokens: Input should be a positive integer", "max_tokens")
    messages = doc.get("messages")
    if messages is None:
        raise invalid_request("messages: Field required", "messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages: at least one message is required", "messages")
    stream = doc.get("stream", False)
    if stream is None:
        stream = False
    if type(stream) is not bool:
        raise invalid_request("stream: Input should be a valid boolean", "stream")
    # Usage is always part of an Anthropic stream, so ``wants_usage`` is simply true.
    chars = prompt_chars(body, messages)
    return Parsed(doc, model, stream, True, max_tokens, 1, chars)


# -- usage ------------------------------------------------------------------------------------


def wire_usage(usage: Usage | None) -> dict[str, Any]:
    """IR usage as Anthropic counts it: ``input_tokens`` excludes the cached parts."""
    if usage is None:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    wire: dict[str, Any] = {
        "input_tokens": max(uncached, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.reasoning_tokens:
        wire["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return wire


finish_json = finish_reading(WireUsage)


# -- finish reasons ---------------------------------------------------------------------------

FROM_FINISH: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str, stop_sequence: str | None) -> str:
    if finish_reason == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return FROM_FINISH.get(finish_reason, "end_turn")


# -- pass-through streams ---------------------------------------------------------------------


class _Delta(msgspec.Struct):
    type: str = ""
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    stop_reason: str | None = None


class _StartMessage(msgspec.Struct):
    usage: WireUsage | None = None


class _Event(msgspec.Struct):
    type: str = ""
    message: _StartMessage | None = None
    delta: _Delta | None = None
    usage: WireUsage | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
MESSAGE_STOP = sse.encode(b'{"type":"message_stop"}', "message_stop")


class MessagesStreamRelay:
    """Relays a Messages stream with its ``event:`` lines. Usage comes from ``message_start``
    (input and cache counts) and the cumulative ``message_delta``, whose usage also gets
    ``cost``; what was relayed is counted so a cut stream can still be charged."""

    __slots__ = ("chars", "decoder", "done", "failed", "finished", "rates", "start", "usage")

    def __init__(self, wants_usage: bool, rates: Rates) -> None:
        self.decoder = sse.SSEDecoder()
        self.rates = rates
        self.start: WireUsage | None = None  # from message_start
        self.usage: Usage | None = None  # set by message_delta: the whole request's
        self.done = False  # saw message_stop
        self.finished = False  # saw message_delta (the stop reason)
        self.failed = False  # the upstream sent an error event
        self.chars = 0

    def feed(self, chunk: bytes) -> bytes:
        events = self.decoder.feed(chunk)
        if len(events) == 1:
            return self._event(events[0])
        return b"".join([self._event(event) for event in events])

    def close(self) -> bytes:
        out = b"".join([self._event(event) for event in self.decoder.close()])
        if self.finished and not self.done and not self.failed:
            out += MESSAGE_STOP  # the SDK waits for it; the answer itself was complete
        return out

    @property
    def complete(self) -> bool:
        return not self.failed and (self.done or self.finished)

    def estimated_usage(self, prompt_chars: int) -> Usage:
        generated = estimate_tokens(self.chars)
        if self.start is None:
            return Usage(
                prompt_tokens=estimate_tokens(prompt_chars),
                completion_tokens=generated,
                estimated=True,
            )
        known = self.start.normalize()  # exact input counts; output only what message_start said
        known.completion_tokens = max(known.completion_tokens, generated)
        known.estimated = True
        return known

    def error(self, err: RouterError) -> bytes:
        return stream_error(err)

    def _event(self, event: sse.SSEEvent) -> bytes:
        data = event.data
        try:
            parsed = _decode_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return sse.encode(data, event.event)  # not ours to judge: pass it on unchanged
        name = event.event or parsed.type or None  # the SDK drops events without a name
        kind = parsed.type
        if kind == "content_block_delta":
            delta = parsed.delta
            if delta is not None:
                self.chars += len(delta.text or delta.partial_json or delta.thinking or "")
        elif kind == "message_start":
            if parsed.message is not None and parsed.message.usage is not None:
                self.start = parsed.message.usage
        elif kind == "message_delta":
            self.finished = True
            if parsed.usage is not None:
                merged = (self.start or WireUsage()).merge(parsed.usage)
                self.usage = merged.normalize()
                doc = orjson.loads(data)
                doc["usage"]["cost"] = cost_json(self.rates.cost(self.usage))
                data = orjson.dumps(doc)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.failed = True
        return sse.encode(data, name)


# -- conversion: request → IR -----------------------------------------------------------------


class _Block(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class _TextBlock(_Block, tag="text"):
    text: str
    cache_control: dict[str, Any] | None = None


class _Base64Source(msgspec.Struct, tag_field="type", tag="base64"):
    media_type: str
    data: str


class _UrlSource(msgspec.Struct, tag_field="type", tag="url"):
    url: str


class _ImageBlock(_Block, tag="image"):
    source: _Base64Source | _UrlSource


class _TextSource(msgspec.Struct, tag_field="type", tag="text"):
    data: str
    media_type: str = "text/plain"


class _ContentSource(msgspec.Struct, tag_field="type", tag="content"):
    content: str | list[_TextBlock | _ImageBlock]


class _FileSource(msgspec.Struct, tag_field="type", tag="file"):
    file_id: str


class _Citations(msgspec.Struct):
    enabled: bool = False


class _DocumentBlock(_Block, tag="document"):
    source: _Base64Source | _UrlSource | _TextSource | _ContentSource | _FileSource
    title: str | None = None
    context: str | None = None
    citations: _Citations | None = None
    cache_control: dict[str, Any] | None = None


class _SearchResultBlock(_Block, tag="search_result"):
    source: str
    title: str
    content: list[_TextBlock]
    citations: _Citations | None = None
    cache_control: dict[str, Any] | None = None


class _ToolUseBlock(_Block, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class _ToolResultBlock(_Block, tag="tool_result"):
    tool_use_id: str
    content: str | list[_TextBlock | _ImageBlock | _SearchResultBlock] = ""
    is_error: bool | None = None


class _ThinkingBlock(_Block, tag="thinking"):
    thinking: str
    signature: str = ""


class _RedactedThinkingBlock(_Block, tag="redacted_thinking"):
    data: str


_AnyBlock = (
    _TextBlock
    | _ImageBlock
    | _DocumentBlock
    | _SearchResultBlock
    | _ToolUseBlock
    | _ToolResultBlock
    | _ThinkingBlock
    | _RedactedThinkingBlock
)


class _Message(msgspec.Struct):
    # "system": a mid-conversation system message (Claude Code sends one for models it does not
    # know as Claude's, under the beta ``mid-conversation-system-…``)
    role: Literal["user", "assistant", "system"]
    content: str | list[_AnyBlock]


class _Tool(msgspec.Struct, kw_only=True):
    name: str
    type: str | None = None  # "custom" or absent; server tools (web_search_…) have their own
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class _ToolChoice(msgspec.Struct, kw_only=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _Thinking(msgspec.Struct, kw_only=True):
    type: str
    budget_tokens: int | None = None


class _Metadata(msgspec.Struct, kw_only=True):
    user_id: str | None = None


class _OutputFormat(msgspec.Struct, kw_only=True):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class _OutputConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    format: _OutputFormat | None = None


class _Request(msgspec.Struct, kw_only=True):
    model: str
    max_tokens: int
    messages: list[_Message]
    system: str | list[_TextBlock] | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = None
    thinking: _Thinking | None = None
    metadata: _Metadata | None = None
    output_config: _OutputConfig | None = None
    output_format: _OutputFormat | None = None  # the beta's name for output_config.format


_CHOICE_MODES: dict[str, Literal["auto", "required", "none", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}
# Anthropic's effort levels above "high" have no counterpart elsewhere: they ask for the most.
_EFFORTS: dict[str, ir.Effort] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
_BAD_TAG = re.compile(r"^Invalid value '(.*)'$")


def _validation_error(exc: msgspec.ValidationError) -> RouterError:
    """msgspec's ``… - at `$.messages[0].content[1].type``` as a 400 naming the field."""
    text, param, kind = validation_detail(str(exc))
    if kind == "missing":
        return invalid_request(f"{param}: Field required", param)
    tag = _BAD_TAG.match(text)
    if tag and param.endswith(".type"):
        return invalid_request(
            f"{param}: '{tag.group(1)}' is not supported for this model: it is served by a "
            "provider that does not speak Anthropic's API, and only text, image, document, "
            "search_result, tool_use, tool_result and thinking content can be converted.",
            param,
        )
    return invalid_request(f"{param}: {text}" if param else text, param or None)


def _text(block: _TextBlock) -> ir.Text:
    return ir.Text(text=block.text, cache=block.cache_control is not None)


def _image(block: _ImageBlock) -> ir.Image:
    source = block.source
    if isinstance(source, _UrlSource):
        return ir.Image(url=source.url)
    return ir.Image(data=source.data, media_type=source.media_type)


def _document(block: _DocumentBlock) -> list[ir.Part]:
    """A document as a file part (PDF by data or URL, text as text); a ``content`` source's
    text blocks as one text document, its images after it."""
    source = block.source
    base = ir.File(
        name=block.title or "",
        context=block.context or "",
        citations=bool(block.citations and block.citations.enabled),
    )
    replace = msgspec.structs.replace
    if isinstance(source, _Base64Source):
        return [replace(base, media_type=source.media_type, data=source.data)]
    if isinstance(source, _UrlSource):
        media_type = ir.guess_type(source.url.split("?", 1)[0]) or "application/pdf"
        return [replace(base, media_type=media_type, url=source.url)]
    if isinstance(source, _TextSource):
        return [replace(base, media_type=source.media_type, text=source.data)]
    if isinstance(source, _FileSource):  # Anthropic's Files API: only Anthropic can read it
        return [replace(base, file_id=source.file_id, file_owner="anthropic")]
    items = source.content
    if isinstance(items, str):
        return [replace(base, media_type="text/plain", text=items)]
    text = "\n\n".join(item.text for item in items if isinstance(item, _TextBlock))
    parts: list[ir.Part] = [replace(base, media_type="text/plain", text=text)]
    return parts + [_image(item) for item in items if isinstance(item, _ImageBlock)]


def _search_result(block: _SearchResultBlock) -> ir.Text:
    """Search results reach other providers as text that names their source and title (only
    Anthropic's models cite them; Anthropic routes get the request as it is)."""
    body = "\n\n".join(item.text for item in block.content)
    return ir.Text(text=f"Search result: {block.title}\nSource: {block.source}\n\n{body}")


def _tool_result(block: _ToolResultBlock) -> ir.ToolResult:
    content: list[ir.Text | ir.Image]
    if isinstance(block.content, str):
        content = [ir.Text(text=block.content)] if block.content else []
    else:
        content = [
            _text(item)
            if isinstance(item, _TextBlock)
            else _search_result(item)
            if isinstance(item, _SearchResultBlock)
            else _image(item)
            for item in block.content
        ]
    return ir.ToolResult(id=block.tool_use_id, content=content, is_error=bool(block.is_error))


def _part(
    block: _TextBlock
    | _ImageBlock
    | _ToolUseBlock
    | _ToolResultBlock
    | _ThinkingBlock
    | _RedactedThinkingBlock,
) -> ir.Part:
    if isinstance(block, _TextBlock):
        return _text(block)
    if isinstance(block, _ImageBlock):
        return _image(block)
    if isinstance(block, _ToolUseBlock):
        return ir.ToolCall(
            id=block.id, name=block.name, arguments=orjson.dumps(block.input).decode()
        )
    if isinstance(block, _ToolResultBlock):
        return _tool_result(block)
    if isinstance(block, _ThinkingBlock):
        return ir.Thinking(text=block.thinking, signature=block.signature)
    return ir.Thinking(redacted=block.data)


def _parts(content: str | list[_AnyBlock]) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(text=content)]
    parts: list[ir.Part] = []
    for block in content:
        if isinstance(block, _DocumentBlock):
            parts.extend(_document(block))
        elif isinstance(block, _SearchResultBlock):
            parts.append(_search_result(block))
        else:
            parts.append(_part(block))
    return parts


def _tools(
    tools: list[_Tool],
) -> tuple[list[ir.Tool], list[tuple[str, str]], list[tuple[str, str]]]:
    """Custom tools, and the server tools (``web_search_…``, ``code_execution_…``) that only
    Anthropic runs, as dropped: the provider side leaves them out or refuses them by the
    operator's ``[routing] unsupported_tools``."""
    out = []
    dropped: list[tuple[str, str]] = []
    hosted: list[tuple[str, str]] = []
    for i, tool in enumerate(tools):
        if tool.type is not None and tool.type.startswith("web_search_"):
            hosted.append((f"tools[{i}].type", tool.type))  # other providers search too
            continue
        if tool.type not in (None, "custom"):
            dropped.append((f"tools[{i}].type", tool.type))
            continue
        if tool.input_schema is None:
            raise invalid_request(
                f"tools[{i}].input_schema: Field required", f"tools[{i}].input_schema"
            )
        out.append(
            ir.Tool(
                name=tool.name, description=tool.description or "", parameters=tool.input_schema
            )
        )
    return out, dropped, hosted


def _tool_choice(choice: _ToolChoice) -> ir.ToolChoice:
    if choice.type == "tool" and not choice.name:
        raise invalid_request("tool_choice.name: Field required", "tool_choice.name")
    return ir.ToolChoice(mode=_CHOICE_MODES[choice.type], name=choice.name or "")


def _thinking_budget(thinking: _Thinking) -> int | None:
    """``enabled`` carries a budget. ``disabled`` and ``adaptive`` (the model decides) carry none:
    the other provider's default applies."""
    if thinking.type == "enabled":
        if thinking.budget_tokens is None:
            raise invalid_request(
                "thinking.budget_tokens: Field required", "thinking.budget_tokens"
            )
        return thinking.budget_tokens
    if thinking.type in ("disabled", "adaptive", "between_tools"):
        return None
    raise invalid_request(f"thinking.type: unknown value '{thinking.type}'", "thinking.type")


def _effort(config: _OutputConfig | None) -> ir.Effort | None:
    if config is None or config.effort is None:
        return None
    effort = _EFFORTS.get(config.effort)
    if effort is None:
        raise invalid_request(
            f"output_config.effort: unknown value '{config.effort}'", "output_config.effort"
        )
    return effort


def to_ir(doc: dict[str, Any]) -> ir.ChatRequest:
    """An Anthropic request as IR. System messages inside ``messages`` join ``system`` in
    order. Not carried over: ``top_k``, ``cache_control`` anywhere but on text blocks,
    ``context_management``, ``service_tier``, ``container``, ``mcp_servers`` and other
    Anthropic-only settings. ``output_config.effort`` becomes ``reasoning_effort``
    (``xhigh``/``max`` → high); ``output_config.format`` (or the beta's ``output_format``)
    becomes ``response_format``."""
    try:
        req = msgspec.convert(doc, _Request)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    if isinstance(req.system, str):
        system = [ir.Text(text=req.system)] if req.system else []
    else:
        system = [_text(block) for block in req.system or ()]
    messages: list[ir.Message] = []
    for i, message in enumerate(req.messages):
        parts = _parts(message.content)
        for part in parts:
            if isinstance(part, ir.File):  # for an error that names where it came from
                part.param = f"messages[{i}].content"
        if message.role == "system":  # joins the system prompt, as the IR has one
            if not all(isinstance(part, ir.Text) for part in parts):
                raise invalid_request(
                    f"messages[{i}].content: a system message holds text only",
                    f"messages[{i}].content",
                )
            system.extend(part for part in parts if isinstance(part, ir.Text))
        elif messages and messages[-1].role == message.role:
            messages[-1].parts.extend(parts)  # turns around a system message meet
        else:
            messages.append(ir.Message(role=message.role, parts=parts))
    choice = req.tool_choice
    tools, dropped, hosted = _tools(req.tools or [])
    return ir.ChatRequest(
        model=req.model,
        messages=messages,
        system=system,
        tools=tools,
        dropped_tools=dropped,
        hosted_tools=hosted,
        tool_choice=_tool_choice(choice) if choice is not None else None,
        parallel_tool_calls=False if choice and choice.disable_parallel_tool_use else None,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=list(req.stop_sequences or ()),
        stream=bool(req.stream),
        reasoning_effort=_effort(req.output_config),
        thinking_budget=_thinking_budget(req.thinking) if req.thinking else None,
        user=req.metadata.user_id if req.metadata else None,
        response_format=_response_format(req),
    )


def _response_format(req: _Request) -> ir.ResponseFormat | None:
    fmt = req.output_config.format if req.output_config else None
    fmt = fmt or req.output_format
    if fmt is None:
        return None
    return ir.ResponseFormat(type="json_schema", schema=fmt.schema)


# -- conversion: IR answer → Message ----------------------------------------------------------


def message_id(answer_id: str) -> str:
    if answer_id.startswith("msg_"):
        return answer_id
    return "msg_" + (answer_id or secrets.token_hex(12))


def _content_block(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ir.ToolCall):
        return tool_use_block(part)
    if isinstance(part, ir.Thinking):
        return thinking_block(part)
    return None  # images and tool results do not occur in answers


def render(answer: ir.ChatResponse, doc: dict[str, Any], cost: int) -> bytes:
    content = [block for part in answer.parts if (block := _content_block(part)) is not None]
    usage = wire_usage(answer.usage)
    usage["cost"] = cost_json(cost)
    message = {
        "id": message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": answer.model or doc.get("model", ""),
        "content": content,
        "stop_reason": stop_reason(answer.finish_reason, answer.stop_sequence),
        "stop_sequence": answer.stop_sequence,
        "usage": usage,
    }
    return orjson.dumps(message)


# -- conversion: IR stream → Messages stream --------------------------------------------------


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return sse.encode(orjson.dumps(payload), name)


class MessagesRenderer:
    """IR stream events as a Messages stream: ``message_start``, one content block per text,
    thinking or tool call run (``content_block_start``/``_delta``/``_stop`` with the block's
    index), then at :meth:`finish` ``message_delta`` (stop reason, cumulative usage with
    ``cost``) and ``message_stop``."""

    __slots__ = ("block", "blocks", "finish_reason", "model", "started", "stop_sequence", "tools")

    def __init__(self, doc: dict[str, Any], wants_usage: bool) -> None:
        self.model = str(doc.get("model", ""))
        self.started = False
        self.blocks = 0  # content blocks opened so far: the next one's index
        self.block: tuple[str, int] | None = None  # the open block: (kind, index)
        self.tools: dict[int, int] = {}  # IR tool index → block index
        self.finish_reason: str = "stop"
        self.stop_sequence: str | None = None

    def render(self, events: list[ir.Event]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if isinstance(event, ir.StreamStart):
                self.model = event.model or self.model
                out.append(self._start(event.id))
                continue
            if not self.started and not isinstance(event, ir.UsageUpdate):
                out.append(self._start(""))
            if isinstance(event, ir.TextDelta):
                if event.text:
                    index = self._open("text", {"type": "text", "text": ""}, out)
                    out.append(self._delta(index, {"type": "text_delta", "text": event.text}))
            elif isinstance(event, ir.ThinkingDelta):
                self._thinking(event, out)
            elif isinstance(event, ir.ToolCallStart):
                block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
                self.tools[event.index] = self._open("tool_use", block, out, force=True)
            elif isinstance(event, ir.ToolCallDelta):
                tool = self.tools.get(event.index)
                if tool is not None and event.arguments:
                    delta = {"type": "input_json_delta", "partial_json": event.arguments}
                    out.append(self._delta(tool, delta))
            elif isinstance(event, ir.Finish):
                self.finish_reason = event.finish_reason
                self.stop_sequence = event.stop_sequence
                self._close(out)
        return b"".join(out)

    def finish(self, usage: Usage | None, cost_pico: int) -> bytes:
        out: list[bytes] = []
        if not self.started:
            out.append(self._start(""))
        self._close(out)
        wire = wire_usage(usage)
        wire["cost"] = cost_json(cost_pico)
        delta = {
            "stop_reason": stop_reason(self.finish_reason, self.stop_sequence),
            "stop_sequence": self.stop_sequence,
        }
        out.append(
            _event("message_delta", {"type": "message_delta", "delta": delta, "usage": wire})
        )
        out.append(MESSAGE_STOP)
        return b"".join(out)

    def error(self, err: RouterError) -> bytes:
        """Anthropic ends a failed stream with ``event: error`` right after the last delta."""
        return stream_error(err)

    def _start(self, answer_id: str) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": message_id(answer_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The converting relay keeps usage to itself until the end: the counts come in
            # message_delta, which the SDKs read as the cumulative total.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _thinking(self, event: ir.ThinkingDelta, out: list[bytes]) -> None:
        if not event.text and not event.signature:
            return
        block = {"type": "thinking", "thinking": "", "signature": ""}
        index = self._open("thinking", block, out)
        if event.text:
            out.append(self._delta(index, {"type": "thinking_delta", "thinking": event.text}))
        if event.signature:
            out.append(
                self._delta(index, {"type": "signature_delta", "signature": event.signature})
            )

    def _open(
        self, kind: str, block: dict[str, Any], out: list[bytes], *, force: bool = False
    ) -> int:
        """The open block of this kind, or a new one (every tool call is a block of its own)."""
        if self.block is not None and self.block[0] == kind and not force:
            return self.block[1]
        self._close(out)
        index = self.blocks
        self.blocks += 1
        self.block = (kind, index)
        payload = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(_event("content_block_start", payload))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self.block is not None:
            payload = {"type": "content_block_stop", "index": self.block[1]}
            out.append(_event("content_block_stop", payload))
            self.block = None

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        return _event("content_block_delta", payload)


MESSAGES = Dialect(
    name="anthropic.messages",
    kind="chat",
    parse=parse_messages,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
    stream_relay=MessagesStreamRelay,
    to_ir=to_ir,
    render=render,
    renderer=MessagesRenderer,
)
