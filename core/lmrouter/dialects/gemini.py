"""Gemini's own API (``POST /v1beta/models/{model}:generateContent`` and its siblings), so that
``google-genai`` works with the router as its base URL.

The model is in the path, not the body (the app puts it in the scope as ``lmrouter.model``), and
whether the answer streams is in the method (``:streamGenerateContent``, SSE with ``alt=sse``).
Google routes get the request as it is (pass-through); every other provider gets it through the
internal representation, and its answer comes back as a ``GenerateContentResponse``.

Wire facts this module relies on (see WIRE.md): a stream is ``data:`` events of whole
``GenerateContentResponse`` objects with no ``[DONE]``; the chunk with ``finishReason`` ends it
and ``usageMetadata`` is cumulative; function calls come whole, with ``args`` as an object and an
``id`` only sometimes; a ``functionResponse`` answers a call by its ``name`` (and ``id`` when the
call had one). Gemini's responses have no place for the request's cost: it is in the
``x-lmrouter-cost`` header of a whole answer, and in ``GET /v1/usage`` for both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import orjson

from lmrouter import ir, sse
from lmrouter.dialects import Dialect, Parsed
from lmrouter.errors import RouterError, invalid_request
from lmrouter.money import Rates
from lmrouter.usage import PART_FLOOR_CHARS, Usage, estimate_tokens
from lmrouter.wire.gemini import UsageMetadata as WireUsage

# Gemini's canonical status names for the router's HTTP statuses.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH_REASONS: dict[str, str] = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",  # Gemini ends a turn of function calls with STOP
    "content_filter": "SAFETY",
}
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}

# -- errors -----------------------------------------------------------------------------------


def _error(err: RouterError) -> dict[str, Any]:
    return {
        "error": {
            "code": err.status,
            "message": err.message,
            "status": _STATUS.get(err.status, "UNKNOWN"),
        }
    }


def error_body(err: RouterError) -> bytes:
    return orjson.dumps(_error(err))


def stream_error(err: RouterError) -> bytes:
    return b"data: " + orjson.dumps(_error(err)) + b"\r\n\r\n"


# -- requests ---------------------------------------------------------------------------------


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request("Invalid JSON payload received: the body is not JSON.") from None
    if not isinstance(doc, dict):
        raise invalid_request("Invalid JSON payload received: expected an object.")
    return doc


def _generation_int(doc: dict[str, Any], name: str) -> int | None:
    config = doc.get("generationConfig") or doc.get("generation_config") or {}
    if not isinstance(config, dict):
        raise invalid_request("generationConfig: expected an object.", "generationConfig")
    value = config.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise invalid_request(
            f"generationConfig.{name}: expected a positive integer.", f"generationConfig.{name}"
        )
    return value


def _parse(body: bytes, stream: bool) -> Parsed:
    """The model comes from the path (the endpoint fills it in); the rest from the body."""
    doc = _load(body)
    contents = doc.get("contents")
    if not isinstance(contents, list) or not contents:
        raise invalid_request("contents: at least one content is required.", "contents")
    limit = _generation_int(doc, "maxOutputTokens")
    n = _generation_int(doc, "candidateCount") or 1
    doc["stream"] = stream  # said by the path; the converter reads it here, like the model
    return Parsed(doc, "", stream, True, limit, n, len(body) + _file_refs(body, contents))


def _file_refs(body: bytes, contents: list[Any]) -> int:
    """The prompt-size floor for files given by URI (``fileData``): a few bytes of the body,
    billed by the provider as thousands of tokens. Inline data is in the body already."""
    if b"ile_data" not in body and b"ileData" not in body:
        return 0  # the usual request: no walk
    count = sum(
        1
        for content in contents
        if isinstance(content, dict)
        for part in content.get("parts") or ()
        if isinstance(part, dict) and ("fileData" in part or "file_data" in part)
    )
    return count * PART_FLOOR_CHARS


def parse_generate(body: bytes) -> Parsed:
    return _parse(body, False)


def parse_stream(body: bytes) -> Parsed:
    return _parse(body, True)


# -- usage (pass-through) ---------------------------------------------------------------------


def wire_usage(usage: Usage | None) -> dict[str, int]:
    """IR usage as ``usageMetadata`` (the inverse of :meth:`WireUsage.normalize`)."""
    if usage is None:
        return {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0}
    out = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.completion_tokens - usage.reasoning_tokens,
        "totalTokenCount": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    return out


class _Candidate(msgspec.Struct, rename="camel"):
    finish_reason: str | None = None


class _Chunk(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = []
    usage_metadata: WireUsage | None = None
    error: dict[str, Any] | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def finish_json(body: bytes, rates: Rates) -> tuple[bytes, Usage | None, int]:
    """A Google route's whole answer, as it is: its usage read, its cost computed."""
    try:
        wire = _decode_chunk(body).usage_metadata
    except (msgspec.DecodeError, msgspec.ValidationError):
        wire = None
    usage = wire.normalize() if wire is not None else None
    return body, usage, rates.cost(usage) if usage else 0


