"""The OpenAI dialect: request checks, error bodies, and the pass-through readers that take usage
off responses and streams on their way to the client without re-encoding what they need not."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from lmrouter import sse
from lmrouter.dialects import Dialect, Parsed
from lmrouter.errors import RouterError, invalid_request
from lmrouter.money import Rates, format_usd
from lmrouter.usage import Usage, estimate_tokens

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
    return Parsed(doc, model, stream, wants_usage, limit, n, len(body))


# -- usage ------------------------------------------------------------------------------------


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek's name for cached prompt tokens

    def normalize(self) -> Usage:
        prompt = self.prompt_tokens_details
        cached = (prompt.cached_tokens if prompt else None) or self.prompt_cache_hit_tokens or 0
        written = (prompt.cache_write_tokens if prompt else None) or 0
        completion = self.completion_tokens_details
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=(completion.reasoning_tokens if completion else None) or 0,
        )


class _Groq(msgspec.Struct):
    usage: WireUsage | None = None


class _Response(msgspec.Struct):
    usage: WireUsage | None = None


_decode_response = msgspec.json.Decoder(_Response).decode


def finish_json(body: bytes, rates: Rates) -> tuple[bytes, Usage | None, int]:
    """A complete JSON answer: its usage, its cost, and the body with ``usage.cost`` added."""
    try:
        usage = _decode_response(body).usage
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body, None, 0
    if usage is None:
        return body, None, 0
    normalized = usage.normalize()
    cost = rates.cost(normalized)
    return _with_cost(body, cost), normalized, cost


def _with_cost(body: bytes, cost: int) -> bytes:
    doc = orjson.loads(body)
    doc["usage"]["cost"] = orjson.Fragment(format_usd(cost).encode())
    return orjson.dumps(doc)


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

    def _event(self, event: sse.SSEEvent) -> bytes:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return DONE
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
                return sse.encode(_with_cost(data, self.rates.cost(self.usage)), event.event)
        return sse.encode(data, event.event)


CHAT = Dialect(
    name="openai.chat",
    kind="chat",
    parse=parse_chat,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
    stream_relay=ChatStreamRelay,
)
