"""LMRouter provider plugin for Anthropic's Messages API (``type = "anthropic"``).

Anthropic-dialect requests (``POST /v1/messages``) pass through untouched apart from the model
name and ``system`` messages inside ``messages``, which Anthropic refuses: Claude Code sends its
environment so to a model id it does not know as Claude's (an alias such as ``team/smart``);
they are joined to the top-level ``system`` prompt, as conversions do. The key goes in
``x-api-key`` with ``anthropic-version`` (config ``version``) and the caller's
``anthropic-beta`` header, if any. Chat requests in other dialects are converted through
the IR (:mod:`lmrouter.ir`). Conversion choices, each forced by what the Messages API accepts:

* ``max_tokens`` is required: the request's, else the route's limit for the request
  (``ctx.max_output_tokens``), else the model's ``max_output_tokens``, else 4096.
* Consecutive same-role turns merge; a conversation that does not start with a user turn gets a
  user turn ``"."`` first; a user turn's ``tool_result`` blocks come before its other content.
* Tool-call arguments that are not a JSON object (a model's broken output) are sent as ``{}``.
* Thinking without a signature (another provider's reasoning text) is dropped: Anthropic refuses
  unsigned thinking blocks. ``reasoning_effort`` low/medium/high becomes a thinking budget of
  1024/4096/16384 tokens (``minimal``: no thinking); the budget counts toward ``max_tokens`` (as
  reasoning counts toward OpenAI's ``max_completion_tokens``), so it is kept within Anthropic's
  range, 1024 to ``max_tokens - 1``, and thinking is left off when ``max_tokens`` leaves no room.
  Claude 3.5 and older take no thinking at all (see :mod:`lmrouter.capabilities`).
  Thinking is also left off when the last assistant turn calls tools without a signed thinking
  block (Anthropic refuses that with thinking on; turns from other providers never have one).
  With thinking on, ``temperature`` other than 1 and ``top_p`` below 0.95 are left out (Anthropic
  refuses them together). ``temperature`` is capped at 1 (Anthropic's range is 0 to 1).
* Thinking is left off when the tool choice forces a tool (``any`` or a named tool): Anthropic
  refuses thinking with forced tool use.
* Structured output (``response_format``): a JSON schema with an object at its root goes as
  ``output_config.format`` to models with native structured outputs (Claude Opus 4.1, and 4.5
  and later; config ``structured_outputs`` overrides the guess from the model name), rewritten
  to what Anthropic enforces (:mod:`lmrouter_anthropic.schema`). Otherwise,
  and for ``json_object``, the answer is asked for through a forced tool whose input is returned
  as the answer's text (:mod:`lmrouter.structured`).
* Another dialect's web search (Responses ``web_search`` with live access) becomes Anthropic's
  ``web_search_20250305`` server tool; its result blocks stay on Anthropic's side (the answer's
  text carries what was found).
* Files: PDFs (base64 or URL) and text documents become ``document`` blocks with their
  ``title``, ``context`` and ``citations``; Anthropic's document sources take nothing else, so a
  request with audio, video, another type or another provider's file id skips this route
  (:class:`lmrouter.CannotServe`): the next route serves it, or the caller gets a 400 naming it.
* ``n > 1`` (Chat ``n``, Gemini ``candidateCount``): Anthropic answers with one message, so
  the request is sent n times at once and the answers merged (:mod:`lmrouter_anthropic.fanout`);
  a stream with ``n > 1`` skips this route.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec
import orjson

from lmrouter import (
    CannotServe,
    Provider,
    ProviderConfig,
    UpstreamFailure,
    UpstreamRequest,
    capabilities,
    hookimpl,
    ir,
    sse,
    structured,
)
from lmrouter.wire.anthropic import TO_FINISH, WireUsage, thinking_block, tool_use_block
from lmrouter_anthropic import fanout
from lmrouter_anthropic.schema import for_anthropic

api_version = ">=1.7, <2"  # hook API versions this plugin is written for (1.7: CannotServe)

if TYPE_CHECKING:
    from lmrouter import RequestContext, Route

DEFAULT_MAX_TOKENS = 4096
HOSTED = frozenset({"web_search"})  # hosted tools Anthropic runs itself (server tools)
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
MIN_THINKING_BUDGET = 1024  # Anthropic refuses smaller budgets
EFFORT_BUDGETS: dict[str, int | None] = {
    "minimal": None,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
}
FIRST_TURN = "."  # a stand-in user turn when a conversation starts with the assistant
CHOICES: dict[str, str] = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}
# A mid-stream error's type → the status it would have had before the first byte: the caller's
# own mistakes stay theirs; everything else is the upstream's failure (502), as in read_error.
STREAM_ERROR_STATUS: dict[str, int] = {"invalid_request_error": 400, "request_too_large": 413}


class AnthropicConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    version: str = "2023-06-01"  # the anthropic-version header sent upstream
    # How converted requests ask for structured output: "auto" uses output_config.format on
    # models known to have it (by name) and a forced tool on the others.
    structured_outputs: Literal["auto", "native", "tool"] = "auto"


# Claude model names with a family and a version: claude-opus-4-1-…, claude-sonnet-4-5, …
_CLAUDE_VERSION = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d))?(?=$|[-@])")


# Claude models before extended thinking (3.7): they refuse a ``thinking`` setting.
_NO_THINKING = re.compile(r"claude-(?:3-5-|3-)(?:haiku|sonnet|opus)|claude-(?:instant|2)")


def reasoning_default(model: str) -> bool | None:
    return False if _NO_THINKING.search(model) else None


def native_structured_outputs(model: str) -> bool:
    """Whether a Claude model takes ``output_config.format`` (Anthropic's documented list: Opus
    4.1, and every model from 4.5 on)."""
    match = _CLAUDE_VERSION.search(model)
    if match is None:
        return False
    version = (int(match.group(2)), int(match.group(3) or 0))
    return version >= (4, 5) or (match.group(1) == "opus" and version == (4, 1))


# -- IR → Messages request --------------------------------------------------------------------


def _image(part: ir.Image) -> dict[str, Any]:
    if part.url.startswith("data:"):  # data:<media type>;base64,<data>
        head, _, data = part.url.partition(",")
        media_type = head[5:].split(";")[0] or "image/png"
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    if part.url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    source = {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
    return {"type": "image", "source": source}


# Anthropic's document sources: base64 and URL PDFs, and plain text (its documented types).
def _document(part: ir.File) -> dict[str, Any]:
    text = part.decoded_text()
    if part.file_id:
        source = None
    elif text is not None:
        source = {"type": "text", "media_type": "text/plain", "data": text}
    elif part.media_type == "application/pdf":
        source = (
            {"type": "url", "url": part.url}
            if part.url
            else {"type": "base64", "media_type": "application/pdf", "data": part.data}
        )
    else:
        source = None
    if source is None:
        raise part.cannot_serve(
            "cannot be sent to Anthropic models, whose documents are PDF or plain text."
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.name:
        block["title"] = part.name
    if part.context:
        block["context"] = part.context
    if part.citations:
        block["citations"] = {"enabled": True}
    return block


def _text(part: ir.Text) -> dict[str, Any] | None:
    if not part.text:
        return None  # Anthropic refuses empty text blocks
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache:
        block["cache_control"] = {"type": "ephemeral"}
    return block


def _tool_result(part: ir.ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.id}
    content = [
        b
        for item in part.content
        if (b := _text(item) if isinstance(item, ir.Text) else _image(item)) is not None
    ]
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return block


def _block(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        return _text(part)
    if isinstance(part, ir.Image):
        return _image(part)
    if isinstance(part, ir.File):
        return _document(part)
    if isinstance(part, ir.ToolCall):
        return tool_use_block(part)
    if isinstance(part, ir.ToolResult):
        return _tool_result(part)
    if part.redacted or part.signature:
        return thinking_block(part)
    return None  # unsigned thinking (another provider's) cannot be sent back to Anthropic


def _turns(messages: list[ir.Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks = [block for part in message.parts if (block := _block(part)) is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":  # tool results open the turn (a stable sort keeps order)
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": FIRST_TURN}]})
    return turns


def _tool(tool: ir.Tool) -> dict[str, Any]:
    schema = tool.parameters or {"type": "object", "properties": {}}
    if "type" not in schema:
        schema = {"type": "object", **schema}
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = schema
    return out


def _tool_choice(request: ir.ChatRequest) -> dict[str, Any] | None:
    choice: dict[str, Any] | None = None
    if request.tool_choice is not None:
        choice = {"type": CHOICES[request.tool_choice.mode]}
        if request.tool_choice.mode == "tool":
            choice["name"] = request.tool_choice.name
    if request.parallel_tool_calls is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


def _thinking_budget(request: ir.ChatRequest, max_tokens: int) -> int | None:
    budget = request.thinking_budget
    if budget is None and request.reasoning_effort is not None:
        budget = EFFORT_BUDGETS.get(request.reasoning_effort)
    if budget is None or budget <= 0:  # 0: thinking off; Gemini's -1 (dynamic): the default
        return None
    budget = min(max(budget, MIN_THINKING_BUDGET), max_tokens - 1)
    return budget if budget >= MIN_THINKING_BUDGET else None


def _unsigned_tool_turn(turns: list[dict[str, Any]]) -> bool:
    """Whether the last assistant turn calls tools without the signed thinking that opened it:
    with thinking on, Anthropic refuses such a turn (other providers' turns never have it)."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            content = turn["content"]
            calls = any(block["type"] == "tool_use" for block in content)
            return calls and content[0]["type"] not in ("thinking", "redacted_thinking")
    return False


def messages_request(request: ir.ChatRequest, model: str, max_tokens: int) -> dict[str, Any]:
    """The Messages API body for an IR request (see the module notes for each choice). A
    ``response_format`` here goes as ``output_config.format``: a request for a model without
    it goes through :func:`lmrouter.structured.as_tool_request` first."""
    if request.n > 1:
        raise CannotServe(
            f"n: Anthropic models answer with one choice, and {request.n} were asked for "
            "(`n` / `candidateCount`); send 1.",
            "n",
        )
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    forced = False
    system = [block for part in request.system if (block := _text(part)) is not None]
    if system:
        body["system"] = system
    body["messages"] = _turns(request.messages)
    if request.hosted_tools:  # another dialect's web search: Anthropic's own server tool
        body["tools"] = [dict(WEB_SEARCH_TOOL)]
    if request.tools:
        body["tools"] = [*body.get("tools", ()), *(_tool(tool) for tool in request.tools)]
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
            forced = choice["type"] in ("any", "tool")
    if request.stop:
        stops = [stop for stop in request.stop if stop.strip()]
        if stops:
            body["stop_sequences"] = stops
    budget = _thinking_budget(request, max_tokens)
    if budget is not None and (forced or _unsigned_tool_turn(body["messages"])):
        budget = None
    temperature, top_p = request.temperature, request.top_p
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        temperature = None if temperature != 1 else temperature
        top_p = None if top_p is not None and top_p < 0.95 else top_p
    if temperature is not None:
        body["temperature"] = min(temperature, 1.0)
    if top_p is not None:
        body["top_p"] = top_p
    if request.user:
        body["metadata"] = {"user_id": request.user}
    fmt = request.response_format
    if fmt is not None:
        schema = for_anthropic(fmt.schema)
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if request.stream:
        body["stream"] = True
    return body


# -- Messages answer → IR ---------------------------------------------------------------------


class _Block(msgspec.Struct):
    type: str = ""
    text: str = ""
    id: str = ""
    name: str = ""
    input: Any = None
    thinking: str = ""
    signature: str = ""
    data: str = ""


class _Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[_Block] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: WireUsage | None = None


_decode_message = msgspec.json.Decoder(_Message).decode


def _arguments(value: Any) -> str:
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


def _part(block: _Block) -> ir.Part | None:
    if block.type == "text":
        return ir.Text(text=block.text)
    if block.type == "tool_use":
        return ir.ToolCall(id=block.id, name=block.name, arguments=_arguments(block.input))
    if block.type == "thinking":
        return ir.Thinking(text=block.thinking, signature=block.signature)
    if block.type == "redacted_thinking":
        return ir.Thinking(redacted=block.data)
    return None  # server-tool blocks (web search…) have no place in the IR


def chat_response(message: _Message) -> ir.ChatResponse:
    return ir.ChatResponse(
        id=message.id,
        model=message.model,
        parts=[part for block in message.content if (part := _part(block)) is not None],
        finish_reason=TO_FINISH.get(message.stop_reason or "end_turn", "stop"),
        stop_sequence=message.stop_sequence,
        usage=message.usage.normalize() if message.usage is not None else None,
    )


# -- Messages stream → IR events --------------------------------------------------------------


class _StreamMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    usage: WireUsage | None = None


class _StreamDelta(msgspec.Struct):
    type: str = ""
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""
    stop_reason: str | None = None
    stop_sequence: str | None = None


class _Error(msgspec.Struct):
    type: str = ""
    message: str = ""


class _StreamEvent(msgspec.Struct):
    type: str = ""
    index: int = 0
    message: _StreamMessage | None = None
    content_block: _Block | None = None
    delta: _StreamDelta | None = None
    usage: WireUsage | None = None
    error: _Error | None = None


_decode_event = msgspec.json.Decoder(_StreamEvent).decode


class MessagesStreamParser:
    """A Messages stream as IR events. Tool calls are numbered among ``tool_use`` blocks only
    (a text block before them does not shift their index). Usage is reported once, at
    ``message_delta``: its counts are cumulative and may omit the input ones, which then come
    from ``message_start``."""

    __slots__ = ("decoder", "start", "tools")

    def __init__(self) -> None:
        self.decoder = sse.SSEDecoder()
        self.start = WireUsage()
        self.tools: dict[int, int] = {}  # content block index → IR tool index

    def feed(self, chunk: bytes) -> list[ir.Event]:
        return self._events(self.decoder.feed(chunk))

    def close(self) -> list[ir.Event]:
        return self._events(self.decoder.close())

    def _events(self, raw: list[sse.SSEEvent]) -> list[ir.Event]:
        out: list[ir.Event] = []
        for item in raw:
            try:
                event = _decode_event(item.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # not an event of the protocol (a proxy's comment, a stray line)
            handler = self._handlers.get(event.type)
            if handler is not None:
                handler(self, event, out)
        return out

    def _message_start(self, event: _StreamEvent, out: list[ir.Event]) -> None:
        message = event.message or _StreamMessage()
        out.append(ir.StreamStart(id=message.id, model=message.model))
        # Kept, not reported yet: the converting relay takes the latest UsageUpdate as the whole
        # request's, and message_start counts one output token, so a stream cut after it would
        # be billed one token instead of an estimate of what was relayed.
        if message.usage is not None:
            self.start = message.usage

    def _block_start(self, event: _StreamEvent, out: list[ir.Event]) -> None:
        block = event.content_block
        if block is None:
            return
        if block.type == "text" and block.text:
            out.append(ir.TextDelta(text=block.text))
        elif block.type == "tool_use":
            index = len(self.tools)
            self.tools[event.index] = index
            out.append(ir.ToolCallStart(index=index, id=block.id, name=block.name))
            if isinstance(block.input, dict) and block.input:
                out.append(ir.ToolCallDelta(index=index, arguments=_arguments(block.input)))
        elif block.type == "thinking" and (block.thinking or block.signature):
            out.append(ir.ThinkingDelta(text=block.thinking, signature=block.signature))

    def _block_delta(self, event: _StreamEvent, out: list[ir.Event]) -> None:
        delta = event.delta
        if delta is None:
            return
        if delta.type == "text_delta" and delta.text:
            out.append(ir.TextDelta(text=delta.text))
        elif delta.type == "input_json_delta" and delta.partial_json:
            index = self.tools.get(event.index)
            if index is not None:
                out.append(ir.ToolCallDelta(index=index, arguments=delta.partial_json))
        elif delta.type == "thinking_delta" and delta.thinking:
            out.append(ir.ThinkingDelta(text=delta.thinking))
        elif delta.type == "signature_delta" and delta.signature:
            out.append(ir.ThinkingDelta(signature=delta.signature))

    def _message_delta(self, event: _StreamEvent, out: list[ir.Event]) -> None:
        if event.usage is not None:
            out.append(ir.UsageUpdate(usage=self.start.merge(event.usage).normalize()))
        delta = event.delta or _StreamDelta()
        reason = TO_FINISH.get(delta.stop_reason or "end_turn", "stop")
        out.append(ir.Finish(finish_reason=reason, stop_sequence=delta.stop_sequence))

    def _error(self, event: _StreamEvent, out: list[ir.Event]) -> None:
        error = event.error or _Error()
        status = STREAM_ERROR_STATUS.get(error.type, 502)
        out.append(ir.StreamError(message=error.message or error.type or "error", status=status))

    _handlers: ClassVar[dict[str, Any]] = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "message_delta": _message_delta,
        "error": _error,
    }


# -- the provider -----------------------------------------------------------------------------


class AnthropicProvider(Provider):
    type = "anthropic"
    Config = AnthropicConfig
    native_dialects = frozenset({"anthropic.messages"})
    converts = frozenset({"chat"})
    user_keys = True  # the key given is the only credential sent

    def __init__(self, name: str, config: AnthropicConfig) -> None:
        super().__init__(name, config)
        # base_url is the API root (https://api.anthropic.com); a root given with /v1 works too.
        root = self.base_url.removesuffix("/v1")
        self.url = root + "/v1/messages"
        self.count_url = root + "/v1/messages/count_tokens"
        self.version = config.version
        self.structured_outputs = config.structured_outputs

    def headers(self, ctx: RequestContext, key: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": self.version}
        if key:
            headers["x-api-key"] = key
        beta = ctx.headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        return headers

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        body = ctx.body
        doc = system_joined(ctx.doc)
        if doc is not ctx.doc or doc.get("model") != route.model:
            body = orjson.dumps({**doc, "model": route.model})
        return UpstreamRequest(self.url, self.headers(ctx, key), body)

    def passes_through(self, ctx: RequestContext, route: Route) -> bool:
        """Messages pass through, except a structured output (``output_config.format`` or the
        beta's ``output_format``) for a model without native structured outputs: Anthropic
        refuses it there, so it is converted and answered through the forced tool."""
        if not super().passes_through(ctx, route):
            return False
        config = ctx.doc.get("output_config")
        fmt = config.get("format") if isinstance(config, dict) else None
        if not fmt and not ctx.doc.get("output_format"):
            return True
        if self.structured_outputs == "auto":
            return native_structured_outputs(route.model)
        return self.structured_outputs == "native"

    def count_tokens(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest | None:
        """Anthropic counts for itself: its own dialect's request is forwarded as it came (model
        renamed, system messages joined); another dialect's is estimated."""
        if ctx.dialect not in self.native_dialects:
            return None
        body = orjson.dumps({**system_joined(ctx.doc), "model": route.model})
        return UpstreamRequest(self.count_url, self.headers(ctx, key), body)

    def token_count(self, body: bytes) -> int:
        count = orjson.loads(body).get("input_tokens")
        if type(count) is not int:
            raise ValueError("no input_tokens in the count")
        return count

    def callers_fault(self, status: int, body: bytes) -> bool:
        """Anthropic has long answered an exhausted account with a 400 ``invalid_request_error``
        ("Your credit balance is too low…") rather than 402: that is this route's problem, so
        the next route is tried."""
        if status == 400 and b"credit balance" in body:
            return False
        return super().callers_fault(status, body)

    def build(
        self, ctx: RequestContext, request: ir.ChatRequest, route: Route, key: str
    ) -> UpstreamRequest:
        request = capabilities.fit(
            ctx, request, reasoning=reasoning_default(route.model), hosted=HOSTED
        )
        max_tokens = (
            request.max_tokens
            or ctx.max_output_tokens
            or ctx.model.max_output_tokens
            or DEFAULT_MAX_TOKENS
        )
        if self.answers_by_tool(request, route.model):
            request = structured.as_tool_request(request)
        n = request.n
        if n > 1:
            if ctx.stream:
                raise CannotServe(
                    f"n: Anthropic models stream one choice, and {n} were asked for "
                    "(`n` / `candidateCount`); ask for 1, or without streaming.",
                    "n",
                )
            request = msgspec.structs.replace(request, n=1)  # sent n times: see fanout
        body = messages_request(request, route.model, max_tokens)
        upstream = UpstreamRequest(self.url, self.headers(ctx, key), orjson.dumps(body))
        return fanout.fan_out(upstream, n) if n > 1 else upstream

    async def open(self, request: UpstreamRequest, *, stream: bool, budget: float) -> Any:
        if isinstance(request, fanout.FanOut):
            return await fanout.open_all(super().open, request, stream=stream, budget=budget)
        return await super().open(request, stream=stream, budget=budget)

    def answers_by_tool(self, request: ir.ChatRequest, model: str) -> bool:
        """Whether this request's structured answer comes through the forced answer tool."""
        fmt = request.response_format
        if fmt is None:
            return False
        if fmt.type != "json_schema" or structured.wrapped(fmt) or not fmt.schema:
            return True  # output_config.format takes an object schema only
        if self.structured_outputs == "auto":
            return not native_structured_outputs(model)
        return self.structured_outputs == "tool"

    def parse(self, ctx: RequestContext, request: ir.ChatRequest, body: bytes) -> ir.ChatResponse:
        if body[:1] == b"[":  # the answers of a fan-out (n > 1)
            items = orjson.loads(body)
            return fanout.merge([self.parse(ctx, request, orjson.dumps(i)) for i in items])
        try:
            message = _decode_message(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamFailure.unreadable(self.name, exc) from None
        answer = chat_response(message)
        fmt = request.response_format if request is not None else None
        if fmt is not None and self.answers_by_tool(request, _model(ctx)):
            answer = structured.from_tool_answer(answer, fmt)
        return answer

    def stream_parser(self, ctx: RequestContext, request: ir.ChatRequest) -> Any:
        parser = MessagesStreamParser()
        fmt = request.response_format if request is not None else None
        if fmt is not None and self.answers_by_tool(request, _model(ctx)):
            return structured.ToolAnswerStream(parser, fmt)
        return parser


def system_joined(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the ``system`` messages inside ``messages`` moved, in order, to the end of
    the top-level ``system`` prompt (as text blocks); ``doc`` itself when it has none."""
    messages = doc.get("messages")
    if not isinstance(messages, list) or not any(
        isinstance(m, dict) and m.get("role") == "system" for m in messages
    ):
        return doc
    system = doc.get("system")
    blocks: list[Any] = [{"type": "text", "text": system}] if isinstance(system, str) else []
    if isinstance(system, list):
        blocks += system
    kept = []
    for message in messages:
        if not (isinstance(message, dict) and message.get("role") == "system"):
            kept.append(message)
            continue
        content = message.get("content")
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks += content
    return {**doc, "system": blocks, "messages": kept}


def _model(ctx: RequestContext) -> str:
    """The upstream model of the route being tried."""
    return ctx.route.model if ctx.route is not None else ""


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {"anthropic": AnthropicProvider}
