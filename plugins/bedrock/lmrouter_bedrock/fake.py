"""A fake Bedrock runtime for tests: Converse, ConverseStream and CountTokens behind SigV4.

- ``POST /model/{modelId}/converse``, ``/converse-stream`` and ``/count-tokens`` (the id
  percent-escaped or not, as clients send it); scripts are per model id.
- Auth: SigV4 (``AWS4-HMAC-SHA256``), verified by recomputing the signature with botocore over
  the headers the request says it signed, for the credentials the fake knows; or a Bedrock API
  key as ``Authorization: Bearer``. A wrong secret is AWS's 403 ``InvalidSignatureException``, an
  unknown access key or token ``UnrecognizedClientException``, no auth at all
  ``MissingAuthenticationTokenException``; a signature older than five minutes has expired.
- Errors as Bedrock sends them: ``{"message": …}`` with the ``x-amzn-ErrorType`` header.
- ConverseStream answers ``application/vnd.amazon.eventstream``: binary frames (prelude, headers,
  JSON payload, CRC32s) of ``messageStart``, ``contentBlockStart`` (tool use),
  ``contentBlockDelta``, ``contentBlockStop``, ``messageStop`` and ``metadata``; a scripted
  failure mid-stream is an ``exception`` frame (``modelStreamErrorException`` …).
- Claude's extended thinking (``additionalModelRequestFields.thinking``): a signed
  ``reasoningContent`` block first, streamed as reasoning deltas and a signature.
- Per-family limits of the real service: no system prompt or tool use on Mistral 7B / Mixtral
  and Titan Text, forced tool choice only on Claude, Nova and Mistral Large, no tool use in a
  stream on Llama, Cohere and Mistral Large.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import struct
import uuid
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from lmrouter.testing.conformance import Scenario
from lmrouter.testing.fakeserver import (
    Event,
    FakeServer,
    close_connection,
    content_index,
    content_text,
    sample_arguments,
    split_text,
)

__all__ = ["Behavior", "FakeBedrock", "bedrock_behavior", "frame"]

_PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream|count-tokens)$")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$"
)
_BEDROCK = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_CORAL = ":http://internal.amazon.com/coral/com.amazon.coral.service/"
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your"
    " AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_INVALID_TOKEN = "The security token included in the request is invalid."
_MESSAGES = {
    400: "Malformed input request, please reformat your input and try again.",
    403: "You don't have access to the model with the specified model ID.",
    404: "Could not resolve the foundation model from the provided model identifier.",
    408: "Model has timed out in processing the request. Try your request again.",
    500: "The system encountered an unexpected error during processing. Try your request again.",
}
ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", _MESSAGES[400]),
    401: ("UnrecognizedClientException", _INVALID_TOKEN),
    403: ("AccessDeniedException", _MESSAGES[403]),
    404: ("ResourceNotFoundException", _MESSAGES[404]),
    408: ("ModelTimeoutException", _MESSAGES[408]),
    413: ("ValidationException", "Input is too long for requested model."),
    422: ("ValidationException", "The model could not process the request."),
    424: ("ModelErrorException", "The model produced an invalid response."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", _MESSAGES[500]),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_INCOMPLETE = (
    "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters."
    " Authorization="
)
_FIRST_USER = (
    "A conversation must start with a user message. Try again with a conversation that starts"
    " with a user message."
)
_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation"
    " alternates between user and assistant roles and try again."
)
_ADD_TEXT = "Add text to the text field, and try again."
_NO_SYSTEM_MESSAGE = (
    "This model doesn't support system messages. Try again without system messages or use a"
    " model that supports system messages."
)
_TOOL_CONFIG_NEEDED = (
    "The toolConfig field must be defined when using toolUse and toolResult content blocks."
)
# Family limits, by the id's provider prefix (after an inference profile's region prefix).
_NO_SYSTEM = ("mistral.mistral-7b", "mistral.mixtral", "amazon.titan-text")
_FORCED_CHOICE = ("anthropic.", "amazon.nova", "mistral.mistral-large")
_NO_STREAM_TOOLS = ("meta.llama", "cohere.", "mistral.mistral-large")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_STOP_REASONS["content_filter"] = "content_filtered"
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(slots=True)
class Behavior:
    """How the fake answers one model; ``Behavior()`` is a healthy, fast model."""

    text: str | None = None
    """The reply (default: ``"Hello! You said: "`` + the start of the last user text)."""
    tool_call: bool = True
    """Call the request's tool (the named one, else the first) unless the last user turn
    carries tool results; with tool choice ``auto`` a short text block comes first."""
    status: int | None = None
    """Answer with this HTTP status and Bedrock's error body."""
    error_message: str | None = None
    error_type: str | None = None
    """The ``x-amzn-ErrorType`` name (default per status: ``ThrottlingException`` for 429 …)."""
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_chars: int = 4
    drop_after_chunks: int | None = None
    """Stream: close the connection after that many content deltas. Whole: close at once."""
    exception_after_chunks: int | None = None
    """Stream: after that many content deltas, an exception frame ends the stream."""
    stream_exception: str = "modelStreamErrorException"
    usage: dict[str, int] | None = None
    """``inputTokens``, ``outputTokens``, ``cacheReadInputTokens``, ``cacheWriteInputTokens``."""
    stop_reason: str | None = None
    thinking: str = "Let me think."
    """The reasoning text when the request turns Claude's thinking on (its signature is made
    from it)."""
    input_tokens: int = 0
    """What CountTokens answers (``0``: characters of the prompt // 4)."""


