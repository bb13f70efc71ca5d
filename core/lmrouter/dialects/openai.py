"""The OpenAI dialect: request checks, error bodies, and the pass-through readers that take usage
off responses and streams on their way to the client without re-encoding what they need not."""

from __future__ import annotations

import os
import time
from typing import Any, Literal

import msgspec
import orjson

from lmrouter import ir, sse
from lmrouter.dialects import Dialect, Parsed, files
from lmrouter.dialects.cost import cost_json, finish_reading, with_cost
from lmrouter.errors import RouterError, invalid_request, validation_detail
from lmrouter.money import Rates
from lmrouter.usage import Usage, estimate_tokens, prompt_chars
from lmrouter.wire.openai import WireUsage

# -- errors -----------------------------------------------------------------------------------


def error_body(err: RouterError) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": err.message,
                "type": err.openai_type,
                "param": err.param,
                "code": err.code,
            }
        }
    )


def stream_error(err: RouterError) -> bytes:
    """A mid-stream error: the openai SDK raises ``APIError`` when it reads one."""
    return sse.encode(error_body(err))


# -- requests ---------------------------------------------------------------------------------


def load_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request(
            "We could not parse the JSON body of your request. Send valid JSON with "
            "Content-Type: application/json."
        ) from None
    if not isinstance(doc, dict):
        raise invalid_request("The request body must be a JSON object.")
    return doc


def model_field(doc: dict[str, Any]) -> str:
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("you must provide a model parameter", "model")
    return model


def _optional_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise invalid_request(f"`{name}` must be a positive integer.", name)
    return value


def _optional_bool(doc: dict[str, Any], name: str) -> bool:
    value = doc.get(name, False)
    if value is None:
        return False
    if type(value) is not bool:
        raise invalid_request(f"`{name}` must be a boolean.", name)
    return value


def parse_chat(body: bytes) -> Parsed:
    doc = load_object(body)
    model = model_field(doc)
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("`messages` must be a non-empty array.", "messages")
    stream = _optional_bool(doc, "stream")
    options = doc.get("stream_options")
    wants_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise invalid_request("`stream_options` must be an object.", "stream_options")
        if not stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        wants_usage = options.get("include_usage") is True
    limit = _optional_int(doc, "max_completion_tokens") or _optional_int(doc, "max_tokens")
    n = _optional_int(doc, "n") or 1
    chars = prompt_chars(body, messages)
    return Parsed(doc, model, stream, wants_usage, limit, n, chars)


# -- usage ------------------------------------------------------------------------------------


class _Groq(msgspec.Struct):
    usage: WireUsage | None = None


finish_json = finish_reading(WireUsage)


# -- streams ----------------------------------------------------------------------------------


class _FunctionDelta(msgspec.Struct):
    arguments: str | None = None


class _ToolDelta(msgspec.Struct):
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolDelta] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: WireUsage | None = None
    error: Any = None
    x_groq: _Groq | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
DONE = b"data: [DONE]\n\n"
_DELTA_TEXT_KEYS = (b'"content":"', b'"arguments":"', b'"reasoning_content":"')


def _plain_delta(data: bytes) -> bool:
    """True for chunk data that carries no usage, no finish reason and no error — nothing the
    relay must act on. Byte tests only: a quote inside a JSON string is always escaped, so
    these can only match keys. Anything unusual takes the decoding path."""
    return (
        b'"finish_reason":null' in data
        and b'"finish_reason":"' not in data
        and b'"error"' not in data
        and b"x_groq" not in data
        and data.count(b'"usage"') == data.count(b'"usage":null')
    )


def _delta_chars(data: bytes) -> int:
    """Roughly how much text a delta carries (for estimating a cut stream's usage)."""
    total = 0
    for key in _DELTA_TEXT_KEYS:
        start = data.find(key)
        if start >= 0:
            start += len(key)
            end = data.find(b'"', start)
            total += max(end - start, 0)
    return total