class GenerateStreamRelay:
    """A Google route's ``alt=sse`` stream, relayed byte for byte; usage is read off the way
    (the last ``usageMetadata`` is the whole request's) and a ``finishReason`` completes it."""

    __slots__ = ("chars", "decoder", "failed", "finished", "usage")

    def __init__(self, wants_usage: bool, rates: Rates) -> None:
        self.decoder = sse.SSEDecoder()
        self.usage: Usage | None = None
        self.failed = False
        self.finished = False
        self.chars = 0

    def feed(self, chunk: bytes) -> bytes:
        for event in self.decoder.feed(chunk):
            self._read(event.data)
        return chunk

    def close(self) -> bytes:
        for event in self.decoder.close():
            self._read(event.data)
        return b""

    @property
    def complete(self) -> bool:
        return self.finished and not self.failed

    def estimated_usage(self, prompt_chars: int) -> Usage:
        return Usage(
            prompt_tokens=estimate_tokens(prompt_chars),
            completion_tokens=estimate_tokens(self.chars),
            estimated=True,
        )

    def error(self, err: RouterError) -> bytes:
        return stream_error(err)

    def _read(self, data: bytes) -> None:
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if chunk.error is not None:
            self.failed = True
            return
        self.chars += len(data)
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata.normalize()
        if any(c.finish_reason for c in chunk.candidates):
            self.finished = True


# -- conversion: request → IR -----------------------------------------------------------------


class _Blob(msgspec.Struct, rename="camel"):
    mime_type: str = ""
    data: str = ""


class _FileData(msgspec.Struct, rename="camel"):
    mime_type: str = ""
    file_uri: str = ""


class _FunctionCall(msgspec.Struct, rename="camel"):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _FunctionResponse(msgspec.Struct, rename="camel"):
    name: str
    response: dict[str, Any] | None = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None
    function_call: _FunctionCall | None = None
    function_response: _FunctionResponse | None = None


class _Content(msgspec.Struct, rename="camel"):
    parts: list[_Part] = []
    role: str | None = None


class _Declaration(msgspec.Struct, rename="camel"):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None


class _Tool(msgspec.Struct, rename="camel"):
    function_declarations: list[_Declaration] = []


class _CallingConfig(msgspec.Struct, rename="camel"):
    mode: str = "AUTO"
    allowed_function_names: list[str] = []


class _ToolConfig(msgspec.Struct, rename="camel"):
    function_calling_config: _CallingConfig | None = None


class _ThinkingConfig(msgspec.Struct, rename="camel"):
    thinking_budget: int | None = None
    include_thoughts: bool | None = None
    thinking_level: str | None = None


class _GenerationConfig(msgspec.Struct, rename="camel"):
    max_output_tokens: int | None = None
    stop_sequences: list[str] = []
    candidate_count: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    thinking_config: _ThinkingConfig | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None


class _Request(msgspec.Struct, rename="camel"):
    contents: list[_Content]
    stream: bool = False  # not Gemini's: the path's method, put here by the parser
    system_instruction: _Content | None = None
    tools: list[dict[str, Any]] = []
    tool_config: _ToolConfig | None = None
    generation_config: _GenerationConfig | None = None


