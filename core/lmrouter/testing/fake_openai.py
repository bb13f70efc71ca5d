"""A fake OpenAI upstream that speaks the real wire format, for tests and benchmarks.

Point the router (or any OpenAI client) at it instead of ``https://api.openai.com/v1``::

    from lmrouter.testing.fake_openai import Behavior, FakeOpenAI

    fake = FakeOpenAI(api_key="sk-test")
    fake.script("gpt-x", Behavior(text="Hi there", chunk_delay=0.01))
    with fake.run_in_thread() as base_url:  # "http://127.0.0.1:PORT/v1"
        ...
    assert fake.requests[0].json["model"] == "gpt-x"

or, inside a running event loop, ``base_url = await fake.start()`` … ``await fake.stop()``.

What it reproduces from the real API, because a router must be built for the real protocol and
not for a fake's conveniences:

* ``POST /v1/chat/completions``: OpenAI's request validation (``param``/``code`` in 400s,
  including "``stream_options`` only with ``stream``"), the full ``chat.completion`` object
  (``system_fingerprint``, ``service_tier``, ``refusal``, ``annotations``, ``logprobs``, usage
  with both details objects), streams of ``data: {json}`` events without ``event:`` lines, the
  first delta carrying ``role``/``content: ""``/``refusal: null``, tool calls that stream
  ``{index, id, type, function: {name, arguments: ""}}`` then argument fragments, an empty last
  delta with ``finish_reason``, ``n > 1`` choices interleaved, ``"usage": null`` on every chunk
  plus a ``choices: []`` usage chunk when ``stream_options.include_usage`` is set, the
  ``obfuscation`` padding field on every chunk (omitted when
  ``stream_options.include_obfuscation`` is false), ``max_completion_tokens``/``max_tokens``
  truncation with ``finish_reason: "length"``, and ``data: [DONE]``. By model name, what the
  real models refuse: ``reasoning_effort`` on GPT-4o/4.1/3.5, an output limit above theirs.
* Non-stream bodies are pretty-printed like the real API's (2-space indent; error bodies 4-space),
  so nothing downstream may assume compact JSON.
* ``POST /v1/responses``: the Responses API with built-in and ``namespace`` tools (see
  :mod:`lmrouter.testing.fake_responses`).
* ``POST /v1/embeddings`` (string, strings, token arrays; ``dimensions``; ``encoding_format``
  ``float`` or ``base64`` little-endian float32, which the official SDK asks for by default),
  ``GET /v1/models`` and ``GET /v1/models/{id}``.
* OpenAI error bodies ``{"error": {"message", "type", "param", "code"}}`` for a bad key (401),
  unknown paths (404), malformed JSON (400) and scripted failures, with ``retry-after``;
  ``x-request-id``, ``openai-processing-ms`` and ``x-ratelimit-*`` headers on every answer.

Failure scripting (:class:`Behavior`): delays before the headers and between chunks, a dropped
connection after N content deltas, vendor variants (usage on the last choice chunk, no
``[DONE]``, CRLF line ends). Streaming clients that go away are recorded in
:attr:`FakeOpenAI.disconnects` so tests can assert that the router closed its upstream promptly.

Standalone for benchmarks (``record`` off, nothing logged per request)::

    python -m lmrouter.testing.fake_openai --port 9000 --workers 2 --chunk-delay 0.005
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import multiprocessing
import os
import re
import signal
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from lmrouter.testing import fake_responses
from lmrouter.testing.fakeserver import (
    ALNUM,
    Disconnect,
    Event,
    FakeServer,
    Recorded,
    ToolCall,
    bind,
    close_connection,
    content_index,
    content_text,
    embedding,
    retry_after,
    sample_arguments,
    sample_json,
    split_text,
)

__all__ = ["Behavior", "Disconnect", "FakeOpenAI", "Recorded", "ToolCall", "main"]

SYSTEM_FINGERPRINT = "fp_5c3e7a1f90"
"""The constant ``system_fingerprint`` of every answer (real ones look like ``fp_`` + 10 hex)."""

_MODEL_CREATED = 1_698_959_748
_OBFUSCATION_POOL = (ALNUM * 3)[7:].encode()
_FINGERPRINT_BYTES = SYSTEM_FINGERPRINT.encode()
_ROLE_DELTA = b'{"role":"assistant","content":"","refusal":null}'
_NO_FINISH = b',"logprobs":null,"finish_reason":null}'
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ECHOED_TIERS = frozenset({"flex", "priority", "scale"})
_NO_CONTENT_OK = frozenset({"assistant", "function"})
_MAX_EMBEDDING_DIMS = 65_536

_STATIC_HEADERS: dict[str, str] = {
    "openai-version": "2020-10-01",
    "openai-organization": "user-fake0openai",
    "openai-project": "proj_fake0openai",
    "x-ratelimit-limit-requests": "30000",
    "x-ratelimit-limit-tokens": "150000000",
    "x-ratelimit-remaining-requests": "29999",
    "x-ratelimit-remaining-tokens": "149999985",
    "x-ratelimit-reset-requests": "2ms",
    "x-ratelimit-reset-tokens": "0s",
}
_JSON_TYPE = "application/json"
_SSE_TYPE = "text/event-stream; charset=utf-8"

_PARSE_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using"
    " your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was"
    " not valid JSON. If you have trouble figuring out how to fix this, please contact us through"
    " our help center at help.openai.com.)"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header"
    " using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with"
    " blank username) if you're accessing the API from your browser and are prompted for a"
    " username and password. You can obtain an API key from"
    " https://platform.openai.com/account/api-keys."
)
_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    # status: (message, type, code) — what the real API sends for these statuses.
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: (
        "You are not allowed to sample from this model",
        "invalid_request_error",
        None,
    ),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "server_error", None),
    409: ("Conflict.", "invalid_request_error", None),
    429: (
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM):"
        " Limit 3, Used 3, Requested 1. Please try again in 20s. Visit"
        " https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


@dataclass(slots=True)
class Behavior:
    """How the fake answers requests for one model (see :meth:`FakeOpenAI.script`).

    Everything is optional; ``Behavior()`` answers like a healthy, fast OpenAI model.
    """

    text: str | None = None
    """The assistant reply. ``None``: ``"Hello! You said: "`` + the first 40 characters of the
    last user message. With ``n > 1``, choice ``i > 0`` gets ``" (choice i)"`` appended."""
    tool_call: bool = True
    """Answer a request that has ``tools`` (and ``tool_choice`` other than ``"none"``) with one
    call to the named tool or else the first one, arguments built from its JSON schema, unless
    the last message is a ``tool`` result (then answer with text, so a round trip ends)."""
    call: ToolCall | None = None
    """The tool call to make instead, when the request offers that tool (Chat Completions and
    Responses alike)."""
    status: int | None = None
    """Answer with this HTTP status and an OpenAI error body instead of a completion."""
    error_message: str | None = None
    """The error's ``message`` (default: what OpenAI says for that status)."""
    error_type: str | None = None
    """The error's ``type`` (default per status: ``invalid_request_error``, ``requests`` for 429,
    ``server_error`` for 5xx)."""
    error_code: str | None = None
    """The error's ``code`` (default per status, e.g. ``rate_limit_exceeded`` for 429)."""
    error_param: str | None = None
    """The error's ``param``."""
    retry_after: float | None = None
    """Send a ``retry-after`` header (seconds) with the error."""
    first_byte_delay: float = 0.0
    """Seconds to wait before sending the status line and headers."""
    chunk_delay: float = 0.0
    """Seconds between stream chunks. ``0`` sends the whole stream in one write."""
    chunk_chars: int = 4
    """Characters of text (or of tool-call arguments) per content delta; ``<= 0``: one delta."""
    drop_after_chunks: int | None = None
    """Stream: close the connection right after that many content deltas (no finish chunk, no
    ``[DONE]``, no chunked-encoding terminator). Non-stream: close without any response."""
    usage: dict[str, int] | None = None
    """Override usage numbers: ``prompt_tokens``, ``completion_tokens``, ``cached_tokens``,
    ``reasoning_tokens``. Unset ones are computed: prompt = characters of the messages' text // 4
    + 4 per message; completion = number of content deltas (same in stream and non-stream)."""
    usage_in_last_choice_chunk: bool = False
    """Vendor variant (vLLM, Groq …): usage rides on the last choice chunk, whether or not
    ``include_usage`` was asked for, and there is no separate ``choices: []`` chunk."""
    omit_done: bool = False
    """End the stream after the last chunk without ``data: [DONE]``."""
    end_delay: float = 0.0
    """Seconds between the last event (``[DONE]``) and the end of the body."""
    crlf: bool = False
    """End SSE lines with ``\\r\\n`` instead of ``\\n``."""
    finish_reason: str | None = None
    """Override the ``finish_reason`` (default ``stop``, ``tool_calls`` or ``length``)."""