class ChatStreamRelay:
    """Relays a Chat Completions stream. Reads usage (the router always asks for it), hides the
    extra usage chunk from a client that did not ask, adds ``usage.cost`` for one that did, and
    counts what it relayed so a cut stream can still be charged for what was generated."""

    __slots__ = (
        "chars",
        "decoder",
        "done",
        "failed",
        "finished",
        "pieces",
        "rates",
        "usage",
        "wants_usage",
    )

    def __init__(self, wants_usage: bool, rates: Rates) -> None:
        self.decoder = sse.SSEDecoder()
        self.wants_usage = wants_usage
        self.rates = rates
        self.usage: Usage | None = None
        self.done = False  # saw [DONE]
        self.finished = False  # saw a finish_reason
        self.failed = False  # the upstream sent an error object mid-stream
        self.pieces = 0
        self.chars = 0

    def feed(self, chunk: bytes) -> bytes:
        if chunk[-2:] == b"\n\n" and self.decoder.at_boundary and b"\r" not in chunk:
            # Whole events, as OpenAI frames them (one ``data:`` line each): no line parser.
            frames = chunk.split(b"\n\n")
            del frames[-1]
            if all(f[:6] == b"data: " and b"\n" not in f for f in frames):
                return b"".join([self._data(f[6:], f) for f in frames])
        events = self.decoder.feed(chunk)
        if len(events) == 1:
            return self._event(events[0])
        return b"".join([self._event(event) for event in events])

    def close(self) -> bytes:
        """End of the upstream body: the last unterminated event, and ``[DONE]`` if a complete
        stream lacked it (the SDKs expect it)."""
        out = b"".join([self._event(event) for event in self.decoder.close()])
        if self.complete and not self.done:
            out += DONE
        return out

    @property
    def complete(self) -> bool:
        return not self.failed and (self.done or self.finished)

    def estimated_usage(self, prompt_chars: int) -> Usage:
        return Usage(
            prompt_tokens=estimate_tokens(prompt_chars),
            completion_tokens=max(self.pieces, estimate_tokens(self.chars)),
            estimated=True,
        )

    def error(self, err: RouterError) -> bytes:
        return stream_error(err)

    def _data(self, data: bytes, frame: bytes) -> bytes:
        """One ``data: …`` frame of a cleanly framed chunk."""
        if _plain_delta(data):
            self._count(data)
            return frame + b"\n\n"
        return self._event(sse.SSEEvent(data))

    def _count(self, data: bytes) -> None:
        chars = _delta_chars(data)
        if chars:
            self.pieces += 1
            self.chars += chars

    def _event(self, event: sse.SSEEvent) -> bytes:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return DONE
        if _plain_delta(data):  # most chunks: relay without decoding, count the text roughly
            self._count(data)
            return sse.encode(data, event.event)
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return sse.encode(data, event.event)  # not ours to judge: pass it on unchanged
        if chunk.error is not None:
            self.failed = True
            return sse.encode(data, event.event)
        if chunk.choices:
            for choice in chunk.choices:
                if choice.finish_reason:
                    self.finished = True
                delta = choice.delta
                if delta is None:
                    continue
                text = delta.content or delta.reasoning_content or delta.refusal
                if text:
                    self.pieces += 1
                    self.chars += len(text)
                if delta.tool_calls:
                    self.pieces += 1
                    for call in delta.tool_calls:
                        if call.function and call.function.arguments:
                            self.chars += len(call.function.arguments)
        usage = chunk.usage
        if usage is None and chunk.x_groq is not None:
            usage = chunk.x_groq.usage
        if usage is not None:
            self.usage = usage.normalize()
            if chunk.usage is not None:
                if not chunk.choices and not self.wants_usage:
                    return b""  # the router asked for this chunk, not the client
                return sse.encode(with_cost(data, self.rates.cost(self.usage)), event.event)
        return sse.encode(data, event.event)


# -- conversion: requests in ------------------------------------------------------------------
# Wire shapes of an OpenAI chat request, decoded with msgspec so that a wrong type or an unknown
# tag is refused with the path of the field that holds it (``messages[1].content[0].type``).


class _InText(msgspec.Struct, tag="text", tag_field="type"):
    text: str
    # Anthropic's cache breakpoint, as OpenRouter and LiteLLM accept it in this dialect.
    cache_control: Any = None