def bedrock_behavior(s: Scenario) -> Behavior:
    """A conformance-kit :class:`Scenario` as this fake's :class:`Behavior`. Bedrock's
    ``inputTokens`` leaves the cached tokens out; it reports no reasoning tokens."""
    usage = None
    if s.usage:
        usage = {
            "inputTokens": s.usage.input - s.usage.cached,
            "outputTokens": s.usage.output,
            "cacheReadInputTokens": s.usage.cached,
            "cacheWriteInputTokens": 0,
        }
    return Behavior(
        text=s.text,
        tool_call=s.tool_call,
        status=s.status,
        error_message=s.error_message,
        first_byte_delay=s.first_byte_delay,
        chunk_delay=s.chunk_delay,
        chunk_chars=s.chunk_chars,
        drop_after_chunks=s.drop_after_chunks,
        usage=usage,
        stop_reason=_STOP_REASONS[s.finish] if s.finish else None,
    )


class _BedrockError(Exception):
    def __init__(self, status: int, kind: str, message: str, namespace: str = _BEDROCK) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.namespace = status, kind, message, namespace


def _invalid(message: str) -> _BedrockError:
    return _BedrockError(400, "ValidationException", message)


@dataclass(slots=True)
class _Block:
    kind: str  # text, toolUse, reasoning
    pieces: list[str]
    id: str = ""
    name: str = ""
    signature: str = ""


@dataclass(slots=True)
class _Plan:
    blocks: list[_Block]
    stop_reason: str
    usage: dict[str, int] = field(default_factory=dict)