class _ApiError(Exception):
    """Answer with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers


@dataclass(slots=True)
class _Choice:
    index: int
    pieces: list[str]
    """Text pieces, or argument fragments when ``tool_name`` is set."""
    finish_reason: str
    tool_name: str | None = None
    tool_id: str = ""


@dataclass(slots=True)
class _ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    include_obfuscation: bool
    n: int
    limit: int | None
    tool: dict[str, Any] | None
    service_tier: str
    response_format: dict[str, Any] | None = None
    tool_names: frozenset[str] = frozenset()


class FakeOpenAI(FakeServer[Behavior]):
    """An OpenAI-compatible HTTP server on loopback with scriptable behaviour per model.

    ``api_key=None`` accepts any key or none; otherwise requests without exactly
    ``Authorization: Bearer <api_key>`` get OpenAI's 401. ``record=False`` (the standalone
    benchmark mode) keeps :attr:`requests` empty so memory stays flat under load;
    ``reuse_port`` lets several worker processes serve one port. :attr:`base_url` is
    ``http://HOST:PORT/v1`` once started, as OpenAI clients expect it.
    """

    _behavior_type = Behavior
    _base_path = "/v1"
    _thread_name = "fake-openai"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(api_key, host=host, port=port)
        self.record = record
        # Responses kept as OpenAI keeps them (``store`` true by default): id → (the key that
        # made it, the response object, its input items); another key finds nothing.
        self.stored: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = {}
        self.reuse_port = reuse_port
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[web.StreamResponse]]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/responses"): self._responses,
            ("GET", "/v1/models"): self._models,
        }

    # -- request handling ---------------------------------------------------------------------

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        try:
            route = self._routes.get((request.method, request.path))
            if route is None:
                if request.method == "GET" and request.path.startswith("/v1/models/"):
                    route = self._model
                elif request.method in ("GET", "DELETE") and request.path.startswith(
                    "/v1/responses/"
                ):
                    route = self._stored
                else:
                    raise _ApiError(404, f"Invalid URL ({request.method} {request.path})")
            if self.api_key is not None:
                self._authenticate(request)
            if bad_json or (request.method == "POST" and not isinstance(parsed, dict)):
                raise _ApiError(400, _PARSE_ERROR)
            return await route(request, parsed, at)
        except _ApiError as err:
            return _error_response(err, at)

    def _authenticate(self, request: web.BaseRequest) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(401, _NO_KEY)
        if token != self.api_key:
            shown = token if len(token) <= 8 else f"{token[:3]}{'*' * 8}{token[-4:]}"
            raise _ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at"
                " https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    async def _chat(
        self, request: web.BaseRequest, body: dict[str, Any], at: float
    ) -> web.StreamResponse:
        req = _validate_chat(body)
        _check_model_limits(req.model, body)
        behavior = self._behavior(req.model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, req.model, req.stream)
        if behavior.status is not None:
            raise _scripted_error(behavior, req.model)
        if behavior.drop_after_chunks is not None and not req.stream:
            close_connection(request)
            return web.Response()
        choices = self._plan(req, behavior)
        prompt_tokens = _prompt_tokens(req.messages)
        usage = _usage(behavior, prompt_tokens, sum(len(c.pieces) for c in choices))
        cid = self._next_id("chatcmpl-", 29)
        created = int(time.time())
        if req.stream:
            return await self._stream(request, req, behavior, choices, usage, cid, created, at)
        out_choices = []
        for choice in choices:
            joined = "".join(choice.pieces)
            message: dict[str, Any]
            if choice.tool_name is None:
                message = {"role": "assistant", "content": joined}
            else:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": choice.tool_id,
                            "type": "function",
                            "function": {"name": choice.tool_name, "arguments": joined},
                        }
                    ],
                }
            message["refusal"] = None
            message["annotations"] = []
            out_choices.append(
                {
                    "index": choice.index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
            )
        completion = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": out_choices,
            "usage": usage,
            "service_tier": req.service_tier,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        return _json_response(completion, at)

    def _plan(self, req: _ChatRequest, behavior: Behavior) -> list[_Choice]:
        """Decide every choice's pieces once, so stream and non-stream agree exactly."""
        size = behavior.chunk_chars
        tool = req.tool if behavior.tool_call else None
        if tool is not None and req.messages[-1].get("role") == "tool":
            tool = None
        text = ""
        tool_name = ""
        tool_pieces: list[str] = []
        if tool is not None:
            function = tool["function"]
            tool_name = function["name"]
            arguments = orjson.dumps(sample_arguments(function.get("parameters"))).decode()
            if behavior.call is not None and behavior.call.name in req.tool_names:
                tool_name = behavior.call.name
                arguments = orjson.dumps(behavior.call.arguments).decode()
            tool_pieces = split_text(arguments, size)
        else:
            text = behavior.text or ""
            if behavior.text is None:
                text = "Hello! You said: " + _last_user_text(req.messages)[:40]
                if req.response_format is not None:
                    text = _structured_text(req.response_format, text)
        choices = []
        for i in range(req.n):
            if tool is not None:
                pieces = list(tool_pieces)
            else:
                pieces = split_text(text if i == 0 else f"{text} (choice {i})", size)
            finish = "stop" if tool is None else "tool_calls"
            if req.limit is not None and len(pieces) > req.limit:
                del pieces[req.limit :]
                finish = "length"
            if behavior.finish_reason is not None:
                finish = behavior.finish_reason
            choice = _Choice(i, pieces, finish)
            if tool is not None:
                choice.tool_name = tool_name
                choice.tool_id = self._next_id("call_", 24)
            choices.append(choice)
        return choices

    async def _stream(
        self,
        request: web.BaseRequest,
        req: _ChatRequest,
        behavior: Behavior,
        choices: list[_Choice],
        usage: dict[str, Any],
        cid: str,
        created: int,
        at: float,
    ) -> web.StreamResponse:
        events = _stream_events(req, behavior, choices, usage, cid, created)
        headers = _headers(at)
        headers["Content-Type"] = _SSE_TYPE
        headers["Cache-Control"] = "no-cache, must-revalidate"
        response = web.StreamResponse(status=200, headers=headers)
        drop, delay = behavior.drop_after_chunks, behavior.chunk_delay
        cut = False
        if drop is not None:
            # Paced, the connection drops right after delta `drop`; written at once, just before
            # delta `drop + 1`. The two differ only in the non-content chunks between (with
            # `drop` = all deltas: the finish chunk, usage and [DONE] are sent at once, not paced).
            if delay > 0 and drop > 0:
                position = content_index(events, drop - 1)
                position = None if position is None else position + 1
            else:
                position = content_index(events, drop)
            if position is not None:
                events, cut = events[:position], True
        return await self._write_stream(
            request,
            response,
            events,
            model=req.model,
            delay=delay,
            cut=cut,
            linger=behavior.end_delay,
        )

    async def _responses(
        self, request: web.BaseRequest, body: dict[str, Any], at: float
    ) -> web.StreamResponse:
        """``POST /v1/responses`` (see :mod:`lmrouter.testing.fake_responses`)."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _missing("model")
        behavior = self._behavior(model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, model, body.get("stream") is True)
        if behavior.status is not None:
            raise _scripted_error(behavior, model)
        rid = self._next_id("resp_", 50)
        key = request.headers.get("Authorization", "").partition(" ")[2].strip()
        previous = body.get("previous_response_id")
        if previous is not None and self.stored.get(previous, ("",))[0] != key:
            raise _ApiError(
                400,
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
            )
        try:
            item, pieces = fake_responses.answer(
                body,
                rid,
                self._next_id("msg_" if not body.get("tools") else "fc_", 50),
                self._next_id("call_", 24),
                behavior.chunk_chars,
                text=behavior.text,
                tool_call=behavior.tool_call,
                call=behavior.call,
            )
        except fake_responses.RequestError as err:
            raise _ApiError(400, err.message, param=err.param) from None
        cached = (behavior.usage or {}).get("cached_tokens", 0)
        usage = fake_responses.usage(body, len(pieces), cached)
        final = fake_responses.response_object(body, rid, [item], usage)
        if body.get("store") is not False:
            final["previous_response_id"] = previous
            self.stored[rid] = (key, final, fake_responses.input_items(body, self._next_id))
        if body.get("stream") is not True:
            return _json_response(final, at)
        events = fake_responses.stream_events(body, rid, item, pieces, final)
        headers = _headers(at)
        headers["Content-Type"] = _SSE_TYPE
        response = web.StreamResponse(status=200, headers=headers)
        cut = False
        if behavior.drop_after_chunks is not None:
            position = content_index(events, behavior.drop_after_chunks)
            if position is not None:
                events, cut = events[:position], True
        return await self._write_stream(
            request, response, events, model=model, delay=behavior.chunk_delay, cut=cut
        )

    async def _stored(self, request: web.BaseRequest, body: Any, at: float) -> web.StreamResponse:
        """``GET``/``DELETE /v1/responses/{id}`` and ``GET …/input_items``, for the key that
        made the response."""
        rest = request.path.removeprefix("/v1/responses/")
        rid, _, tail = rest.partition("/")
        key = request.headers.get("Authorization", "").partition(" ")[2].strip()
        kept = self.stored.get(rid)
        if kept is None or kept[0] != key or tail not in ("", "input_items"):
            raise _ApiError(404, f"Response with id '{rid}' not found.")
        if request.method == "DELETE" and not tail:
            del self.stored[rid]
            return _json_response({"id": rid, "object": "response", "deleted": True}, at)
        if request.method != "GET":
            raise _ApiError(404, f"Invalid URL ({request.method} {request.path})")
        if not tail:
            return _json_response(kept[1], at)
        items = kept[2] if request.query.get("order") == "asc" else kept[2][::-1]
        page = {
            "object": "list",
            "data": items,
            "has_more": False,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
        }
        return _json_response(page, at)

    async def _embeddings(
        self, request: web.BaseRequest, body: dict[str, Any], at: float
    ) -> web.StreamResponse:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _missing("model")
        if "input" not in body or body["input"] is None:
            raise _missing("input")
        inputs = _embedding_inputs(body["input"])
        encoding = body.get("encoding_format")
        if encoding is None:
            encoding = "float"
        if encoding not in ("float", "base64"):
            raise _ApiError(
                400,
                f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        dims = body.get("dimensions")
        if dims is None:
            dims = 8
        elif not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise _ApiError(
                400,
                f"Invalid 'dimensions': expected an integer >= 1, but got {dims!r} instead.",
                param="dimensions",
                code="invalid_value",
            )
        elif dims > _MAX_EMBEDDING_DIMS:
            raise _ApiError(
                400,
                f"This model does not support specifying dimensions greater than"
                f" {_MAX_EMBEDDING_DIMS}.",
                param="dimensions",
            )
        behavior = self._behavior(model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, model, False)
        if behavior.status is not None:
            raise _scripted_error(behavior, model)
        if behavior.drop_after_chunks is not None:
            close_connection(request)
            return web.Response()
        data = []
        tokens = 0
        for index, (key, count) in enumerate(inputs):
            packed = embedding(key, dims)
            vector: Any
            if encoding == "base64":
                vector = base64.b64encode(packed).decode("ascii")
            else:
                vector = list(struct.unpack(f"<{dims}f", packed))
            data.append({"object": "embedding", "index": index, "embedding": vector})
            tokens += count
        if behavior.usage is not None:
            tokens = behavior.usage.get("prompt_tokens", tokens)
        result = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json_response(result, at)

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "openai"}

    async def _models(self, request: web.BaseRequest, body: Any, at: float) -> web.StreamResponse:
        data = [self._model_object(model) for model in self._scripts]
        return _json_response({"object": "list", "data": data}, at)

    async def _model(self, request: web.BaseRequest, body: Any, at: float) -> web.StreamResponse:
        model = request.path[len("/v1/models/") :]
        if model not in self._scripts:
            raise _ApiError(
                404,
                f"The model '{model}' does not exist",
                param="model",
                code="model_not_found",
            )
        return _json_response(self._model_object(model), at)

    def _next_id(self, prefix: str, length: int) -> str:
        number = next(self._ids)
        digits = []
        while number:
            number, rest = divmod(number, 62)
            digits.append(ALNUM[rest])
        tail = "".join(reversed(digits))
        return prefix + (self._id_prefix + tail.rjust(9, "0"))[-length:]


# -- chat helpers ----------------------------------------------------------------------------------


def _missing(param: str) -> _ApiError:
    return _ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid_type(param: str, expected: str, value: Any) -> _ApiError:
    return _ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid_type(name, "an integer", value)
    if value < 1:
        raise _ApiError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got"
            f" {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise _ApiError(
            400,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, but"
            f" got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def _validate_chat(body: dict[str, Any]) -> _ChatRequest:
    """Reject what OpenAI rejects, with its messages, ``param`` and ``code``."""
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array of objects", messages)
    if not messages:
        raise _ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an"
            " empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role is None:
            raise _missing(f"messages[{i}].role")
        if role not in _ROLES:
            raise _ApiError(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user',"
                " 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        if "content" not in message and role not in _NO_CONTENT_OK:
            raise _missing(f"messages[{i}].content")
        if role == "tool" and "tool_call_id" not in message:
            raise _missing(f"messages[{i}].tool_call_id")
        if role == "user" and isinstance(message.get("content"), list):
            for j, part in enumerate(message["content"]):
                _check_user_part(part, f"messages[{i}].content[{j}]")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if stream is not True:
            raise _ApiError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if not isinstance(stream_options, dict):
            raise _invalid_type("stream_options", "an object", stream_options)
    else:
        stream_options = {}
    n = _positive_int(body, "n", maximum=128) or 1
    limit = _positive_int(body, "max_completion_tokens")
    if limit is None:
        limit = _positive_int(body, "max_tokens")
    tool = _chosen_tool(body)
    response_format = _check_response_format(body.get("response_format"), messages)
    tier = body.get("service_tier")
    return _ChatRequest(
        model=model,
        messages=messages,
        stream=stream is True,
        include_usage=stream_options.get("include_usage") is True,
        include_obfuscation=stream_options.get("include_obfuscation") is not False,
        n=n,
        limit=limit,
        tool=tool,
        service_tier=tier if tier in _ECHOED_TIERS else "default",
        response_format=response_format,
        tool_names=frozenset(
            t["function"]["name"] for t in body.get("tools") or () if t.get("type") == "function"
        ),
    )


# What the real models refuse, by name: reasoning settings on non-reasoning models, and an
# output limit above the model's own.
_NO_REASONING = re.compile(r"^(?:gpt-4o|gpt-4\.1|gpt-3\.5)")
_OUTPUT_LIMITS = (("gpt-4o", 16384), ("gpt-4.1", 32768), ("gpt-3.5", 4096))


_USER_PARTS = ("text", "image_url", "input_audio", "file")


def _check_user_part(part: Any, where: str) -> None:
    """User content parts as OpenAI's reference has them: ``input_audio`` ``{data, format:
    wav|mp3}``; ``file`` ``{file_data (a data URL) | file_id, filename}``."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in _USER_PARTS:
        raise _ApiError(
            400,
            f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
            "'input_audio', 'refusal', 'audio', and 'file'.",
            param=f"{where}.type",
            code="invalid_value",
        )
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise _missing(f"{where}.input_audio.data")
        if audio.get("format") not in ("wav", "mp3"):
            raise _ApiError(
                400,
                f"Invalid value: '{audio.get('format')}'. Supported values are: 'wav' and 'mp3'.",
                param=f"{where}.input_audio.format",
                code="invalid_value",
            )
    elif kind == "file":
        spec = part.get("file")
        if not isinstance(spec, dict) or not (spec.get("file_data") or spec.get("file_id")):
            raise _ApiError(
                400,
                "Missing required parameter: one of 'file_data' or 'file_id'.",
                param=f"{where}.file",
                code="missing_required_parameter",
            )
        data = spec.get("file_data")
        if data is not None and not str(data).startswith("data:"):
            raise _ApiError(
                400,
                "Invalid 'file_data': expected a data URL (data:<mime type>;base64,<data>).",
                param=f"{where}.file.file_data",
                code="invalid_value",
            )