class _InImageURL(msgspec.Struct):
    url: str


class _InImage(msgspec.Struct, tag="image_url", tag_field="type"):
    image_url: _InImageURL


class _InAudioData(msgspec.Struct):
    data: str
    format: str


class _InAudio(msgspec.Struct, tag="input_audio", tag_field="type"):
    input_audio: _InAudioData


class _InFileData(msgspec.Struct):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class _InFile(msgspec.Struct, tag="file", tag_field="type"):
    file: _InFileData


class _InRefusal(msgspec.Struct, tag="refusal", tag_field="type"):
    refusal: str


class _InFunction(msgspec.Struct):
    name: str
    arguments: str = ""


class _InToolCall(msgspec.Struct):
    id: str
    type: str = "function"
    function: _InFunction | None = None


class _InSystem(msgspec.Struct, tag="system", tag_field="role"):
    content: str | list[_InText]


class _InDeveloper(msgspec.Struct, tag="developer", tag_field="role"):
    content: str | list[_InText]


class _InUser(msgspec.Struct, tag="user", tag_field="role"):
    content: str | list[_InText | _InImage | _InAudio | _InFile]


class _InAssistant(msgspec.Struct, tag="assistant", tag_field="role"):
    content: str | list[_InText | _InRefusal] | None = None
    refusal: str | None = None
    tool_calls: list[_InToolCall] | None = None
    function_call: Any = None


class _InTool(msgspec.Struct, tag="tool", tag_field="role"):
    content: str | list[_InText]
    tool_call_id: str


class _InFunctionMessage(msgspec.Struct, tag="function", tag_field="role"):
    pass


_InMessage = _InSystem | _InDeveloper | _InUser | _InAssistant | _InTool | _InFunctionMessage


class _InFunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _InToolDef(msgspec.Struct):
    type: str = "function"
    function: _InFunctionDef | None = None


class _InChoiceFunction(msgspec.Struct):
    name: str


class _InNamedChoice(msgspec.Struct):
    type: str
    function: _InChoiceFunction | None = None


class _InJsonSchema(msgspec.Struct):
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class _InResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _InJsonSchema | None = None


_Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class _InRequest(msgspec.Struct):
    model: str
    messages: list[_InMessage]
    tools: list[_InToolDef] | None = None
    tool_choice: Literal["auto", "required", "none"] | _InNamedChoice | None = None
    parallel_tool_calls: bool | None = None
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    reasoning_effort: _Effort | None = None
    user: str | None = None
    safety_identifier: str | None = None  # OpenAI's successor to ``user``
    stream: bool | None = None
    response_format: _InResponseFormat | None = None
    modalities: list[str] | None = None
    functions: Any = None
    function_call: Any = None


_NOT_SUPPORTED = "is not supported for this model's provider"

# OpenAI's effort words → (IR effort, IR thinking budget). "none" turns reasoning off, which the
# IR says as a budget of 0 tokens; the efforts above "high" are "high" everywhere else.
_EFFORTS: dict[str, tuple[ir.Effort | None, int | None]] = {
    "none": (None, 0),
    "minimal": ("minimal", None),
    "low": ("low", None),
    "medium": ("medium", None),
    "high": ("high", None),
    "xhigh": ("high", None),
    "max": ("high", None),
}


def _field_error(exc: msgspec.ValidationError) -> RouterError:
    """msgspec's message ``… - at `$.messages[1].content[0].type``` as a 400 naming the field."""
    text, param, _ = validation_detail(str(exc))
    return invalid_request(f"{text} at '{param}'." if param else f"{text}.", param or None)


