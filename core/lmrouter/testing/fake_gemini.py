"""A fake Google Gemini upstream (the Generative Language REST API), for tests.

Point a ``type = "google"`` provider (or raw HTTP) at it instead of
``https://generativelanguage.googleapis.com``::

    from lmrouter.testing.fake_gemini import Behavior, FakeGemini

    fake = FakeGemini(api_key="AIza-test")
    fake.script("gemini-x", Behavior(text="Hi there", chunk_delay=0.01))
    with fake.run_in_thread() as base_url:  # "http://127.0.0.1:PORT"
        ...
    assert fake.requests[0].json["contents"][0]["role"] == "user"

What it reproduces from the real API:

* ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/…``): the ``GenerateContentResponse``
  (``candidates[].content.parts``, ``finishReason``, ``index``, ``usageMetadata`` with the
  zero-valued counts left out as proto3 JSON does, ``modelVersion``, ``responseId``),
  pretty-printed like Google's.
* ``:streamGenerateContent?alt=sse``: ``data: {json}`` events ending in CRLF CRLF, no
  ``[DONE]``; thoughts and text in separate chunks; a function call whole in one chunk; cumulative
  ``usageMetadata`` on every chunk; the last chunk carries ``finishReason``. Without ``alt=sse``:
  one JSON array of the same chunks.
* Request checking as Google's JSON parser does it: unknown field names anywhere (including
  JSON-Schema keys such as ``additionalProperties`` in function declarations) are
  ``400 INVALID_ARGUMENT … Unknown name "…" … Cannot find field``; roles ``user``/``model`` only;
  one data field per part; base64 checks; named function responses; a function-call turn only
  after a user or function-response turn, answered by as many function responses as it had calls;
  ``parameters`` of type OBJECT with no properties refused. Field names are accepted in
  lowerCamel or snake_case, as proto JSON allows.
* Tools: with ``tools`` and a mode other than ``NONE``, an answer that calls the allowed (or
  first) function with arguments built from its schema, ``functionCall.id`` included — unless the
  last turn holds function responses, so a round trip ends with text.
* Thinking (``Behavior.thoughts``): counted as ``thoughtsTokenCount`` unless
  ``thinkingBudget`` is 0, returned as ``{"text", "thought": true}`` parts only with
  ``includeThoughts``; thoughts and text share ``maxOutputTokens`` (thoughts first), so a small
  limit can end in ``MAX_TOKENS`` with no text at all, as on the real API.
* Structured output: ``responseMimeType: "application/json"`` with ``responseJsonSchema``
  (JSON Schema) or ``responseSchema`` (the OpenAPI subset) answers with JSON that fits it; a
  schema without the JSON MIME type, both schema fields at once, or the JSON MIME type together
  with function declarations (as Gemini 2.x refuses it) are 400s.
* Thinking budgets within each 2.5 model's documented range (by name), and no thinking
  settings for Gemini 1.x and 2.0 models.
* ``:countTokens``: ``{"totalTokens"}`` for ``contents`` or a whole ``generateContentRequest``.
* ``:batchEmbedContents`` / ``:embedContent``: deterministic unit vectors (``Behavior.dimensions``
  long); ``outputDimensionality`` keeps the leading values *without* re-normalising them
  (Matryoshka truncation, as Gemini does); no token counts (Gemini reports none).
* Keys: ``x-goog-api-key`` header or ``?key=``; none → 403 ``PERMISSION_DENIED``, a wrong one →
  400 ``INVALID_ARGUMENT`` with an ``API_KEY_INVALID`` ``ErrorInfo``. Error bodies are
  ``{"error": {"code", "message", "status", "details"?}}`` (429 ``RESOURCE_EXHAUSTED`` with a
  ``RetryInfo``, 503 ``UNAVAILABLE`` …).

Failure scripting (:class:`Behavior`): delays before the headers and between chunks, a dropped
connection or an ``{"error": …}`` event after N content chunks, safety finishes and blocked
prompts. Streaming clients that go away are recorded in :attr:`FakeGemini.disconnects`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lmrouter.testing.fakeserver import (
    Disconnect,
    FakeServer,
    Recorded,
    ToolCall,
    close_connection,
    content_end,
    embedding,
    sample_arguments,
    sample_json,
    split_text,
)

__all__ = ["Behavior", "Disconnect", "FakeGemini", "Recorded", "ToolCall"]

_PATH = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):([A-Za-z]+)$")
_JSON_TYPE = "application/json; charset=UTF-8"
_SSE_TYPE = "text/event-stream"
_EOL = b"\r\n\r\n"

# HTTP status → google.rpc.Code name, as Google's error bodies carry it.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES: dict[int, str] = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "models/{model} is not found for API version v1beta, or is not supported for"
    " generateContent. Call ListModels to see the list of available models and their supported"
    " methods.",
    429: "You exceeded your current quota, please check your plan and billing details. For more"
    " information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in"
    " https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). Please"
    " use API Key or other form of API consumer identity to call this API."
)
_BLOCKING_FINISHES = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})

# Known fields (lowerCamel) of the request messages the fake checks.
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "safetySettings",
        "generationConfig",
        "cachedContent",
    }
)
_CONTENT_FIELDS = frozenset({"role", "parts"})
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_PART_FIELDS = frozenset(
    {
        *_PART_DATA,
        "executableCode",
        "codeExecutionResult",
        "thought",
        "thoughtSignature",
        "videoMetadata",
        "partMetadata",
        "mediaResolution",
    }
)
_GENERATION_FIELDS = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "speechConfig",
        "thinkingConfig",
        "mediaResolution",
    }
)
_THINKING_FIELDS = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
_TOOL_FIELDS = frozenset(
    {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext"}
)
_DECLARATION_FIELDS = frozenset(
    {"name", "description", "parameters", "parametersJsonSchema", "response", "behavior"}
)
_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_SCHEMA_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_MODES = frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_EMBED_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})


@dataclass(slots=True)
class Behavior:
    """How the fake answers requests for one model (see :meth:`FakeGemini.script`).

    ``Behavior()`` answers like a healthy, fast Gemini model.
    """

    text: str | None = None
    """The answer. ``None``: ``"Hello! You said: "`` + the first 40 characters of the last user
    text. Candidate ``i > 0`` (``candidateCount``) gets ``" (candidate i)"`` appended."""
    thoughts: str | None = None
    """The model's thinking. Counted as ``thoughtsTokenCount`` (one token per piece) unless the
    request sets ``thinkingBudget: 0``; sent as thought parts only with ``includeThoughts``."""
    tool_call: bool = True
    """Answer a request with function declarations (mode not ``NONE``) with a call."""
    call: ToolCall | None = None
    """The ``functionCall`` to make instead, when the request declares that function."""
    function_call_ids: bool = True
    """Give each ``functionCall`` an ``id``."""
    status: int | None = None
    """Answer with this HTTP status and a Google error body instead."""
    error_message: str | None = None
    """The error's ``message`` (default: what Gemini says for that status)."""
    retry_delay: float | None = None
    """Add a ``google.rpc.RetryInfo`` detail (``retryDelay``, seconds) to the error."""
    first_byte_delay: float = 0.0
    """Seconds to wait before the status line and headers."""
    chunk_delay: float = 0.0
    """Seconds between stream chunks; ``0`` writes the whole stream at once."""
    chunk_chars: int = 8
    """Characters of text (or thoughts) per piece; each piece counts as one token."""
    drop_after_chunks: int | None = None
    """Stream: close the connection after that many content chunks. Non-stream: close at once."""
    error_after_chunks: int | None = None
    """Stream: after that many content chunks send ``data: {"error": …}`` (503 UNAVAILABLE, or
    ``status``'s) and end the stream."""
    usage: dict[str, int] | None = None
    """Override ``usageMetadata`` counts: ``promptTokenCount``, ``candidatesTokenCount``,
    ``cachedContentTokenCount``, ``thoughtsTokenCount``, ``toolUsePromptTokenCount`` (the final
    chunk's, in a stream)."""
    finish_reason: str | None = None
    """Override ``finishReason``. A blocking one (``SAFETY``, ``RECITATION``…) drops the content
    of a non-stream answer, as Gemini does; a stream sends its text and then stops with it."""
    block_reason: str | None = None
    """Block the prompt: ``promptFeedback.blockReason`` and no candidates."""
    dimensions: int = 768
    """Length of the full embedding vectors."""