_LEVELS: dict[str, ir.Effort] = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
}


# Files uploaded to Google (the Files API's https URIs, Vertex's gs:// ones): only Google can
# read them.
_GOOGLE_FILES = ("gs://", "https://generativelanguage.googleapis.com/")


def _media(part: _Part) -> ir.Image | ir.File:
    """``inlineData`` of any type (images, PDF, text, audio, video) and ``fileData`` as IR
    parts: a provider without a form for a type skips the route (see its converter)."""
    if part.inline_data is not None:
        blob = part.inline_data
        return ir.media_part(blob.mime_type, data=standard_base64(blob.data))
    assert part.file_data is not None
    uri, mime = part.file_data.file_uri, part.file_data.mime_type
    if uri.startswith(_GOOGLE_FILES) or not uri.startswith(("http://", "https://")):
        return ir.File(file_id=uri, file_owner="google", media_type=mime)
    return ir.media_part(mime, url=uri)


def standard_base64(data: str) -> str:
    """Proto JSON's ``bytes`` may be URL-safe base64 without padding (google-genai sends it
    so); other providers take only the standard alphabet, padded."""
    data = data.replace("-", "+").replace("_", "/")
    return data + "=" * (-len(data) % 4)


class _CallIds:
    """Gemini may leave out call ids; the IR needs them to pair calls with their results. A
    call without one gets ``call_<n>``, and a response without one answers the earliest call of
    its name still open."""

    def __init__(self) -> None:
        self.count = 0
        self.open: dict[str, list[str]] = {}

    def call(self, call: _FunctionCall) -> str:
        self.count += 1
        ident = call.id or f"call_{self.count}"
        self.open.setdefault(call.name, []).append(ident)
        return ident

    def result(self, response: _FunctionResponse) -> str:
        waiting = self.open.get(response.name) or []
        if response.id:
            if response.id in waiting:
                waiting.remove(response.id)
            return response.id
        if waiting:
            return waiting.pop(0)
        self.count += 1
        return f"call_{self.count}"


def _parts(content: _Content, ids: _CallIds) -> list[ir.Part]:
    parts: list[ir.Part] = []
    for part in content.parts:
        if part.function_call is not None:
            call = part.function_call
            arguments = orjson.dumps(call.args or {}).decode()
            parts.append(ir.ToolCall(id=ids.call(call), name=call.name, arguments=arguments))
        elif part.function_response is not None:
            response = part.function_response
            text = orjson.dumps(response.response or {}).decode()
            parts.append(
                ir.ToolResult(
                    id=ids.result(response), content=[ir.Text(text=text)], name=response.name
                )
            )
        elif part.inline_data is not None or part.file_data is not None:
            parts.append(_media(part))
        elif part.text is not None:
            if part.thought:
                parts.append(ir.Thinking(text=part.text, signature=part.thought_signature or ""))
            else:
                parts.append(ir.Text(text=part.text))
    return parts


def _tools(
    tools: list[dict[str, Any]],
) -> tuple[list[ir.Tool], list[tuple[str, str]], list[tuple[str, str]]]:
    """Function declarations; ``googleSearch`` as the hosted web search other providers run
    themselves; Google's other tools (code execution, URL context…) as dropped, for the
    provider side to leave out and name, or refuse (``[routing] unsupported_tools``)."""
    out: list[ir.Tool] = []
    dropped: list[tuple[str, str]] = []
    hosted: list[tuple[str, str]] = []
    for i, raw in enumerate(tools):
        for key in raw:
            if key == "googleSearch":
                hosted.append((f"tools[{i}].googleSearch", "web_search"))
            elif key != "functionDeclarations":
                dropped.append((f"tools[{i}].{key}", key))
        tool = msgspec.convert(raw, _Tool)
        for d in tool.function_declarations:
            schema = d.parameters_json_schema or json_schema(d.parameters or {})
            out.append(ir.Tool(name=d.name, description=d.description, parameters=schema))
    return out, dropped, hosted


