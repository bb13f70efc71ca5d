"""Chat Completions to and from the internal representation, for callers in other dialects
(an Anthropic or Gemini client reaching an OpenAI-compatible model).

Requests: the IR's system text becomes one system message; tool results become ``role: "tool"``
messages right after the assistant turn that called them (images a tool returned cannot go in a
tool message, so they follow in a user message); thinking is dropped, because OpenAI-compatible
APIs do not take reasoning back. Answers and streams: ``reasoning_content`` (DeepSeek, vLLM) or
``reasoning`` (OpenRouter, Groq, Ollama) becomes thinking; a refusal becomes text; with ``n > 1``
every choice is read (streams: each event carries its choice's index). A ``response_format``
goes as OpenAI's own. Files: see :func:`_file_part`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec
import orjson

from lmrouter import UpstreamFailure, ir, sse
from lmrouter import error_text as provider_error_text
from lmrouter.wire.openai import WireUsage

# -- requests ---------------------------------------------------------------------------------

# A thinking budget (Anthropic, Gemini) as OpenAI's effort: under 2,048 tokens is "low", under
# 8,192 "medium", more "high". Budgets of 0 or below (thinking off, Gemini's "dynamic") send no
# effort and leave the model's default.
_BUDGET_EFFORTS: tuple[tuple[int, ir.Effort], ...] = ((2048, "low"), (8192, "medium"))

_TOOL_CHOICES: dict[str, str] = {"auto": "auto", "required": "required", "none": "none"}

# OpenAI chat models that refuse ``reasoning_effort`` ("Unsupported parameter"): the GPT-4
# families, GPT-3.5 and the gpt-5 chat snapshots. Their dated and fine-tuned names start alike.
_NO_REASONING = re.compile(
    r"^(?:ft:)?(?:gpt-4o|gpt-4\.1|gpt-4-|gpt-4$|gpt-3\.5|chatgpt-|gpt-5-chat)"
)
_REASONING = re.compile(r"^(?:ft:)?(?:o\d|gpt-5)")


def reasoning_default(model: str) -> bool | None:
    """Whether an OpenAI model takes reasoning settings, when its name says (``None`` for the
    models of compatible servers, which the ``[[models]]`` key ``reasoning`` can settle)."""
    if _NO_REASONING.match(model):
        return False
    return True if _REASONING.match(model) else None


def effort_for(request: ir.ChatRequest) -> str | None:
    if request.reasoning_effort is not None:
        return request.reasoning_effort
    budget = request.thinking_budget
    if budget is None or budget <= 0:
        return None
    for below, effort in _BUDGET_EFFORTS:
        if budget < below:
            return effort
    return "high"


def request_body(
    request: ir.ChatRequest,
    model: str,
    *,
    stream_usage: bool = True,
    max_tokens_field: str = "max_completion_tokens",
) -> dict[str, Any]:
    """The upstream request for ``model``. Unset options are left out rather than sent as null:
    compatible servers differ in what they accept, and absent is what every one of them takes."""
    body: dict[str, Any] = {"model": model, "messages": messages(request)}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        # OpenAI refuses both without tools, and an IR from elsewhere may carry them anyway.
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "reasoning_effort": effort_for(request),
        "user": request.user,
    }
    body.update((name, value) for name, value in optional.items() if value is not None)
    if request.stop:
        body["stop"] = request.stop
    if request.response_format is not None:
        body["response_format"] = response_format(request.response_format, body["messages"])
    if request.n != 1:
        body["n"] = request.n
    if request.stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


JSON_NOTE = "Answer in JSON."


def response_format(fmt: ir.ResponseFormat, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAI's ``response_format``. ``json_object`` needs the word "JSON" somewhere in the
    messages (OpenAI refuses it otherwise): a caller in another dialect had no such rule, so a
    system note says it when nothing else does."""
    if fmt.type == "json_object":
        if not any("json" in str(message.get("content")).lower() for message in messages):
            messages.insert(0, {"role": "system", "content": JSON_NOTE})
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": _schema_name(fmt.name), "schema": fmt.schema or {}}
    if fmt.description:
        spec["description"] = fmt.description
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def _schema_name(name: str) -> str:
    """OpenAI's rule for ``json_schema.name``: ``[a-zA-Z0-9_-]``, at most 64 characters."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in name)
    return cleaned[:64] or "response"


def messages(request: ir.ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": _joined(request.system)})
    for message in request.messages:
        if message.role == "user":
            out.extend(_user_messages(message.parts))
        else:
            assistant = _assistant_message(message.parts)
            if assistant is not None:
                out.append(assistant)
    return out


def _text_content(texts: list[ir.Text]) -> str | list[dict[str, Any]]:
    """One text as a plain string (what every compatible server takes), several as text parts."""
    if len(texts) == 1:
        return texts[0].text
    return [{"type": "text", "text": text.text} for text in texts]


def _joined(texts: list[ir.Text]) -> str:
    """System and tool messages as one string: several compatible servers (DeepSeek, chat
    templates of vLLM and Ollama) take nothing else there. Blocks become paragraphs."""
    return texts[0].text if len(texts) == 1 else "\n\n".join(text.text for text in texts)


def _image_part(image: ir.Image) -> dict[str, Any]:
    url = image.url or f"data:{image.media_type or 'image/png'};base64,{image.data}"
    return {"type": "image_url", "image_url": {"url": url}}


# OpenAI's ``input_audio.format`` for the IR's audio types (it takes these two only).
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
                  "audio/mpeg": "mp3", "audio/mp3": "mp3"}  # fmt: skip


def _file_part(part: ir.File) -> dict[str, Any]:
    """A file in Chat Completions' own forms: text documents as text (with their title and
    context), PDFs as ``file`` parts (``file_data`` a data URL, as OpenAI's examples send it),
    OpenAI's own file ids as they are, wav/mp3 audio as ``input_audio``. Anything else (video,
    other audio, files by URL, other providers' file ids) has no form here: the route is
    skipped."""
    if part.file_id:
        if part.file_owner != "openai":
            raise part.cannot_serve("cannot be read by this OpenAI-compatible model.")
        spec = {"file_id": part.file_id} | ({"filename": part.name} if part.name else {})
        return {"type": "file", "file": spec}
    text = part.decoded_text()
    if text is not None:
        heading = "\n".join(s for s in (part.name, part.context) if s)
        return {"type": "text", "text": f"{heading}\n\n{text}" if heading else text}
    if part.url:
        raise part.cannot_serve(
            f"at {part.url!r} cannot be sent: Chat Completions takes files as data, not by URL."
        )
    if part.media_type == "application/pdf":
        url = f"data:application/pdf;base64,{part.data}"
        return {"type": "file", "file": {"filename": part.name or "document.pdf", "file_data": url}}
    audio = _AUDIO_FORMATS.get(part.media_type)
    if audio is not None:
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": audio}}
    raise part.cannot_serve(
        "cannot be sent to this OpenAI-compatible model (it takes PDF, text, and wav or mp3 audio)."
    )


def _user_messages(parts: list[ir.Part]) -> list[dict[str, Any]]:
    """Tool messages first (OpenAI wants them right after the assistant's ``tool_calls``), then
    one user message with the images the tools returned and the turn's own content."""
    out: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ir.ToolResult):
            texts = [item for item in part.content if isinstance(item, ir.Text)]
            out.append({"role": "tool", "tool_call_id": part.id, "content": _joined(texts)})
            images = [_image_part(item) for item in part.content if isinstance(item, ir.Image)]
            if images:
                note = f"Images returned by tool call {part.id}:"
                tool_images += [{"type": "text", "text": note}, *images]
        elif isinstance(part, ir.Text):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ir.Image):
            content.append(_image_part(part))
        elif isinstance(part, ir.File):
            content.append(_file_part(part))
        # Tool calls and thinking never stand in a user turn.
    content = tool_images + content
    if content:
        only_text = len(content) == 1 and content[0]["type"] == "text"
        out.append({"role": "user", "content": content[0]["text"] if only_text else content})
    return out