class FakeBedrock(FakeServer[Behavior]):
    """``credentials`` maps access key ids to secret keys (``session_token``: every request
    must carry it); ``api_keys`` are the Bedrock API keys accepted as bearer tokens. With
    neither, any request is accepted."""

    _behavior_type = Behavior
    _thread_name = "fake-bedrock"

    def __init__(
        self,
        credentials: Mapping[str, str] | None = None,
        *,
        session_token: str | None = None,
        api_keys: Collection[str] = (),
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(None, host=host, port=port)
        self.credentials = dict(credentials or {})
        self.session_token = session_token
        self.api_keys = set(api_keys)
        self.region = region
        self.max_skew = datetime.timedelta(minutes=5)

    # -- request handling ---------------------------------------------------------------------

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        try:
            raw_path = request.raw_path.partition("?")[0]
            match = _PATH.match(raw_path)
            if request.method != "POST" or match is None:
                raise _BedrockError(404, "UnknownOperationException", "", _CORAL)
            self._authenticate(request, raw_path, await request.read())
            model, operation = unquote(match.group(1)), match.group(2)
            if bad_json or not isinstance(parsed, dict):
                raise _BedrockError(400, "SerializationException", "Unexpected JSON body.")
            if operation == "count-tokens":
                return self._count_tokens(model, parsed)
            return await self._converse(request, model, parsed, operation == "converse-stream")
        except _BedrockError as err:
            return _error_response(err)

    def _authenticate(self, request: web.BaseRequest, raw_path: str, body: bytes) -> None:
        if not self.credentials and not self.api_keys:
            return
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme == "Bearer":
            if token in self.api_keys:
                return
            raise _BedrockError(403, "UnrecognizedClientException", _INVALID_TOKEN, _CORAL)
        if not auth:
            raise _BedrockError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token", _CORAL
            )
        match = _AUTH.match(auth)
        if match is None:
            message = _INCOMPLETE + auth[:20]
            raise _BedrockError(403, "IncompleteSignatureException", message, _CORAL)
        akid, day, region, service, signed, signature = match.groups()
        secret = self.credentials.get(akid)
        if secret is None:
            raise _BedrockError(403, "UnrecognizedClientException", _INVALID_TOKEN, _CORAL)
        token_sent = request.headers.get("X-Amz-Security-Token")
        if self.session_token is not None and token_sent != self.session_token:
            raise _BedrockError(403, "UnrecognizedClientException", _INVALID_TOKEN, _CORAL)
        if service != "bedrock":
            message = "Credential should be scoped to correct service: 'bedrock'. "
            raise _BedrockError(403, "InvalidSignatureException", message, _CORAL)
        if region != self.region:
            message = f"Credential should be scoped to a valid region, not '{region}'. "
            raise _BedrockError(403, "InvalidSignatureException", message, _CORAL)
        amz_date = request.headers.get("X-Amz-Date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.UTC
            )
        except ValueError:
            message = "Date must be in ISO-8601 'basic format'."
            raise _BedrockError(403, "IncompleteSignatureException", message, _CORAL) from None
        now = datetime.datetime.now(datetime.UTC)
        if now - when > self.max_skew or day != amz_date[:8]:
            earliest = (now - self.max_skew).strftime("%Y%m%dT%H%M%SZ")
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            message = (
                f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - 5 min.)"
            )
            raise _BedrockError(403, "InvalidSignatureException", message, _CORAL)
        headers = {name: request.headers.get(name, "") for name in signed.split(";")}
        url = f"{request.scheme}://{request.host}{raw_path}"
        aws = AWSRequest(method=request.method, url=url, headers=headers, data=body)
        aws.context["timestamp"] = amz_date
        signer = SigV4Auth(ReadOnlyCredentials(akid, secret, token_sent), service, region)
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        if not hmac.compare_digest(expected, signature):
            raise _BedrockError(403, "InvalidSignatureException", _MISMATCH, _CORAL)

    def _count_tokens(self, model: str, body: dict[str, Any]) -> web.Response:
        if "anthropic." not in model:
            raise _invalid("The provided model doesn't support counting tokens.")
        converse = (body.get("input") or {}).get("converse")
        if not isinstance(converse, dict):
            raise _invalid("input: exactly one of converse or invokeModel is required")
        messages = _check_messages(converse.get("messages"))
        behavior = self._behavior(model)
        count = behavior.input_tokens or _prompt_chars(converse, messages) // 4
        return web.json_response({"inputTokens": count}, headers=_headers())

    async def _converse(
        self, request: web.BaseRequest, model: str, body: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        req = _validate(model, body, stream)
        behavior = self._behavior(model)
        if behavior.first_byte_delay > 0:
            await self._delay_headers(behavior.first_byte_delay, model, stream)
        if behavior.status is not None:
            kind, message = ERRORS.get(behavior.status, ("InternalServerException", "Error."))
            raise _BedrockError(
                behavior.status, behavior.error_type or kind, behavior.error_message or message
            )
        if behavior.drop_after_chunks is not None and not stream:
            close_connection(request)
            return web.Response()
        plan = self._plan(req, behavior)
        if stream:
            return await self._stream(request, model, behavior, plan)
        content = [_full_block(block) for block in plan.blocks]
        answer = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": plan.stop_reason,
            "usage": plan.usage,
            "metrics": {"latencyMs": 42},
        }
        return web.json_response(answer, headers=_headers())

    def _plan(self, req: dict[str, Any], behavior: Behavior) -> _Plan:
        size = behavior.chunk_chars
        blocks: list[_Block] = []
        if req["thinking"]:
            signature = base64.b64encode(hashlib.sha256(behavior.thinking.encode()).digest())
            pieces = split_text(behavior.thinking, size)
            blocks.append(_Block("reasoning", pieces, signature=signature.decode()))
        tool = _chosen_tool(req) if behavior.tool_call else None
        stop_reason = "end_turn"
        if tool is not None:
            if "auto" in req["choice"]:
                intro = f"I'll use the {tool['name']} tool."
                blocks.append(_Block("text", split_text(intro, size)))
            arguments = orjson.dumps(sample_arguments(tool["inputSchema"]["json"])).decode()
            tool_id = "tooluse_" + uuid.uuid4().hex[:22]
            blocks.append(_Block("toolUse", split_text(arguments, size), tool_id, tool["name"]))
            stop_reason = "tool_use"
        else:
            text = behavior.text
            if text is None:
                text = "Hello! You said: " + _last_user_text(req["messages"])[:40]
            found = [(text.find(s), s) for s in req["stop"] if s and s in text]
            if found:
                text, stop_reason = text[: min(found)[0]], "stop_sequence"
            blocks.append(_Block("text", split_text(text, size)))
        budget = req["max_tokens"]
        for position, block in enumerate(blocks):
            if len(block.pieces) > budget:
                del block.pieces[budget:]
                del blocks[position + (1 if block.pieces else 0) :]
                stop_reason = "max_tokens"
                break
            budget -= len(block.pieces)
        if behavior.stop_reason is not None:
            stop_reason = behavior.stop_reason
        output = sum(len(block.pieces) for block in blocks)
        override = behavior.usage or {}
        usage = {
            "inputTokens": override.get("inputTokens", req["prompt_chars"] // 4),
            "outputTokens": override.get("outputTokens", output),
            "cacheReadInputTokens": override.get("cacheReadInputTokens", 0),
            "cacheWriteInputTokens": override.get("cacheWriteInputTokens", 0),
        }
        usage["totalTokens"] = sum(usage.values())
        return _Plan(blocks, stop_reason, usage)

    async def _stream(
        self, request: web.BaseRequest, model: str, behavior: Behavior, plan: _Plan
    ) -> web.StreamResponse:
        events = _stream_events(plan)
        headers = _headers()
        headers["Content-Type"] = "application/vnd.amazon.eventstream"
        response = web.StreamResponse(status=200, headers=headers)
        drop, fail = behavior.drop_after_chunks, behavior.exception_after_chunks
        drop_at = None if drop is None else content_index(events, drop)
        fail_at = None if fail is None else content_index(events, fail)
        cut, tail = False, b""
        if drop_at is not None and (fail_at is None or drop_at <= fail_at):
            events, cut = events[:drop_at], True
        elif fail_at is not None:
            events, tail = events[:fail_at], exception_frame(behavior.stream_exception)
        return await self._write_stream(
            request, response, events, model=model, delay=behavior.chunk_delay, cut=cut, tail=tail
        )


# -- validation --------------------------------------------------------------------------------

_TOP = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}
_TOP |= {"additionalModelResponseFieldPaths", "guardrailConfig", "performanceConfig"}
_TOP |= {"promptVariables", "requestMetadata"}
_BLOCKS = {"text", "image", "document", "video", "toolUse", "toolResult", "reasoningContent"}
_BLOCKS |= {"cachePoint", "guardContent"}
_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}