def _check_model_limits(model: str, body: dict[str, Any]) -> None:
    if body.get("reasoning_effort") is not None and _NO_REASONING.match(model):
        raise _ApiError(
            400,
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            param="reasoning_effort",
            code="unsupported_parameter",
        )
    limit = next((n for prefix, n in _OUTPUT_LIMITS if model.startswith(prefix)), None)
    for name in ("max_completion_tokens", "max_tokens"):
        asked = body.get(name)
        if limit is not None and isinstance(asked, int) and asked > limit:
            raise _ApiError(
                400,
                f"max_tokens is too large: {asked}. This model supports at most {limit}"
                f" completion tokens, whereas you provided {asked}.",
                param=name,
                code="invalid_value",
            )


_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _check_response_format(fmt: Any, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``response_format`` as OpenAI checks it; ``None`` for plain text."""
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _invalid_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _ApiError(
            400,
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and"
            " 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind == "text":
        return None
    if kind == "json_object":
        if not any("json" in json.dumps(m.get("content")).lower() for m in messages):
            raise _ApiError(
                400,
                "'messages' must contain the word 'json' in some form, to use 'response_format'"
                " of type 'json_object'.",
                param="messages",
            )
        return fmt
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise _missing("response_format.json_schema")
    name = spec.get("name")
    if name is None:
        raise _missing("response_format.json_schema.name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise _ApiError(
            400,
            "Invalid 'response_format.json_schema.name': string does not match pattern. Expected"
            " a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise _invalid_type("response_format.json_schema.schema", "an object", schema)
    if spec.get("strict") is True:
        problem = _strict_problem(schema or {}, ())
        if problem:
            raise _ApiError(
                400,
                f"Invalid schema for response_format '{name}': {problem}",
                param="response_format",
                code="invalid_json_schema",
            )
    return fmt


def _strict_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """What strict mode refuses in a schema: objects must set ``additionalProperties: false``
    and require every property (OpenAI's own wording)."""
    if not isinstance(schema, dict):
        return None
    where = f"In context=({', '.join(repr(c) for c in context)}{',' if len(context) == 1 else ''})"
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties") or {}
        missing = [name for name in properties if name not in (schema.get("required") or ())]
        if missing:
            return (
                f"{where}, 'required' is required to be supplied and to be an array including"
                f" every key in properties. Missing '{missing[0]}'."
            )
        for name, sub in properties.items():
            problem = _strict_problem(sub, (*context, "properties", name))
            if problem:
                return problem
    subs = [schema.get("items"), *(schema.get("anyOf") or ())]
    subs += list((schema.get("$defs") or {}).values())
    for sub in subs:
        problem = _strict_problem(sub, context)
        if problem:
            return problem
    return None


def _structured_text(fmt: dict[str, Any], text: str) -> str:
    """A structured answer: a value that fits the schema, or for ``json_object`` the default
    text in a JSON object."""
    if fmt["type"] == "json_schema":
        return sample_json(fmt["json_schema"].get("schema") or {})
    return orjson.dumps({"text": text}).decode()


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function tool the model would call, or ``None`` for a text answer."""
    tools = body.get("tools")
    tool_choice = body.get("tool_choice")
    if not tools:
        if tool_choice is not None:
            raise _ApiError(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are"
                " specified.",
                param="tool_choice",
            )
        return None
    if not isinstance(tools, list):
        raise _invalid_type("tools", "an array of objects", tools)
    functions = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid_type(f"tools[{i}]", "an object", tool)
        if tool.get("type", "function") != "function":
            continue
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _missing(f"tools[{i}].function")
        if not isinstance(function.get("name"), str):
            raise _missing(f"tools[{i}].function.name")
        functions.append(tool)
    if tool_choice == "none" or not functions:
        return None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if name is not None:
            for tool in functions:
                if tool["function"]["name"] == name:
                    return tool
            raise _ApiError(
                400,
                f"Invalid value for 'tool_choice': function '{name}' is not in 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
    return functions[0]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    chars = 0
    for message in messages:
        chars += len(content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                chars += len(str(function.get("name", ""))) + len(
                    str(function.get("arguments", ""))
                )
    return chars // 4 + 4 * len(messages)


def _usage(behavior: Behavior, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    cached = reasoning = 0
    override = behavior.usage
    if override:
        prompt_tokens = override.get("prompt_tokens", prompt_tokens)
        completion_tokens = override.get("completion_tokens", completion_tokens)
        cached = override.get("cached_tokens", 0)
        reasoning = override.get("reasoning_tokens", 0)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _obfuscation(ordinal: int, payload_len: int) -> bytes:
    """Deterministic padding of 1 to 12 characters, like the real ``obfuscation`` field."""
    start = (ordinal * 7) % 62
    return _OBFUSCATION_POOL[start : start + 1 + (ordinal * 5 + payload_len) % 12]


def _stream_events(
    req: _ChatRequest,
    behavior: Behavior,
    choices: list[_Choice],
    usage: dict[str, Any],
    cid: str,
    created: int,
) -> list[Event]:
    """Every SSE event of the stream, encoded, each flagged whether it is a content delta.

    Built from byte templates rather than by serialising a dict per chunk: this is the
    benchmark's hot path.
    """
    eol = b"\r\n\r\n" if behavior.crlf else b"\n\n"
    head = b"".join(
        (
            b'data: {"id":"',
            cid.encode(),
            b'","object":"chat.completion.chunk","created":',
            str(created).encode(),
            b',"model":',
            orjson.dumps(req.model),
            b',"service_tier":"',
            req.service_tier.encode(),
            b'","system_fingerprint":"',
            _FINGERPRINT_BYTES,
            b'","choices":[',
        )
    )
    per_choice: list[list[tuple[bytes, bool]]] = []
    for choice in choices:
        i = str(choice.index).encode()
        seq: list[tuple[bytes, bool]] = []
        if choice.tool_name is None:
            seq.append((b'{"index":%b,"delta":%b%b' % (i, _ROLE_DELTA, _NO_FINISH), False))
            opening = b'{"index":%b,"delta":{"content":' % i
            seq.extend(
                (b"%b%b}%b" % (opening, orjson.dumps(piece), _NO_FINISH), True)
                for piece in choice.pieces
            )
        else:
            call = {
                "index": 0,
                "id": choice.tool_id,
                "type": "function",
                "function": {"name": choice.tool_name, "arguments": ""},
            }
            delta = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
            seq.append((b'{"index":%b,"delta":%b%b' % (i, orjson.dumps(delta), _NO_FINISH), False))
            opening = b'{"index":%b,"delta":{"tool_calls":[{"index":0,"function":{"arguments":' % i
            seq.extend(
                (b"%b%b}}]}%b" % (opening, orjson.dumps(piece), _NO_FINISH), True)
                for piece in choice.pieces
            )
        finish = orjson.dumps(choice.finish_reason)
        seq.append(
            (b'{"index":%b,"delta":{},"logprobs":null,"finish_reason":%b}' % (i, finish), False)
        )
        per_choice.append(seq)
    if len(per_choice) == 1:
        ordered = per_choice[0]
    else:  # n > 1: one choice per chunk, interleaved by index
        ordered = [
            item for row in itertools.zip_longest(*per_choice) for item in row if item is not None
        ]
    usage_null = b',"usage":null' if req.include_usage else b""
    obfuscate = req.include_obfuscation
    events: list[tuple[bytes, bool]] = []
    last = len(ordered) - 1
    for ordinal, (payload, is_content) in enumerate(ordered):
        tail = usage_null
        if ordinal == last and behavior.usage_in_last_choice_chunk:
            tail = b',"usage":' + orjson.dumps(usage)
        events.append((_event(head, payload, tail, ordinal, obfuscate, eol), is_content))
    if req.include_usage and not behavior.usage_in_last_choice_chunk:
        tail = b',"usage":' + orjson.dumps(usage)
        events.append((_event(head, b"", tail, len(ordered), obfuscate, eol), False))
    if not behavior.omit_done:
        events.append((b"data: [DONE]" + eol, False))
    return events


def _event(
    head: bytes, payload: bytes, tail: bytes, ordinal: int, obfuscate: bool, eol: bytes
) -> bytes:
    if obfuscate:
        padding = _obfuscation(ordinal, len(payload))
        return b'%b%b]%b,"obfuscation":"%b"}%b' % (head, payload, tail, padding, eol)
    return b"%b%b]%b}%b" % (head, payload, tail, eol)


# -- embeddings ------------------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[tuple[bytes, int]]:
    """(hash key, prompt tokens) per input: a string, strings, a token array or token arrays."""
    one_token_array = isinstance(value, list) and value and all(_is_token(v) for v in value)
    if isinstance(value, str) or one_token_array:
        value = [value]
    if not isinstance(value, list):
        raise _invalid_type("input", "a string or an array", value)
    if not value:
        raise _ApiError(
            400,
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an"
            " empty array instead.",
            param="input",
            code="empty_array",
        )
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise _ApiError(
                    400,
                    f"Invalid 'input[{i}]': empty string. Expected a non-empty string.",
                    param="input",
                    code="invalid_value",
                )
            out.append((item.encode(), max(1, (len(item) + 3) // 4)))
        elif isinstance(item, list) and item and all(_is_token(v) for v in item):
            out.append((b"tokens:" + ",".join(map(str, item)).encode(), len(item)))
        else:
            raise _invalid_type(f"input[{i}]", "a string or an array of integers", item)
    return out


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- responses -------------------------------------------------------------------------------------


def _headers(at: float) -> dict[str, str]:
    headers = dict(_STATIC_HEADERS)
    headers["x-request-id"] = "req_" + os.urandom(16).hex()
    headers["openai-processing-ms"] = str(int((time.monotonic() - at) * 1000))
    return headers


def _json_response(payload: dict[str, Any], at: float) -> web.Response:
    headers = _headers(at)
    headers["Content-Type"] = _JSON_TYPE
    body = orjson.dumps(payload, option=orjson.OPT_INDENT_2)
    return web.Response(body=body, status=200, headers=headers)


def _error_response(err: _ApiError, at: float) -> web.Response:
    headers = _headers(at)
    headers["Content-Type"] = _JSON_TYPE
    if err.headers:
        headers.update(err.headers)
    error = {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    body = json.dumps({"error": error}, indent=4, ensure_ascii=False) + "\n"
    return web.Response(body=body.encode(), status=err.status, headers=headers)


def _scripted_error(behavior: Behavior, model: str) -> _ApiError:
    status = behavior.status or 500
    fallback = _DEFAULT_ERRORS.get(status)
    if fallback is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        fallback = (f"Error {status}.", kind, None)
    message = behavior.error_message or fallback[0].replace("{model}", model)
    return _ApiError(
        status,
        message,
        type=behavior.error_type or fallback[1],
        param=behavior.error_param,
        code=behavior.error_code if behavior.error_code is not None else fallback[2],
        headers=retry_after(behavior.retry_after),
    )


# -- standalone ------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lmrouter.testing.fake_openai",
        description="A fake OpenAI API (chat completions, embeddings, models) for benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)"
    )
    parser.add_argument("--first-byte-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--chunk-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--chunk-chars", type=int, default=4, metavar="N")
    parser.add_argument("--text", default=None, help="the reply (default: echoes the prompt)")
    parser.add_argument("--api-key", default=None, help="require this Bearer key")
    return parser.parse_args(argv)


def _behavior_from(args: argparse.Namespace) -> Behavior:
    return Behavior(
        text=args.text,
        first_byte_delay=args.first_byte_delay,
        chunk_delay=args.chunk_delay,
        chunk_chars=args.chunk_chars,
    )


async def _serve(
    args: argparse.Namespace,
    port: int,
    reuse_port: bool,
    on_ready: Callable[[FakeOpenAI], None],
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    fake = FakeOpenAI(
        api_key=args.api_key, host=args.host, port=port, record=False, reuse_port=reuse_port
    )
    fake.default = _behavior_from(args)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)
    await fake.start()
    try:
        on_ready(fake)
        await done.wait()
    finally:
        await fake.stop()


def _run(coro: Any) -> None:
    try:
        import uvloop  # optional: a faster loop for the standalone server
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _announce(host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"fake-openai listening on http://{shown}:{port}/v1", flush=True)


def _worker(args: argparse.Namespace, port: int, ready: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers with SIGTERM
    _run(_serve(args, port, True, lambda fake: ready.release(), (signal.SIGTERM,)))


def main(argv: list[str] | None = None) -> int:
    """Serve the default behaviour until SIGINT/SIGTERM (see ``--help``)."""
    args = _parse_args(argv)
    if args.workers <= 1:
        _run(_serve(args, args.port, False, lambda fake: _announce(args.host, fake.port)))
        return 0
    # Hold the port (bound, not listening, so it takes no connections) while workers bind it.
    reserve = bind(args.host, args.port, reuse_port=True)
    port = int(reserve.getsockname()[1])
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    ready = context.Semaphore(0)
    workers = [
        context.Process(target=_worker, args=(args, port, ready), daemon=True)  # type: ignore[attr-defined]
        for _ in range(args.workers)
    ]
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        for worker in workers:
            worker.start()
        for _ in workers:
            while not ready.acquire(timeout=0.2):
                if stop.is_set() or any(not w.is_alive() for w in workers):
                    print("fake-openai: a worker failed to start", file=sys.stderr)
                    return 1
        reserve.close()
        _announce(args.host, port)
        while not stop.wait(0.5):
            if any(not w.is_alive() for w in workers):
                print("fake-openai: a worker exited", file=sys.stderr)
                return 1
        return 0
    finally:
        reserve.close()
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