def to_ir(doc: dict[str, Any]) -> ir.ChatRequest:
    """An OpenAI chat request as IR. System and developer messages, wherever they stand, become
    ``system`` in order; ``role: "tool"`` messages become tool results in a user turn; consecutive
    turns of one role merge. What the IR cannot carry is refused with a 400 naming the field."""
    try:
        req = msgspec.convert(doc, _InRequest)
    except msgspec.ValidationError as exc:
        raise _field_error(exc) from None
    _refuse_unsupported(req)
    system: list[ir.Text] = []
    messages: list[ir.Message] = []
    names: dict[str, str] = {}  # tool call id → function name, for the results that answer it
    for i, message in enumerate(req.messages):
        if isinstance(message, _InSystem | _InDeveloper):
            system.extend(_texts(message.content))
        elif isinstance(message, _InUser):
            _append(messages, "user", _user_parts(message.content, i))
        elif isinstance(message, _InAssistant):
            _append(messages, "assistant", _assistant_parts(message, i, names))
        elif isinstance(message, _InTool):
            result = ir.ToolResult(
                id=message.tool_call_id,
                content=[*_texts(message.content)],
                name=names.get(message.tool_call_id, ""),
            )
            _append(messages, "user", [result])
        else:
            raise invalid_request(
                "Deprecated `function` messages are not supported for this model's provider; "
                "send `tool` messages instead.",
                f"messages[{i}].role",
            )
    effort, budget = _EFFORTS[req.reasoning_effort] if req.reasoning_effort else (None, None)
    return ir.ChatRequest(
        model=req.model,
        messages=messages,
        system=system,
        tools=_tools(req.tools or []),
        tool_choice=_tool_choice(req.tool_choice),
        parallel_tool_calls=req.parallel_tool_calls,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=[req.stop] if isinstance(req.stop, str) else list(req.stop or ()),
        stream=req.stream is True,
        reasoning_effort=effort,
        thinking_budget=budget,
        user=req.user if req.user is not None else req.safety_identifier,
        response_format=_response_format(req.response_format),
        n=req.n or 1,
    )


def _response_format(fmt: _InResponseFormat | None) -> ir.ResponseFormat | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ir.ResponseFormat(type="json_object")
    spec = fmt.json_schema
    if spec is None:
        raise invalid_request(
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
        )
    return ir.ResponseFormat(
        type="json_schema",
        schema=spec.schema if spec.schema is not None else {},
        name=spec.name,
        description=spec.description or "",
        strict=spec.strict,
    )


def _refuse_unsupported(req: _InRequest) -> None:
    """Options the IR has no place for and that change what the caller gets back: refusing them
    is better than an answer that silently ignores them."""
    if req.modalities and "audio" in req.modalities:
        raise invalid_request(f"Audio output {_NOT_SUPPORTED}.", "modalities")
    for name in ("functions", "function_call"):
        if getattr(req, name) is not None:
            raise invalid_request(
                f"The deprecated `{name}` parameter {_NOT_SUPPORTED}; use `tools` and "
                "`tool_choice`.",
                name,
            )


def _append(messages: list[ir.Message], role: ir.Role, parts: list[ir.Part]) -> None:
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(ir.Message(role=role, parts=parts))


def _texts(content: str | list[_InText]) -> list[ir.Text]:
    if isinstance(content, str):
        return [ir.Text(text=content)]
    return [ir.Text(text=part.text, cache=part.cache_control is not None) for part in content]


def _user_parts(content: str | list[Any], i: int) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(text=content)]
    parts: list[ir.Part] = []
    for j, part in enumerate(content):
        if isinstance(part, _InText):
            parts.append(ir.Text(text=part.text, cache=part.cache_control is not None))
        elif isinstance(part, _InImage):
            parts.append(_image(part.image_url.url, f"messages[{i}].content[{j}].image_url.url"))
        elif isinstance(part, _InAudio):
            audio = part.input_audio
            param = f"messages[{i}].content[{j}]"
            parts.append(files.openai_audio(audio.data, audio.format, param))
        else:
            spec = part.file
            parts.append(
                files.openai_file(
                    file_data=spec.file_data,
                    file_id=spec.file_id,
                    filename=spec.filename,
                    param=f"messages[{i}].content[{j}]",
                    fields=".file",
                )
            )
    return parts


def _image(url: str, param: str) -> ir.Image:
    if url.startswith(("https://", "http://")):
        return ir.Image(url=url)
    parsed = files.data_url(url)
    if parsed is not None:
        return ir.Image(data=parsed[1], media_type=parsed[0] or "image/png")
    raise invalid_request("Image URLs must be http(s) URLs or data URLs.", param)