def _response_format(config: _GenerationConfig) -> ir.ResponseFormat | None:
    """``responseMimeType: application/json``, with a schema in JSON Schema or Gemini's."""
    if config.response_mime_type != "application/json":
        return None
    if config.response_json_schema is not None:
        return ir.ResponseFormat(type="json_schema", schema=config.response_json_schema)
    if config.response_schema is not None:
        schema = json_schema(config.response_schema)
        return ir.ResponseFormat(type="json_schema", schema=schema)
    return ir.ResponseFormat(type="json_object")


def json_schema(schema: Any) -> Any:
    """Gemini's ``Schema`` (OpenAPI's subset: ``type: "OBJECT"``, ``nullable``) as the JSON
    Schema other providers take."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: json_schema(item) for name, item in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = json_schema(value)
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _tool_choice(config: _ToolConfig | None) -> ir.ToolChoice | None:
    calling = config.function_calling_config if config else None
    if calling is None:
        return None
    mode = _MODES.get(calling.mode.upper(), "auto")
    if mode == "required" and len(calling.allowed_function_names) == 1:
        return ir.ToolChoice(mode="tool", name=calling.allowed_function_names[0])
    return ir.ToolChoice(mode=mode)  # type: ignore[arg-type]


# Values that are the caller's own data (schemas, arguments): their keys are never renamed.
_FREE_FORM = frozenset(
    {"args", "response", "parameters", "parametersJsonSchema", "responseSchema",
     "responseJsonSchema"}
)  # fmt: skip


def camel_keys(value: Any) -> Any:
    """Proto JSON accepts ``snake_case`` field names beside ``lowerCamel`` (google-genai sends
    some of each): every field name as lowerCamel, free-form values left alone."""
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if "_" in key:
            head, *rest = key.split("_")
            key = head + "".join(word[:1].upper() + word[1:] for word in rest)
        out[key] = item if key in _FREE_FORM else camel_keys(item)
    return out


def to_ir(doc: dict[str, Any]) -> ir.ChatRequest:
    """A Gemini request as IR. Not carried over: ``safetySettings``, ``cachedContent``,
    ``topK``, seeds and penalties (Gemini's own). A JSON ``responseMimeType`` (with its schema)
    becomes the IR's response format; Google Search the hosted web search."""
    try:
        req = msgspec.convert(camel_keys(doc), _Request)
        tools, dropped, hosted = _tools(req.tools)
    except msgspec.ValidationError as exc:
        raise invalid_request(f"Invalid JSON payload received: {exc}") from None
    ids = _CallIds()
    messages = [
        ir.Message(role="assistant" if c.role == "model" else "user", parts=_parts(c, ids))
        for c in req.contents
    ]
    for i, message in enumerate(messages):
        for part in message.parts:
            if isinstance(part, ir.File):  # for an error that names where it came from
                part.param = f"contents[{i}].parts"
    system = []
    if req.system_instruction is not None:
        system = [ir.Text(text=p.text) for p in req.system_instruction.parts if p.text]
    config = req.generation_config or _GenerationConfig()
    n = config.candidate_count or 1
    thinking = config.thinking_config
    return ir.ChatRequest(
        model=str(doc.get("model", "")),
        messages=[m for m in messages if m.parts],
        system=system,
        tools=tools,
        tool_choice=_tool_choice(req.tool_config),
        max_tokens=config.max_output_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        stop=list(config.stop_sequences),
        stream=doc.get("stream") is True,
        reasoning_effort=_LEVELS.get((thinking.thinking_level or "").lower()) if thinking else None,
        thinking_budget=thinking.thinking_budget if thinking else None,
        response_format=_response_format(config),
        n=n,
        dropped_tools=dropped,
        hosted_tools=hosted,
    )


# -- conversion: IR answer → GenerateContentResponse ------------------------------------------


def _wire_part(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.ToolCall):
        try:
            args = orjson.loads(part.arguments) if part.arguments else {}
        except orjson.JSONDecodeError:
            args = {}
        call = {"name": part.name, "args": args if isinstance(args, dict) else {}}
        if part.id:
            call["id"] = part.id
        return {"functionCall": call}
    if isinstance(part, ir.Thinking) and part.text:
        return {"text": part.text, "thought": True}
    return None


def _candidate(parts: list[dict[str, Any]], finish: str | None, index: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if finish is not None:
        candidate["finishReason"] = FINISH_REASONS.get(finish, "STOP")
    return candidate


def _response(
    parts: list[dict[str, Any]],
    finish: str | None,
    usage: Usage | None,
    model: str,
    rid: str,
    more: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"candidates": [_candidate(parts, finish, 0), *more]}
    if usage is not None:
        doc["usageMetadata"] = wire_usage(usage)
    doc["modelVersion"] = model
    doc["responseId"] = rid
    return doc


def render(answer: ir.ChatResponse, doc: dict[str, Any], cost: int) -> bytes:
    parts = [p for part in answer.parts if (p := _wire_part(part)) is not None]
    more = [
        _candidate(
            [p for part in choice.parts if (p := _wire_part(part)) is not None],
            choice.finish_reason,
            i,
        )
        for i, choice in enumerate(answer.choices, 1)
    ]
    model = answer.model or str(doc.get("model", ""))
    usage = answer.usage or Usage()
    return orjson.dumps(_response(parts, answer.finish_reason, usage, model, answer.id, more))


class GenerateRenderer:
    """IR stream events as Gemini's ``alt=sse`` stream: a chunk per text or thinking delta, a
    function call in one chunk once its arguments are whole (Gemini never splits one), and at
    the end a chunk with ``finishReason`` and the usage. With ``candidateCount`` above 1 each
    chunk names its candidate's ``index``, and the last one has every candidate's reason."""

    __slots__ = ("calls", "finish_reasons", "model", "response_id")

    def __init__(self, doc: dict[str, Any], wants_usage: bool) -> None:
        self.model = str(doc.get("model", ""))
        self.response_id = ""
        # (candidate, IR index) → [id, name, arguments so far]
        self.calls: dict[tuple[int, int], list[str]] = {}
        self.finish_reasons: dict[int, str] = {0: "stop"}

    def render(self, events: list[ir.Event]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if isinstance(event, ir.StreamStart):
                self.model = event.model or self.model
                self.response_id = event.id
            elif isinstance(event, ir.TextDelta) and event.text:
                out.append(self._chunk([{"text": event.text}], index=event.choice))
            elif isinstance(event, ir.ThinkingDelta) and event.text:
                part = {"text": event.text, "thought": True}
                out.append(self._chunk([part], index=event.choice))
            elif isinstance(event, ir.ToolCallStart):
                out.append(self._flush_calls(event.choice))
                self.calls[event.choice, event.index] = [event.id, event.name, ""]
            elif isinstance(event, ir.ToolCallDelta) and (event.choice, event.index) in self.calls:
                self.calls[event.choice, event.index][2] += event.arguments
            elif isinstance(event, ir.Finish):
                self.finish_reasons[event.choice] = event.finish_reason
        return b"".join(out)

    def finish(self, usage: Usage | None, cost_pico: int) -> bytes:
        out = self._flush_all()
        more = [
            _candidate([], reason, index)
            for index, reason in sorted(self.finish_reasons.items())
            if index
        ]
        return out + self._chunk([], self.finish_reasons[0], usage or Usage(), more=more)

    def error(self, err: RouterError) -> bytes:
        return self._flush_all() + stream_error(err)

    def _flush_all(self) -> bytes:
        return b"".join(self._flush_calls(choice) for choice in sorted({c for c, _ in self.calls}))

    def _flush_calls(self, choice: int) -> bytes:
        mine = [key for key in self.calls if key[0] == choice]
        if not mine:
            return b""
        parts = []
        for key in mine:
            ident, name, args = self.calls.pop(key)
            part = _wire_part(ir.ToolCall(id=ident, name=name, arguments=args))
            if part is not None:
                parts.append(part)
        return self._chunk(parts, index=choice)

    def _chunk(
        self,
        parts: list[dict[str, Any]],
        finish: str | None = None,
        usage: Usage | None = None,
        *,
        index: int = 0,
        more: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> bytes:
        doc = _response(parts, finish, usage, self.model, self.response_id, more)
        if index:
            doc["candidates"][0]["index"] = index
        return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"


def text_of(body: bytes) -> str:
    """Every text in a ``countTokens`` body (``contents`` or ``generateContentRequest``),
    for an estimate; a body that is not JSON counts as itself."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    return "".join(found)


# -- embeddings -------------------------------------------------------------------------------


def _content_text(content: Any, where: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise invalid_request(f"{where}.parts: expected a list of parts.", where)
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    if not text:
        raise invalid_request(f"{where}: text is required to embed.", where)
    return text


def parse_embed(body: bytes) -> Parsed:
    doc = _load(body)
    _content_text(doc.get("content"), "content")
    return Parsed(doc, "", False, False, None, 1, len(body))


def parse_batch_embed(body: bytes) -> Parsed:
    doc = _load(body)
    requests = doc.get("requests")
    if not isinstance(requests, list) or not requests:
        raise invalid_request("requests: at least one request is required.", "requests")
    return Parsed(doc, "", False, False, None, 1, len(body))


def _dimensions(doc: dict[str, Any]) -> int | None:
    value = doc.get("outputDimensionality")
    return value if type(value) is int and value > 0 else None


def embed_to_ir(doc: dict[str, Any]) -> ir.EmbeddingRequest:
    text = _content_text(doc.get("content"), "content")
    return ir.EmbeddingRequest(
        model=str(doc.get("model", "")), inputs=[text], dimensions=_dimensions(doc)
    )


def batch_embed_to_ir(doc: dict[str, Any]) -> ir.EmbeddingRequest:
    requests = doc["requests"]
    inputs = [
        _content_text(r.get("content"), f"requests[{i}].content") for i, r in enumerate(requests)
    ]
    dimensions = {_dimensions(r) for r in requests}
    return ir.EmbeddingRequest(
        model=str(doc.get("model", "")),
        inputs=inputs,
        dimensions=dimensions.pop() if len(dimensions) == 1 else None,
    )


def render_embed(answer: ir.EmbeddingResponse, doc: dict[str, Any], cost: int) -> bytes:
    return orjson.dumps({"embedding": {"values": answer.vectors[0]}})


def render_batch_embed(answer: ir.EmbeddingResponse, doc: dict[str, Any], cost: int) -> bytes:
    return orjson.dumps({"embeddings": [{"values": v} for v in answer.vectors]})


def _no_pass_through(body: bytes, rates: Rates) -> tuple[bytes, Usage | None, int]:
    raise AssertionError("Gemini embeddings always convert")  # no provider lists them native


GENERATE = Dialect(
    name="gemini.generate",
    kind="chat",
    parse=parse_generate,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
    stream_relay=GenerateStreamRelay,
    to_ir=to_ir,
    render=render,
    renderer=GenerateRenderer,
    model_in_path=True,
    cost_header=True,
)
# The same dialect; only the path's method says the answer streams.
STREAM_GENERATE = dataclasses.replace(GENERATE, parse=parse_stream)
EMBED = Dialect(
    name="gemini.embed",
    kind="embeddings",
    parse=parse_embed,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=_no_pass_through,
    to_ir=embed_to_ir,
    render=render_embed,
    model_in_path=True,
    cost_header=True,
)
BATCH_EMBED = Dialect(
    name="gemini.batch_embed",
    kind="embeddings",
    parse=parse_batch_embed,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=_no_pass_through,
    to_ir=batch_embed_to_ir,
    render=render_batch_embed,
    model_in_path=True,
    cost_header=True,
)
# The methods of ``/v1beta/models/{model}:METHOD`` served by the proxy pipeline.
METHODS = {
    "generateContent": GENERATE,
    "streamGenerateContent": STREAM_GENERATE,
    "embedContent": EMBED,
    "batchEmbedContents": BATCH_EMBED,
}