def _family(model: str, prefixes: tuple[str, ...]) -> bool:
    bare = model.rsplit("/", 1)[-1]
    return any(bare.startswith(p) or f".{p}" in bare for p in prefixes)


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid(_FIRST_USER)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: must be user or assistant")
        if i == 0 and message["role"] != "user":
            raise _invalid(_FIRST_USER)
        if i and messages[i - 1].get("role") == message["role"]:
            raise _invalid(_ALTERNATE)
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _invalid(f"messages.{i}.content: must be a non-empty list of content blocks")
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCKS:
                raise _invalid(f"messages.{i}.content.{j}: a content block has exactly one member")
            text = block.get("text")
            if text is not None and (not isinstance(text, str) or not text.strip()):
                where = f"messages.{i}.content.{j}"
                raise _invalid(
                    f"The text field in the ContentBlock object at {where} is blank. {_ADD_TEXT}"
                )
    return messages


def _validate(model: str, body: dict[str, Any], stream: bool) -> dict[str, Any]:
    extra = sorted(set(body) - _TOP)
    if extra:
        raise _BedrockError(400, "SerializationException", f"Unknown field: {extra[0]}")
    messages = _check_messages(body.get("messages"))
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise _invalid("system: must be a list of system content blocks")
        if _family(model, _NO_SYSTEM):
            raise _invalid(_NO_SYSTEM_MESSAGE)
    inference = body.get("inferenceConfig") or {}
    if set(inference) - _INFERENCE:
        raise _BedrockError(400, "SerializationException", "Unknown field in inferenceConfig")
    max_tokens = inference.get("maxTokens", 4096)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise _invalid("inferenceConfig.maxTokens: must be at least 1")
    tools, choice = _check_tools(model, body.get("toolConfig"), stream)
    thinking = _check_thinking(model, body.get("additionalModelRequestFields"), max_tokens)
    uses = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    if uses and not tools:
        raise _invalid(_TOOL_CONFIG_NEEDED)
    return {
        "messages": messages,
        "tools": tools,
        "choice": choice,
        "max_tokens": max_tokens,
        "thinking": thinking,
        "stop": inference.get("stopSequences") or [],
        "prompt_chars": _prompt_chars(body, messages),
    }