def _assistant_message(parts: list[ir.Part]) -> dict[str, Any] | None:
    texts = [part for part in parts if isinstance(part, ir.Text)]
    calls = [part for part in parts if isinstance(part, ir.ToolCall)]
    if not texts and not calls:
        return None  # only thinking: nothing an OpenAI model takes back
    message: dict[str, Any] = {
        "role": "assistant",
        "content": _text_content(texts) if texts else None,
    }
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ]
    return message


def _tool(tool: ir.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def _tool_choice(choice: ir.ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return _TOOL_CHOICES[choice.mode]


# -- answers ----------------------------------------------------------------------------------

# Vendors' words beside OpenAI's own (vLLM, Ollama, DeepSeek, Mistral, proxies of Anthropic).
FINISH_REASONS: dict[str, ir.FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "insufficient_system_resource": "length",  # DeepSeek: cut short by the server
    "safety": "content_filter",
    "refusal": "content_filter",
}


def finish_reason(reason: str | None, called_tools: bool) -> ir.FinishReason:
    mapped = FINISH_REASONS.get(reason.lower(), "stop") if reason else "stop"
    # Some servers (Ollama, Gemini's compatible API) say "stop" after tool calls; callers in
    # other dialects rely on the tool-use reason to run the tools.
    if mapped == "stop" and called_tools:
        return "tool_calls"
    return mapped


def arguments_text(value: Any) -> str:
    """Arguments as JSON text: a few servers send an object, some an empty string."""
    if isinstance(value, str):
        return value or "{}"
    if value is None:
        return "{}"
    return orjson.dumps(value).decode()


def new_call_id() -> str:
    return "call_" + os.urandom(12).hex()


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: Any = None


class _Call(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct):
    content: Any = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: Any = None
    tool_calls: list[_Call] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    message: _Message | None = None
    finish_reason: str | None = None
    stop_reason: Any = None  # vLLM: the stop string that ended the answer


class _Completion(msgspec.Struct):
    id: str = ""
    model: str = ""
    choices: list[_Choice] | None = None
    usage: WireUsage | None = None
    error: Any = None


_decode_completion = msgspec.json.Decoder(_Completion).decode


def error_text(error: Any) -> str:
    return provider_error_text(error) or orjson.dumps(error).decode()


def _reasoning(message: _Message) -> str:
    """``reasoning_content`` (DeepSeek, vLLM) or else ``reasoning`` (OpenRouter, Groq, Ollama);
    servers that send both send the same text twice."""
    if message.reasoning_content:
        return message.reasoning_content
    return message.reasoning if isinstance(message.reasoning, str) else ""


def _content_texts(content: Any) -> list[str]:
    """``content`` as a string, or (Mistral and a few others) as an array of text parts."""
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and part.get("text")
        ]
    return []


def parse_completion(body: bytes) -> ir.ChatResponse:
    try:
        doc = _decode_completion(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamFailure.unreadable("the upstream", f"chat completion: {exc}") from None
    if doc.error is not None:  # a few servers answer 200 with an error object
        raise UpstreamFailure(
            error_text(doc.error), status=502, retryable=True, upstream_status=200
        )
    choices = [_choice(c) for c in sorted(doc.choices or (), key=lambda c: c.index)]
    usage = doc.usage.normalize() if doc.usage is not None else None
    return ir.ChatResponse.of_choices(doc.id, doc.model, choices, usage)  # n > 1: all of them


def _choice(choice: _Choice) -> ir.Choice:
    parts = _answer_parts(choice.message) if choice.message is not None else []
    called = any(isinstance(part, ir.ToolCall) for part in parts)
    return ir.Choice(
        parts=parts,
        finish_reason=finish_reason(choice.finish_reason, called),
        stop_sequence=choice.stop_reason if isinstance(choice.stop_reason, str) else None,
    )


def _answer_parts(message: _Message) -> list[ir.Part]:
    parts: list[ir.Part] = []
    reasoning = _reasoning(message)
    if reasoning:
        parts.append(ir.Thinking(text=reasoning))
    parts.extend(ir.Text(text=text) for text in _content_texts(message.content))
    if message.refusal:
        parts.append(ir.Text(text=message.refusal))
    for call in message.tool_calls or ():
        function = call.function or _Function()
        parts.append(
            ir.ToolCall(
                id=call.id or new_call_id(),
                name=function.name or "",
                arguments=arguments_text(function.arguments),
            )
        )
    return parts


# -- streams ----------------------------------------------------------------------------------


class _Delta(msgspec.Struct):
    content: Any = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: Any = None
    tool_calls: list[_Call] | None = None


class _StreamChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None
    stop_reason: Any = None


class _Groq(msgspec.Struct):
    usage: WireUsage | None = None


class _Chunk(msgspec.Struct):
    id: str = ""
    model: str = ""
    choices: list[_StreamChoice] | None = None
    usage: WireUsage | None = None
    x_groq: _Groq | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


class _ChoiceState:
    """What the parser keeps per choice: its tool calls and whether it has finished."""

    __slots__ = ("calls", "count", "finished", "last_call")

    def __init__(self) -> None:
        self.finished = False
        self.count = 0  # tool calls started
        self.calls: dict[int | None, tuple[int, str]] = {}  # upstream index → (ours, id)
        self.last_call: int | None = None  # ours: fragments without an index go here


class ChatStreamParser:
    """A Chat Completions stream as IR events. Tolerates what compatible servers do: no
    ``[DONE]``, CRLF line ends, padding fields (``obfuscation``), usage on the last choice chunk
    or in Groq's ``x_groq``, tool calls without ``index`` or repeating their ``id`` in every
    fragment, and a finish reason that comes only as ``[DONE]``. With ``n > 1`` every choice's
    events carry its index (``choice``)."""

    __slots__ = ("choices", "decoder", "failed", "n", "started")

    def __init__(self, n: int = 1) -> None:
        self.decoder = sse.SSEDecoder()
        self.started = False
        self.failed = False  # an error event: nothing after it is part of the answer
        self.n = n
        self.choices: dict[int, _ChoiceState] = {}

    @property
    def finished(self) -> bool:
        return self.failed or (
            len(self.choices) >= self.n and all(c.finished for c in self.choices.values())
        )

    def feed(self, chunk: bytes) -> list[ir.Event]:
        events: list[ir.Event] = []
        for event in self.decoder.feed(chunk):
            self._event(event, events)
        return events

    def close(self) -> list[ir.Event]:
        events: list[ir.Event] = []
        for event in self.decoder.close():
            self._event(event, events)
        return events

    def _event(self, event: sse.SSEEvent, out: list[ir.Event]) -> None:
        data = event.data
        if data == b"[DONE]":
            if self.started and not self.failed:  # a server that never said why it stopped
                for index in range(self.n):
                    state = self._state(index)
                    if not state.finished:
                        self._finish(state, index, None, None, out)
            return
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if event.event == "error":
                self.failed = True
                out.append(ir.StreamError(message=data.decode("utf-8", "replace")))
            return  # keep-alive text and the like: nothing to convert
        if chunk.error is not None:
            self.failed = True  # nothing after an error is part of the answer, nor [DONE]
            out.append(ir.StreamError(message=error_text(chunk.error)))
            return
        if not self.started:
            self.started = True
            out.append(ir.StreamStart(id=chunk.id, model=chunk.model))
        for choice in chunk.choices or ():
            if 0 <= choice.index < self.n:
                self._choice(choice, out)
        usage = chunk.usage
        if usage is None and chunk.x_groq is not None:
            usage = chunk.x_groq.usage
        if usage is not None:
            out.append(ir.UsageUpdate(usage=usage.normalize()))

    def _state(self, index: int) -> _ChoiceState:
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = _ChoiceState()
        return state

    def _choice(self, choice: _StreamChoice, out: list[ir.Event]) -> None:
        index = choice.index
        state = self._state(index)
        if state.finished or self.failed:
            return
        delta = choice.delta
        if delta is not None:
            reasoning = delta.reasoning_content
            if not reasoning and isinstance(delta.reasoning, str):
                reasoning = delta.reasoning
            if reasoning:
                out.append(ir.ThinkingDelta(text=reasoning, choice=index))
            out.extend(
                ir.TextDelta(text=text, choice=index) for text in _content_texts(delta.content)
            )
            if delta.refusal:
                out.append(ir.TextDelta(text=delta.refusal, choice=index))
            for call in delta.tool_calls or ():
                self._tool_call(state, index, call, out)
        if choice.finish_reason:
            stop = choice.stop_reason if isinstance(choice.stop_reason, str) else None
            self._finish(state, index, choice.finish_reason, stop, out)

    def _tool_call(
        self, state: _ChoiceState, choice: int, call: _Call, out: list[ir.Event]
    ) -> None:
        known = state.calls.get(call.index)
        if known is not None and (call.id is None or call.id == known[1]):
            ours = known[0]
        elif call.id is None and call.index is None and state.last_call is not None:
            ours = state.last_call  # an index-less fragment continues the latest call
        else:  # a new call: a new index, or a new id at an index already used
            ours = state.count
            state.count += 1
            call_id = call.id or new_call_id()
            name = call.function.name if call.function and call.function.name else ""
            state.calls[call.index] = (ours, call_id)
            out.append(ir.ToolCallStart(index=ours, id=call_id, name=name, choice=choice))
        state.last_call = ours
        arguments = call.function.arguments if call.function else None
        if arguments is not None and not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        if arguments:
            out.append(ir.ToolCallDelta(index=ours, arguments=arguments, choice=choice))

    def _finish(
        self,
        state: _ChoiceState,
        choice: int,
        reason: str | None,
        stop: str | None,
        out: list[ir.Event],
    ) -> None:
        state.finished = True
        reason_ = finish_reason(reason, state.count > 0)
        out.append(ir.Finish(finish_reason=reason_, stop_sequence=stop, choice=choice))