def _assistant_parts(message: _InAssistant, i: int, names: dict[str, str]) -> list[ir.Part]:
    if message.function_call is not None:
        raise invalid_request(
            f"The deprecated `function_call` {_NOT_SUPPORTED}; use `tool_calls`.",
            f"messages[{i}].function_call",
        )
    parts: list[ir.Part] = []
    content = message.content
    if isinstance(content, str):
        parts.append(ir.Text(text=content))
    elif content is not None:
        parts.extend(
            ir.Text(text=part.text if isinstance(part, _InText) else part.refusal)
            for part in content
        )
    if message.refusal:
        parts.append(ir.Text(text=message.refusal))
    for j, call in enumerate(message.tool_calls or ()):
        if call.type != "function" or call.function is None:
            raise invalid_request(
                f"'{call.type}' tool calls are not supported for this model's provider.",
                f"messages[{i}].tool_calls[{j}].type",
            )
        names[call.id] = call.function.name
        parts.append(
            ir.ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        )
    return parts


def _tools(tools: list[_InToolDef]) -> list[ir.Tool]:
    out = []
    for k, tool in enumerate(tools):
        if tool.type != "function":
            raise invalid_request(
                f"'{tool.type}' tools are not supported for this model's provider; only "
                "function tools are.",
                f"tools[{k}].type",
            )
        if tool.function is None:
            raise invalid_request("Missing required parameter.", f"tools[{k}].function")
        function = tool.function
        out.append(
            ir.Tool(
                name=function.name,
                description=function.description or "",
                parameters=function.parameters if function.parameters is not None else {},
            )
        )
    return out


def _tool_choice(choice: str | _InNamedChoice | None) -> ir.ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ir.ToolChoice(mode=choice)  # type: ignore[arg-type]  # the Literal checked it
    if choice.type != "function":
        raise invalid_request(
            f"`tool_choice` of type '{choice.type}' {_NOT_SUPPORTED}.", "tool_choice.type"
        )
    if choice.function is None:
        raise invalid_request("Missing required parameter.", "tool_choice.function")
    return ir.ToolChoice(mode="tool", name=choice.function.name)


# -- conversion: answers out ------------------------------------------------------------------


def _new_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def _usage_object(usage: Usage, cost_pico: int) -> dict[str, Any]:
    prompt_details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:  # not OpenAI's, but what OpenRouter and others call it
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "cost": cost_json(cost_pico),
    }


def _tool_call_object(call: ir.ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _message(parts: list[ir.Part]) -> dict[str, Any]:
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ir.Text):
            text.append(part.text)
        elif isinstance(part, ir.Thinking):
            thinking.append(part.text)
        elif isinstance(part, ir.ToolCall):
            calls.append(_tool_call_object(part))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
        "refusal": None,
        "annotations": [],
    }
    if any(thinking):
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message