def _check_thinking(model: str, fields: Any, max_tokens: int) -> bool:
    """Claude's extended thinking, through ``additionalModelRequestFields``, as Bedrock passes
    it to the model (its errors quoted as Bedrock quotes them)."""
    if not isinstance(fields, dict) or "thinking" not in fields:
        return False
    if not _family(model, ("anthropic.",)):
        raise _invalid("The model returned the following errors: extraneous key [thinking]")
    thinking = fields["thinking"]
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return False
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        message = "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        raise _invalid(f"The model returned the following errors: {message}")
    if budget >= max_tokens:
        message = "`max_tokens` must be greater than `thinking.budget_tokens`"
        raise _invalid(f"The model returned the following errors: {message}")
    return True


def _check_tools(
    model: str, config: Any, stream: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if config is None:
        return [], {}
    if _family(model, _NO_SYSTEM):  # the same families have neither
        raise _invalid("This model doesn't support tool use.")
    if stream and _family(model, _NO_STREAM_TOOLS):
        raise _invalid("This model doesn't support tool use in streaming mode.")
    tools = []
    for i, tool in enumerate(config.get("tools") or ()):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        schema = (spec or {}).get("inputSchema", {}).get("json")
        if not isinstance(spec, dict) or not spec.get("name") or not isinstance(schema, dict):
            raise _invalid(f"toolConfig.tools.{i}.toolSpec: name and inputSchema.json required")
        tools.append(spec)
    if not tools:
        raise _invalid("toolConfig.tools: at least one tool is required")
    choice = config.get("toolChoice") or {"auto": {}}
    if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
        raise _invalid("toolConfig.toolChoice: exactly one of auto, any or tool")
    kind = next(iter(choice))
    if kind != "auto" and not _family(model, _FORCED_CHOICE):
        field_name = f"toolConfig.toolChoice.{kind}"
        raise _invalid(
            f"This model doesn't support the {field_name} field. Remove {field_name} and try again."
        )
    if kind == "tool" and choice["tool"].get("name") not in {t["name"] for t in tools}:
        raise _invalid("toolConfig.toolChoice.tool.name: not among the tools")
    return tools, choice


def _chosen_tool(req: dict[str, Any]) -> dict[str, Any] | None:
    if not req["tools"]:
        return None
    last = req["messages"][-1]
    if last["role"] == "user" and any("toolResult" in b for b in last["content"]):
        return None
    name = (req["choice"].get("tool") or {}).get("name")
    return next((t for t in req["tools"] if name is None or t["name"] == name), req["tools"][0])


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            text = content_text(message["content"])
            if text:
                return text
    return ""


def _prompt_chars(body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    chars = len(content_text(body.get("system") or []))
    chars += sum(len(orjson.dumps(m["content"])) for m in messages)
    if body.get("toolConfig"):
        chars += len(orjson.dumps(body["toolConfig"]))
    return chars


# -- answers -------------------------------------------------------------------------------------


def _full_block(block: _Block) -> dict[str, Any]:
    joined = "".join(block.pieces)
    if block.kind == "text":
        return {"text": joined}
    if block.kind == "reasoning":
        text = {"text": joined, "signature": block.signature}
        return {"reasoningContent": {"reasoningText": text}}
    try:
        value = orjson.loads(joined) if joined else {}
    except orjson.JSONDecodeError:
        value = {}
    return {"toolUse": {"toolUseId": block.id, "name": block.name, "input": value}}


def _headers() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def _error_response(err: _BedrockError) -> web.Response:
    headers = _headers()
    headers["x-amzn-ErrorType"] = err.kind + err.namespace
    body: dict[str, Any] = {"message": err.message} if err.message else {}
    if err.kind == "UnknownOperationException":
        body = {"Output": {"__type": "com.amazon.coral.service#UnknownOperationException"}}
    return web.json_response(body, status=err.status, headers=headers)


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and header lengths, CRC32), string headers
    (type 7), the payload and the CRC32 of all before it."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += bytes([len(raw_name)]) + raw_name + b"\x07"
        encoded += struct.pack(">H", len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads each payload ("p") so that lengths do not reveal the content.
    padded = {**payload, "p": _PADDING[: 1 + len(name) % len(_PADDING)]}
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(padded))


def exception_frame(kind: str, message: str = "The model stream failed.") -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, orjson.dumps({"message": message}))