class _ApiError(Exception):
    def __init__(
        self, status: int, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, message)


def _unknown(name: str, where: str) -> _ApiError:
    at = f" at '{where}'" if where else ""
    return _invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


@dataclass(slots=True)
class _Piece:
    kind: str  # "text", "thought" or "call"
    text: str = ""
    call: dict[str, Any] | None = None


@dataclass(slots=True)
class _Plan:
    candidates: list[list[_Piece]]
    finish_reason: str
    prompt_tokens: int
    thought_tokens: int
    thinking: bool


class FakeGemini(FakeServer[Behavior]):
    """A Gemini-compatible HTTP server on loopback with scriptable behaviour per model.

    ``api_key=None`` accepts any key (or none); otherwise requests must carry exactly that key in
    ``x-goog-api-key`` or ``?key=``. Models are scripted by the name in the URL path.
    :attr:`base_url` is ``http://HOST:PORT`` once started (the API version is part of each
    path), and :attr:`requests` record the path with its query string
    (``…:streamGenerateContent?alt=sse``).
    """

    _behavior_type = Behavior
    _thread_name = "fake-gemini"
    _record_query = True

    # -- request handling ---------------------------------------------------------------------

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        try:
            match = _PATH.match(request.path)
            if match is None or request.method != "POST":
                raise _ApiError(404, f"Method not found: {request.method} {request.path}")
            self._authenticate(request)
            if bad_json:
                raise _invalid("Invalid JSON payload received. Unexpected token.")
            if not isinstance(parsed, dict):
                raise _invalid("Invalid JSON payload received. Expected an object.")
            _version, model, method = match.groups()
            handler = {
                "generateContent": self._generate,
                "streamGenerateContent": self._generate,
                "batchEmbedContents": self._batch_embed,
                "embedContent": self._embed,
                "countTokens": self._count_tokens,
            }.get(method)
            if handler is None:
                raise _ApiError(404, f"Method not found: models.{method}")
            return await handler(request, model, method, parsed)
        except _ApiError as err:
            return _error_response(err)

    def _authenticate(self, request: web.BaseRequest) -> None:
        if self.api_key is None:
            return
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise _ApiError(403, _NO_KEY)
        if key != self.api_key:
            raise _ApiError(
                400,
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )

    # -- generateContent ----------------------------------------------------------------------

    async def _generate(
        self, request: web.BaseRequest, model: str, method: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        _check_generate(body)
        _check_thinking_budget(model, _field(_field(body, "generationConfig"), "thinkingConfig"))
        stream = method == "streamGenerateContent"
        behavior = self._behavior(model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, model, stream)
        if behavior.status is not None:
            raise _scripted_error(behavior, model)
        if behavior.drop_after_chunks is not None and not stream:
            close_connection(request)
            return web.Response()
        plan = self._plan(body, behavior)
        response_id = self._response_id()
        if not stream:
            answer = _whole(plan, behavior, model, response_id)
            return _json_response(answer)
        chunks = _chunks(plan, behavior, model, response_id)
        if request.query.get("alt") != "sse":
            text = json.dumps([c for c, _ in chunks], indent=2, ensure_ascii=False)
            return web.Response(text=text, headers={"Content-Type": _JSON_TYPE})
        return await self._stream(request, behavior, model, chunks)

    def _plan(self, body: dict[str, Any], behavior: Behavior) -> _Plan:
        """Decide the whole answer once, so a stream and a whole answer agree."""
        config = _field(body, "generationConfig") or {}
        thinking_config = _field(config, "thinkingConfig") or {}
        size = behavior.chunk_chars
        limit = _field(config, "maxOutputTokens")
        thinking = behavior.thoughts is not None and _field(thinking_config, "thinkingBudget") != 0
        thoughts = split_text(behavior.thoughts or "", size) if thinking else []
        if isinstance(limit, int) and len(thoughts) > limit:
            thoughts = thoughts[:limit]
        room = limit - len(thoughts) if isinstance(limit, int) else None
        show_thoughts = _field(thinking_config, "includeThoughts") is True
        contents = _field(body, "contents")
        call = self._call(body, behavior, contents)
        count = _field(config, "candidateCount") or 1
        candidates: list[list[_Piece]] = []
        finish = "STOP"
        for i in range(count):
            pieces = [_Piece("thought", t) for t in thoughts] if show_thoughts else []
            if call is not None:
                pieces.append(_Piece("call", call=call))
            else:
                text = behavior.text
                if text is None:
                    text = "Hello! You said: " + _last_user_text(contents)[:40]
                    if _field(config, "responseMimeType") == "application/json":
                        schema = _field(config, "responseJsonSchema")
                        schema = schema or _field(config, "responseSchema") or {}
                        text = sample_json(schema) if schema else json.dumps({"text": text})
                texts = split_text(text if i == 0 else f"{text} (candidate {i})", size)
                if room is not None and len(texts) > room:
                    texts = texts[:room]
                    finish = "MAX_TOKENS"
                pieces.extend(_Piece("text", t) for t in texts)
            candidates.append(pieces)
        if behavior.finish_reason is not None:
            finish = behavior.finish_reason
        return _Plan(candidates, finish, _prompt_tokens(body), len(thoughts), thinking)

    def _call(
        self, body: dict[str, Any], behavior: Behavior, contents: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The function call this request gets, or ``None`` for a text answer."""
        if not behavior.tool_call:
            return None
        declarations = [
            d
            for tool in _field(body, "tools") or ()
            for d in _field(tool, "functionDeclarations") or ()
        ]
        calling = _field(_field(body, "toolConfig") or {}, "functionCallingConfig") or {}
        if not declarations or _field(calling, "mode") == "NONE":
            return None
        last_parts = _field(contents[-1], "parts") or []
        if any(_field(p, "functionResponse") is not None for p in last_parts):
            return None
        allowed = _field(calling, "allowedFunctionNames") or []
        chosen = next((d for d in declarations if d["name"] in allowed), declarations[0])
        call: dict[str, Any] = {
            "name": chosen["name"],
            "args": sample_arguments(
                _field(chosen, "parameters")
                or _field(chosen, "parametersJsonSchema")
                or {"type": "OBJECT"}
            ),
        }
        scripted = behavior.call
        if scripted is not None and any(d["name"] == scripted.name for d in declarations):
            call = {"name": scripted.name, "args": dict(scripted.arguments)}
        if behavior.function_call_ids:
            call["id"] = f"fc-{next(self._ids):08x}{os.urandom(4).hex()}"
        return call

    async def _count_tokens(
        self, request: web.BaseRequest, model: str, method: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        _known(body, frozenset({"contents", "generateContentRequest"}), "")
        inner = _field(body, "generateContentRequest")
        if inner is None:
            inner = {"contents": _field(body, "contents")}
        elif _field(body, "contents") is not None:
            raise _invalid("contents and generate_content_request cannot both be set.")
        _check_generate(inner)
        tokens = _prompt_tokens(inner)
        details = [{"modality": "TEXT", "tokenCount": tokens}]
        return _json_response({"totalTokens": tokens, "promptTokensDetails": details})

    def _response_id(self) -> str:
        raw = os.urandom(16) + next(self._ids).to_bytes(4, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")[:22]

    async def _stream(
        self,
        request: web.BaseRequest,
        behavior: Behavior,
        model: str,
        chunks: list[tuple[dict[str, Any], bool]],
    ) -> web.StreamResponse:
        events = [(_sse(chunk), is_content) for chunk, is_content in chunks]
        if behavior.error_after_chunks is not None:
            cut = content_end(events, behavior.error_after_chunks)
            status = behavior.status or 503
            error = {
                "code": status,
                "message": behavior.error_message or _DEFAULT_MESSAGES.get(status, "Error."),
                "status": STATUS_NAMES.get(status, "UNKNOWN"),
            }
            events = [*events[:cut], (_sse({"error": error}), False)]
        drop = behavior.drop_after_chunks
        if drop is not None:  # no terminating chunk: the body just stops
            events = events[: content_end(events, drop)]
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": _SSE_TYPE,
                "Content-Disposition": "attachment",
                "Vary": "Origin, X-Origin, Referer",
                "Server": "scaffolding on HTTPServer2",
            },
        )
        return await self._write_stream(
            request,
            response,
            events,
            model=model,
            delay=behavior.chunk_delay,
            cut=drop is not None,
        )

    # -- embeddings ---------------------------------------------------------------------------

    async def _batch_embed(
        self, request: web.BaseRequest, model: str, method: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        _known(body, frozenset({"requests"}), "")
        items = _field(body, "requests")
        if not isinstance(items, list) or not items:
            raise _invalid("* BatchEmbedContentsRequest.requests: requests is not specified\n")
        if len(items) > 100:
            raise _invalid(
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"
            )
        texts = []
        for i, item in enumerate(items):
            where = f"BatchEmbedContentsRequest.requests[{i}]"
            if _field(item, "model") != f"models/{model}":
                raise _invalid(
                    f"* {where}.model: Model names should start with `models/` and match the"
                    f" model of the batch request, models/{model}.\n"
                )
            texts.append(_embed_text(item, where, f"requests[{i}]"))
        behavior = self._behavior(model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, model, False)
        if behavior.status is not None:
            raise _scripted_error(behavior, model)
        vectors = [_vector(text, item, behavior) for text, item in zip(texts, items, strict=True)]
        return _json_response({"embeddings": [{"values": v} for v in vectors]})

    async def _embed(
        self, request: web.BaseRequest, model: str, method: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        text = _embed_text(body, "EmbedContentRequest", "")
        behavior = self._behavior(model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, model, False)
        if behavior.status is not None:
            raise _scripted_error(behavior, model)
        return _json_response({"embedding": {"values": _vector(text, body, behavior)}})


# -- request checks ----------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _field(doc: Any, name: str) -> Any:
    """A field by its lowerCamel name, also accepting the snake_case spelling."""
    if not isinstance(doc, dict):
        return None
    if name in doc:
        return doc[name]
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)
    return doc.get(snake)


def _known(doc: Any, fields: frozenset[str], where: str) -> None:
    if not isinstance(doc, dict):
        raise _invalid(f"Invalid JSON payload received. Expected an object at '{where}'.")
    for key in doc:
        if _camel(key) not in fields:
            raise _unknown(key, where)


def _check_generate(body: dict[str, Any]) -> None:
    _known(body, _REQUEST_FIELDS, "")
    contents = _field(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        _check_content(content, f"contents[{i}]")
    _check_turns(contents)
    system = _field(body, "systemInstruction")
    if system is not None:
        _check_content(system, "system_instruction")
    config = _field(body, "generationConfig")
    _check_generation_config(config)
    names = _check_tools(_field(body, "tools"))
    _check_tool_config(_field(body, "toolConfig"), names)
    builtin = [t for t in _field(body, "tools") or () if _field(t, "functionDeclarations") is None]
    if names and builtin:
        raise _invalid("Tool use with function calling is unsupported")
    if names and _field(config, "responseMimeType") == "application/json":
        raise _invalid(
            "Function calling with a response mime type: 'application/json' is unsupported"
        )


def _check_content(content: Any, where: str) -> None:
    _known(content, _CONTENT_FIELDS, where)
    role = _field(content, "role")
    if role not in (None, "", "user", "model"):
        raise _invalid("Please use a valid role: user, model.")
    parts = _field(content, "parts")
    if not isinstance(parts, list) or not parts:
        raise _invalid(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
        )
    for j, part in enumerate(parts):
        _check_part(part, f"{where}.parts[{j}]")


def _check_part(part: Any, where: str) -> None:
    _known(part, _PART_FIELDS, where)
    present = [name for name in _PART_DATA if _field(part, name) is not None]
    if not present:
        raise _invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one"
            " initialized field\n"
        )
    if len(present) > 1:
        raise _invalid(
            f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set"
            f" '{present[1]}' at '{where}'"
        )
    signature = _field(part, "thoughtSignature")
    if signature is not None:
        _check_base64(signature, f"{where}.thought_signature")
    kind = present[0]
    value = _field(part, kind)
    if kind == "text" and not isinstance(value, str):
        raise _invalid(f"Invalid value at '{where}.text' (TYPE_STRING), {json.dumps(value)}")
    if kind == "inlineData":
        _known(value, frozenset({"mimeType", "data"}), f"{where}.inline_data")
        _check_base64(_field(value, "data"), f"{where}.inline_data.data")
    elif kind == "fileData":
        _known(value, frozenset({"mimeType", "fileUri"}), f"{where}.file_data")
        if not _field(value, "fileUri"):
            raise _invalid(f"* GenerateContentRequest.{where}.file_data.file_uri: is empty\n")
    elif kind == "functionCall":
        _known(value, frozenset({"id", "name", "args"}), f"{where}.function_call")
        if not _field(value, "name"):
            raise _invalid(
                f"* GenerateContentRequest.{where}.function_call.name: Name cannot be empty.\n"
            )
        if _field(value, "args") is not None and not isinstance(_field(value, "args"), dict):
            raise _invalid(
                f"Invalid value at '{where}.function_call.args'"
                " (type.googleapis.com/google.protobuf.Struct)"
            )
    elif kind == "functionResponse":
        _known(
            value,
            frozenset({"id", "name", "response", "parts", "willContinue", "scheduling"}),
            f"{where}.function_response",
        )
        if not _field(value, "name"):
            raise _invalid(
                f"* GenerateContentRequest.{where}.function_response.name: Name cannot be empty.\n"
            )
        if not isinstance(_field(value, "response"), dict):
            raise _invalid(
                f"Invalid value at '{where}.function_response.response'"
                " (type.googleapis.com/google.protobuf.Struct)"
            )


def _check_base64(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _invalid(f"Invalid value at '{where}' (TYPE_BYTES)")
    text = value.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{value[:40]}\""
        ) from None


def _check_turns(contents: list[dict[str, Any]]) -> None:
    """Gemini's ordering rules around function calls."""
    for i, content in enumerate(contents):
        parts = _field(content, "parts")
        calls = sum(_field(p, "functionCall") is not None for p in parts)
        if not calls:
            continue
        if _field(content, "role") != "model":
            raise _invalid("Please use a valid role: user, model.")
        if i > 0 and _field(contents[i - 1], "role") == "model":
            raise _invalid(
                "Please ensure that function call turn comes immediately after a user turn or"
                " after a function response turn."
            )
        if i + 1 < len(contents):
            reply = _field(contents[i + 1], "parts")
            answers = sum(_field(p, "functionResponse") is not None for p in reply)
            if answers and answers != calls:
                raise _invalid(
                    "Please ensure that the number of function response parts is equal to the"
                    " number of function call parts of the function call turn."
                )


def _check_generation_config(config: Any) -> None:
    if config is None:
        return
    _known(config, _GENERATION_FIELDS, "generation_config")
    thinking = _field(config, "thinkingConfig")
    if thinking is not None:
        _known(thinking, _THINKING_FIELDS, "generation_config.thinking_config")
    for name in ("maxOutputTokens", "candidateCount", "topK"):
        value = _field(config, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _invalid(f"Invalid value at 'generation_config.{name}' (TYPE_INT32), {value!r}")
    mime = _field(config, "responseMimeType")
    json_schema = _field(config, "responseJsonSchema")
    schema = _field(config, "responseSchema")
    if json_schema is not None and schema is not None:
        raise _invalid(
            "* GenerateContentRequest.generation_config.response_schema: response_schema and"
            " response_json_schema cannot both be set.\n"
        )
    if (json_schema is not None or schema is not None) and mime != "application/json":
        raise _invalid(
            "* GenerateContentRequest.generation_config.response_mime_type: response_mime_type"
            " must be 'application/json' when a response schema is set.\n"
        )
    if schema is not None:
        _check_schema(schema, "generation_config.response_schema")
    if json_schema is not None and not isinstance(json_schema, dict):
        raise _invalid("Invalid value at 'generation_config.response_json_schema'")
    count = _field(config, "candidateCount")
    if count is not None and not 1 <= count <= 8:
        raise _invalid(
            "* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]\n"
        )
    stops = _field(config, "stopSequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5):
        raise _invalid(
            "* GenerateContentRequest.generation_config.stop_sequences: the number of"
            " stop_sequences must not exceed 5\n"
        )


# Thinking budgets by model (Google's thinking guide): (least, most, whether 0 is allowed).
_BUDGETS = (
    ("2.5-pro", (128, 32768, False)),
    ("2.5-flash-lite", (512, 24576, True)),
    ("2.5-flash", (0, 24576, True)),
)


def _check_thinking_budget(model: str, thinking: Any) -> None:
    if thinking is None:
        return
    if model.startswith(("gemini-1.", "gemini-2.0")):
        raise _invalid("Thinking is not supported for this model.")
    budget = _field(thinking, "thinkingBudget")
    limits = next((r for name, r in _BUDGETS if name in model), None)
    if not isinstance(budget, int) or budget == -1 or limits is None:
        return
    least, most, zero = limits
    if budget == 0 and not zero:
        raise _invalid("Budget 0 is invalid. This model only works in thinking mode.")
    if not (budget == 0 or least <= budget <= most):
        raise _invalid(
            f"The thinking budget {budget} is invalid. Please choose a value between"
            f" {0 if zero else least} and {most}."
        )


def _check_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        raise _invalid("Invalid value at 'tools', expected a list")
    for i, tool in enumerate(tools):
        _known(tool, _TOOL_FIELDS, f"tools[{i}]")
        for j, declaration in enumerate(_field(tool, "functionDeclarations") or ()):
            where = f"tools[{i}].function_declarations[{j}]"
            _known(declaration, _DECLARATION_FIELDS, where)
            name = _field(declaration, "name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise _invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start"
                    " with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9),"
                    " underscores (_), dots (.), colons (:), or dashes (-), with a maximum"
                    " length of 64.\n"
                )
            names.add(name)
            parameters = _field(declaration, "parameters")
            if parameters is not None and _field(declaration, "parametersJsonSchema") is not None:
                raise _invalid(
                    f"* GenerateContentRequest.{where}: parameters and parameters_json_schema"
                    " cannot both be set.\n"
                )
            if parameters is not None:
                _check_schema(parameters, f"{where}.parameters")
                kind = str(_field(parameters, "type") or "").upper()
                if kind == "OBJECT" and not _field(parameters, "properties"):
                    raise _invalid(
                        f"* GenerateContentRequest.{where}.parameters.properties: should be"
                        " non-empty for OBJECT type\n"
                    )
    return names


def _check_schema(schema: Any, where: str) -> None:
    _known(schema, _SCHEMA_FIELDS, where)
    kind = _field(schema, "type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _SCHEMA_TYPES):
        raise _invalid(
            f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage."
            f"v1beta.Type), {json.dumps(kind)}"
        )
    enum = _field(schema, "enum")
    if enum is not None and (
        not isinstance(enum, list) or not all(isinstance(e, str) for e in enum)
    ):
        raise _invalid(f"Invalid value at '{where}.enum[0]' (TYPE_STRING)")
    properties = _field(schema, "properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise _invalid(f"Invalid value at '{where}.properties'")
        for k, sub in enumerate(properties.values()):
            _check_schema(sub, f"{where}.properties[{k}].value")
    items = _field(schema, "items")
    if items is not None:
        _check_schema(items, f"{where}.items")
    for k, option in enumerate(_field(schema, "anyOf") or ()):
        _check_schema(option, f"{where}.any_of[{k}]")


def _check_tool_config(config: Any, names: set[str]) -> None:
    if config is None:
        return
    _known(config, frozenset({"functionCallingConfig", "retrievalConfig"}), "tool_config")
    calling = _field(config, "functionCallingConfig")
    if calling is None:
        return
    where = "tool_config.function_calling_config"
    _known(calling, frozenset({"mode", "allowedFunctionNames"}), where)
    mode = _field(calling, "mode")
    if mode is not None and mode not in _MODES:
        raise _invalid(
            f"Invalid value at '{where}.mode' (type.googleapis.com/google.ai.generativelanguage."
            f"v1beta.FunctionCallingConfig.Mode), {json.dumps(mode)}"
        )
    allowed = _field(calling, "allowedFunctionNames")
    if allowed:
        if mode != "ANY":
            raise _invalid(
                f"* GenerateContentRequest.{where}.allowed_function_names: only allowed when"
                " mode is ANY\n"
            )
        missing = [n for n in allowed if n not in names]
        if missing:
            raise _invalid(
                f"* GenerateContentRequest.{where}.allowed_function_names: function"
                f" {missing[0]} is not declared\n"
            )


def _embed_text(item: Any, where: str, at: str) -> str:
    _known(item, _EMBED_FIELDS, at)
    content = _field(item, "content")
    parts = _field(content, "parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _invalid(f"* {where}.content.parts: contents.parts must not be empty.\n")
    texts = [_field(p, "text") for p in parts]
    if not all(isinstance(t, str) and t for t in texts):
        raise _invalid(
            f"* {where}.content.parts[0].data: required oneof field 'data' must have one"
            " initialized field\n"
        )
    dims = _field(item, "outputDimensionality")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise _invalid(f"* {where}.output_dimensionality: must be a positive integer\n")
    return " ".join(texts)


# -- answers ---------------------------------------------------------------------------------------


def _last_user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if _field(content, "role") in (None, "", "user"):
            texts = [_field(p, "text") for p in _field(content, "parts")]
            joined = " ".join(t for t in texts if isinstance(t, str))
            if joined:
                return joined
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    turns = [*_field(body, "contents"), _field(body, "systemInstruction") or {"parts": []}]
    for content in turns:
        for part in _field(content, "parts") or ():
            text = _field(part, "text")
            if isinstance(text, str):
                chars += len(text)
            for name in ("functionCall", "functionResponse"):
                if _field(part, name) is not None:
                    chars += len(json.dumps(_field(part, name)))
    return max(1, chars // 4) + 2 * len(_field(body, "contents"))


def _usage(
    plan: _Plan, behavior: Behavior, candidates_tokens: int, thoughts: int, final: bool
) -> dict[str, Any]:
    counts = {
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "cachedContentTokenCount": 0,
        "thoughtsTokenCount": thoughts,
        "toolUsePromptTokenCount": 0,
    }
    if final and behavior.usage:
        counts.update(behavior.usage)
    total = sum(v for k, v in counts.items() if k != "cachedContentTokenCount")
    usage: dict[str, Any] = {
        "promptTokenCount": counts["promptTokenCount"],
        "candidatesTokenCount": counts["candidatesTokenCount"],
        "totalTokenCount": total,
        "cachedContentTokenCount": counts["cachedContentTokenCount"],
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": counts["promptTokenCount"]}],
        "toolUsePromptTokenCount": counts["toolUsePromptTokenCount"],
        "thoughtsTokenCount": counts["thoughtsTokenCount"],
    }
    if counts["cachedContentTokenCount"]:
        usage["cacheTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": counts["cachedContentTokenCount"]}
        ]
    return {k: v for k, v in usage.items() if v}  # proto3 JSON leaves zeros out


def _piece_tokens(piece: _Piece, size: int) -> int:
    if piece.kind == "call":
        return max(1, len(split_text(json.dumps(piece.call), size)))
    return 1


def _part(piece: _Piece, signature: bool) -> dict[str, Any]:
    if piece.kind == "thought":
        return {"text": piece.text, "thought": True}
    if piece.kind == "call":
        part: dict[str, Any] = {"functionCall": piece.call}
        if signature:  # thinking models sign their first function call
            part["thoughtSignature"] = base64.b64encode(os.urandom(24)).decode()
        return part
    return {"text": piece.text}


def _whole(plan: _Plan, behavior: Behavior, model: str, response_id: str) -> dict[str, Any]:
    if behavior.block_reason:
        return _blocked(plan, behavior, model, response_id)
    candidates = []
    completion = 0
    for index, pieces in enumerate(plan.candidates):
        answer = [p for p in pieces if p.kind != "thought"]
        completion += sum(_piece_tokens(p, behavior.chunk_chars) for p in answer)
        parts = _merged_parts(pieces, plan.thinking)
        candidate: dict[str, Any] = {}
        if parts and plan.finish_reason not in _BLOCKING_FINISHES:
            candidate["content"] = {"parts": parts, "role": "model"}
        candidate["finishReason"] = plan.finish_reason
        if plan.finish_reason in _BLOCKING_FINISHES:
            candidate["safetyRatings"] = _safety_ratings(blocked=True)
        candidate["index"] = index
        candidates.append(candidate)
    return {
        "candidates": candidates,
        "usageMetadata": _usage(plan, behavior, completion, plan.thought_tokens, True),
        "modelVersion": model,
        "responseId": response_id,
    }


def _merged_parts(pieces: list[_Piece], thinking: bool) -> list[dict[str, Any]]:
    """A whole answer joins consecutive text (and thought) pieces into one part each."""
    parts: list[dict[str, Any]] = []
    signed = False
    for piece in pieces:
        last = parts[-1] if parts else None
        same_kind = last is not None and bool(last.get("thought")) == (piece.kind == "thought")
        if piece.kind != "call" and last is not None and "text" in last and same_kind:
            last["text"] += piece.text
            continue
        parts.append(_part(piece, thinking and not signed))
        signed = signed or piece.kind == "call"
    return parts


def _blocked(plan: _Plan, behavior: Behavior, model: str, response_id: str) -> dict[str, Any]:
    usage = _usage(plan, behavior, 0, 0, True)
    return {
        "promptFeedback": {
            "blockReason": behavior.block_reason,
            "safetyRatings": _safety_ratings(blocked=True),
        },
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    }


def _safety_ratings(blocked: bool) -> list[dict[str, Any]]:
    ratings: list[dict[str, Any]] = [
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    ]
    if blocked:
        ratings[1] = {**ratings[1], "probability": "HIGH", "blocked": True}
    return ratings


def _chunks(
    plan: _Plan, behavior: Behavior, model: str, response_id: str
) -> list[tuple[dict[str, Any], bool]]:
    """Every stream chunk, each flagged whether it carries content."""
    if behavior.block_reason:
        return [(_blocked(plan, behavior, model, response_id), False)]
    # Streams interleave candidates one chunk each, like n > 1 elsewhere.
    rows = [[(index, piece) for piece in pieces] for index, pieces in enumerate(plan.candidates)]
    ordered = [item for row in itertools.zip_longest(*rows) for item in row if item is not None]
    last = {index: position for position, (index, _) in enumerate(ordered)}
    shown = any(piece.kind == "thought" for _, piece in ordered)
    out: list[tuple[dict[str, Any], bool]] = []
    completion = thoughts = 0
    signed: set[int] = set()
    for position, (index, piece) in enumerate(ordered):
        if piece.kind == "thought":
            thoughts += 1
        else:
            completion += _piece_tokens(piece, behavior.chunk_chars)
        sign = plan.thinking and piece.kind == "call" and index not in signed
        if sign:
            signed.add(index)
        candidate: dict[str, Any] = {
            "content": {"parts": [_part(piece, sign)], "role": "model"},
            "index": index,
        }
        if last[index] == position:
            candidate["finishReason"] = plan.finish_reason
        # Shown thoughts count up as they stream; hidden ones were all spent before the text.
        spent = thoughts if shown else plan.thought_tokens
        final = position == len(ordered) - 1
        chunk = {
            "candidates": [candidate],
            "usageMetadata": _usage(plan, behavior, completion, spent, final),
            "modelVersion": model,
            "responseId": response_id,
        }
        out.append((chunk, True))
    if not ordered:  # nothing to say (every token went to thoughts): the finish alone
        chunk = {
            "candidates": [{"finishReason": plan.finish_reason, "index": 0}],
            "usageMetadata": _usage(plan, behavior, 0, plan.thought_tokens, True),
            "modelVersion": model,
            "responseId": response_id,
        }
        out.append((chunk, False))
    return out


def _sse(chunk: dict[str, Any]) -> bytes:
    # Google's SSE payloads put a space after colons and none after commas; lines end in CRLF.
    data = json.dumps(chunk, separators=(",", ": "), ensure_ascii=False)
    return b"data: " + data.encode() + _EOL


def _vector(text: str, item: Any, behavior: Behavior) -> list[float]:
    full = embedding(text.encode(), behavior.dimensions)
    dims = _field(item, "outputDimensionality") or behavior.dimensions
    dims = min(dims, behavior.dimensions)
    return list(struct.unpack(f"<{dims}f", full[: dims * 4]))


# -- responses -------------------------------------------------------------------------------------


def _json_response(payload: Any) -> web.Response:
    body = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    return web.Response(
        body=body.encode(),
        status=200,
        headers={"Content-Type": _JSON_TYPE, "Server": "scaffolding on HTTPServer2"},
    )


def _error_response(err: _ApiError) -> web.Response:
    error: dict[str, Any] = {
        "code": err.status,
        "message": err.message,
        "status": STATUS_NAMES.get(err.status, "UNKNOWN"),
    }
    if err.details:
        error["details"] = err.details
    body = json.dumps({"error": error}, indent=2, ensure_ascii=False) + "\n"
    return web.Response(body=body.encode(), status=err.status, headers={"Content-Type": _JSON_TYPE})


def _scripted_error(behavior: Behavior, model: str) -> _ApiError:
    status = behavior.status or 500
    message = behavior.error_message or _DEFAULT_MESSAGES.get(status, f"Error {status}.")
    details = None
    if behavior.retry_delay is not None:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{behavior.retry_delay:g}s",
            }
        ]
    return _ApiError(status, message.replace("{model}", model), details)