def render(answer: ir.ChatResponse, doc: dict[str, Any], cost_pico: int) -> bytes:
    """A ``chat.completion`` object, a choice per answer (``n``). Reasoning goes in
    ``message.reasoning_content``, the field DeepSeek, vLLM and most OpenAI-compatible clients
    read it from (OpenAI has none)."""
    body: dict[str, Any] = {
        "id": answer.id or _new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model or doc.get("model", ""),
        "choices": [
            {
                "index": index,
                "message": _message(choice.parts),
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for index, choice in enumerate(answer.all_choices())
        ],
    }
    if answer.usage is not None:
        body["usage"] = _usage_object(answer.usage, cost_pico)
    return orjson.dumps(body)


_ROLE_DELTA = b'{"role":"assistant","content":"","refusal":null}'
_NO_FINISH = b"null"


class ChatRenderer:
    """IR events as ``chat.completion.chunk`` events, shaped as OpenAI streams them: a first
    delta with the role, content and tool-call deltas by index, an empty delta with the
    ``finish_reason``, the ``choices: []`` usage chunk when asked for, then ``[DONE]``.

    Chunks are assembled from byte templates: this runs once per token."""

    __slots__ = ("head", "model", "others", "prefix", "tail", "wants_usage")

    def __init__(self, doc: dict[str, Any], wants_usage: bool) -> None:
        self.model = doc.get("model", "")
        self.prefix = b""  # ``data: {"id":…,"model":…,`` once the stream has started
        self.head = b""
        self.wants_usage = wants_usage
        self.others: set[int] = set()  # choices above 0 (n > 1) that have had their role delta
        # With include_usage, OpenAI puts ``"usage": null`` on every chunk but the usage one.
        self.tail = b'}],"usage":null}\n\n' if wants_usage else b"}]}\n\n"

    def render(self, events: list[ir.Event]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if isinstance(event, ir.StreamStart):
                if not self.prefix:
                    self._start(event.id, event.model)
                    out.append(self._chunk(_ROLE_DELTA))
                continue
            if not self.prefix:  # a parser that began without StreamStart
                self._start("", "")
                out.append(self._chunk(_ROLE_DELTA))
            delta = _delta(event)
            if delta is not None:
                choice = getattr(event, "choice", 0)
                out.append(self._other(choice, *delta) if choice else self._chunk(*delta))
        return b"".join(out)

    def finish(self, usage: Usage | None, cost_pico: int) -> bytes:
        if usage is None or not self.wants_usage:
            return DONE
        body = orjson.dumps(_usage_object(usage, cost_pico))
        return self.prefix + b'"choices":[],"usage":' + body + b"}\n\n" + DONE

    def error(self, err: RouterError) -> bytes:
        return stream_error(err)

    def _start(self, id: str, model: str) -> None:
        self.prefix = b"".join(
            (
                b'data: {"id":',
                orjson.dumps(id or _new_id()),
                b',"object":"chat.completion.chunk","created":',
                str(int(time.time())).encode(),
                b',"model":',
                orjson.dumps(model or self.model),
                b",",
            )
        )
        self.head = self.prefix + b'"choices":[{"index":0,"delta":'

    def _other(self, choice: int, delta: bytes, finish: bytes = _NO_FINISH) -> bytes:
        """A chunk of choice ``choice`` > 0 (``n > 1``), after its own role delta."""
        head = self.prefix + b'"choices":[{"index":%d,"delta":' % choice
        out = b""
        if choice not in self.others:
            self.others.add(choice)
            out = self._chunk(_ROLE_DELTA, _NO_FINISH, head)
        return out + self._chunk(delta, finish, head)

    def _chunk(self, delta: bytes, finish: bytes = _NO_FINISH, head: bytes = b"") -> bytes:
        return b'%b%b,"logprobs":null,"finish_reason":%b%b' % (
            head or self.head,
            delta,
            finish,
            self.tail,
        )


def _delta(event: ir.Event) -> tuple[bytes] | tuple[bytes, bytes] | None:
    """The delta (and finish reason) of one event; ``None`` for events with nothing to show."""
    if isinstance(event, ir.TextDelta):
        return (b'{"content":%b}' % orjson.dumps(event.text),) if event.text else None
    if isinstance(event, ir.ThinkingDelta):
        if not event.text:
            return None  # a signature alone: OpenAI clients have nowhere to keep it
        return (b'{"reasoning_content":%b}' % orjson.dumps(event.text),)
    if isinstance(event, ir.ToolCallStart):
        call = {
            "index": event.index,
            "id": event.id,
            "type": "function",
            "function": {"name": event.name, "arguments": ""},
        }
        return (b'{"tool_calls":[%b]}' % orjson.dumps(call),)
    if isinstance(event, ir.ToolCallDelta):
        if not event.arguments:
            return None
        fragment = orjson.dumps({"index": event.index, "function": {"arguments": event.arguments}})
        return (b'{"tool_calls":[%b]}' % fragment,)
    if isinstance(event, ir.Finish):
        return b"{}", orjson.dumps(event.finish_reason)
    return None  # usage and errors are the converting relay's to handle


CHAT = Dialect(
    name="openai.chat",
    kind="chat",
    parse=parse_chat,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
    stream_relay=ChatStreamRelay,
    to_ir=to_ir,
    render=render,
    renderer=ChatRenderer,
)