def _delta(kind: str, piece: str) -> dict[str, Any]:
    if kind == "text":
        return {"text": piece}
    if kind == "reasoning":
        return {"reasoningContent": {"text": piece}}
    return {"toolUse": {"input": piece}}


def _stream_events(plan: _Plan) -> list[Event]:
    events: list[Event] = [(_event("messageStart", {"role": "assistant"}), False)]
    for index, block in enumerate(plan.blocks):
        if block.kind == "toolUse":
            start = {"toolUse": {"toolUseId": block.id, "name": block.name}}
            payload = {"contentBlockIndex": index, "start": start}
            events.append((_event("contentBlockStart", payload), False))
        deltas = [(_delta(block.kind, piece), True) for piece in block.pieces]
        if block.kind == "reasoning":
            deltas.append(({"reasoningContent": {"signature": block.signature}}, False))
        for delta, is_content in deltas:
            payload = {"contentBlockIndex": index, "delta": delta}
            events.append((_event("contentBlockDelta", payload), is_content))
        events.append((_event("contentBlockStop", {"contentBlockIndex": index}), False))
    events.append((_event("messageStop", {"stopReason": plan.stop_reason}), False))
    metadata = {"usage": plan.usage, "metrics": {"latencyMs": 42}}
    events.append((_event("metadata", metadata), False))
    return events
