"""Chat: the IR as a Gemini ``generateContent`` request, and Gemini's answers and streams as IR.

Request mapping (IR → Gemini):

- ``system`` → ``systemInstruction``; messages → ``contents`` with roles ``user``/``model``, runs
  of the same role merged into one turn;
- text → ``{text}``; a base64 image → ``inlineData {mimeType, data}``; an image URL →
  ``fileData {fileUri, mimeType}`` (the MIME type guessed from the file name, else
  ``image/jpeg``). Gemini fetches ``fileData`` itself and the Developer API accepts only URIs it
  can reach (Files API, and on newer models public HTTP(S) URLs): send images inline to be safe;
- tool calls → ``functionCall {name, args, id}`` with ``args`` the decoded arguments object;
  every replayed call carries Google's documented placeholder ``thoughtSignature`` because the IR
  does not keep Gemini's opaque signatures and Gemini 3 models reject calls without one;
- tool results → ``functionResponse {name, response, id}``. Gemini needs the function's name: the
  result's own ``name``, else the name of the earlier call with that id. ``response`` follows
  Google's documented convention: a result whose text is a JSON object is sent as that object;
  any other text as ``{"output": text}`` (``{"error": text}`` for an error result); images in a
  tool result are not sent (Gemini 2.x function responses are JSON only);
- thinking parts from earlier turns are not sent back (Gemini does not read them);
- ``max_tokens`` → ``maxOutputTokens``, ``stop`` → ``stopSequences``, temperature, top_p;
  ``thinking_budget`` → ``thinkingConfig {thinkingBudget, includeThoughts: true}`` (a budget of 0
  turns thinking off); ``reasoning_effort`` → ``thinkingBudget`` from :data:`EFFORT_BUDGETS`
  without thought text (OpenAI's Chat Completions has no place for it);
- ``tools`` → one ``{functionDeclarations}`` with schemas converted by :mod:`.schema`;
  ``tool_choice`` → ``toolConfig.functionCallingConfig`` AUTO / ANY / NONE, a named tool as ANY
  with ``allowedFunctionNames``. ``parallel_tool_calls`` has no Gemini equivalent.
- ``response_format`` → ``responseMimeType: "application/json"`` with the JSON Schema as
  ``responseJsonSchema`` (Gemini 2.5 and later take JSON Schema there as it is); with tools in
  play the provider asks through a forced function instead (see ``answers_by_tool``);
- a web search (Responses ``web_search``, Anthropic's ``web_search_…``) → ``{googleSearch: {}}``
  when the request has no function tools (Gemini 2.x refuses the two together);
- files → ``inlineData {mimeType, data}`` (PDF, text, audio, video: Gemini's documented input
  types; a text document without data is encoded as ``text/plain``), by URL → ``fileData``, and
  Gemini's own file URIs as they came. OpenAI's or Anthropic's file ids and other types (e.g.
  Word files) skip the route (:class:`lmrouter.CannotServe`). Gemini reads inline files up to its
  request size limit (100 MB, PDFs 50 MB): larger ones are refused by Gemini itself;
- ``n > 1`` → ``candidateCount``; every candidate of the answer becomes a choice.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from typing import Any

import msgspec
import orjson

from lmrouter import UpstreamFailure, invalid_request, ir, sse, structured
from lmrouter.wire import gemini as wire
from lmrouter_google import schema

EFFORT_BUDGETS: dict[str, int] = {
    # Chosen to be valid on every 2.5 model: Pro takes 128 to 32768, Flash 0 to 24576, Flash-Lite
    # 512 to 24576 thinking tokens.
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
}
# Thinking budgets each model family takes (Google's thinking guide): (least, most, whether 0
# turns thinking off). Checked in order, so the longer names come first. -1 (dynamic) is valid
# everywhere and sent as it is.
BUDGET_RANGES: tuple[tuple[str, tuple[int, int, bool]], ...] = (
    ("2.5-pro", (128, 32768, False)),
    ("2.5-flash-lite", (512, 24576, True)),
    ("2.5-flash", (1, 24576, True)),
)
DEFAULT_BUDGET_RANGE = (128, 24576, True)  # newer models: the range every 2.5 model shares
_NO_THINKING = ("gemini-1.", "gemini-2.0", "gemma-")  # models without thinking


def reasoning_default(model: str) -> bool | None:
    model = model.removeprefix("models/")
    return False if model.startswith(_NO_THINKING) else None


def budget_range(model: str) -> tuple[int, int, bool]:
    return next((r for name, r in BUDGET_RANGES if name in model), DEFAULT_BUDGET_RANGE)


def clamp_budget(budget: int, model: str) -> int:
    """A thinking budget within the model's documented range (0 stays 0 where it turns
    thinking off; else it becomes the least budget)."""
    if budget == -1:
        return budget
    least, most, can_stop = budget_range(model)
    if budget == 0 and can_stop:
        return 0
    return min(max(budget, least), most)


TOOL_MODES: dict[str, str] = {"auto": "AUTO", "required": "ANY", "none": "NONE", "tool": "ANY"}
FINISH_REASONS: dict[str, ir.FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
# Google's documented value for "no signature kept": skips Gemini 3's thought-signature check.
PLACEHOLDER_SIGNATURE = "skip_thought_signature_validator"


# -- request ---------------------------------------------------------------------------------


def build(request: ir.ChatRequest, model: str = "") -> dict[str, Any]:
    contents = _contents(request.messages)
    if not contents:
        raise invalid_request("Gemini needs at least one user or assistant message.", "messages")
    body: dict[str, Any] = {"contents": contents}
    system = [{"text": part.text} for part in request.system if part.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    config = _generation_config(request, model)
    if config:
        body["generationConfig"] = config
    if request.hosted_tools:  # another dialect's web search: Google Search grounding
        body["tools"] = [{"googleSearch": {}}]
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        if request.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    return body


def _contents(messages: list[ir.Message]) -> list[dict[str, Any]]:
    names = {
        part.id: part.name
        for message in messages
        for part in message.parts
        if isinstance(part, ir.ToolCall)
    }
    contents: list[dict[str, Any]] = []
    for message in messages:
        role = "model" if message.role == "assistant" else "user"
        parts = [p for part in message.parts if (p := _part(part, names)) is not None]
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _part(part: ir.Part, names: dict[str, str]) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Image):
        return _image(part)
    if isinstance(part, ir.File):
        return _file(part)
    if isinstance(part, ir.ToolCall):
        call = {"name": part.name, "args": _arguments(part), "id": part.id}
        return {"functionCall": call, "thoughtSignature": PLACEHOLDER_SIGNATURE}
    if isinstance(part, ir.ToolResult):
        return {"functionResponse": _function_response(part, names)}
    return None  # Thinking: Gemini does not take earlier thoughts back


def _image(image: ir.Image) -> dict[str, Any]:
    if image.data:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    url = image.url
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";", 1)[0] or "image/png"
        if ";base64" not in header:
            data = base64.b64encode(data.encode()).decode()
        return {"inlineData": {"mimeType": mime, "data": data}}
    mime = image.media_type or mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


# Gemini's documented non-image input types: documents (PDF, text and code files), audio, video.
_FILE_TYPES = ("application/pdf", "text/", "audio/", "video/", "application/x-javascript",
               "application/x-python", "application/json")  # fmt: skip


def _file(part: ir.File) -> dict[str, Any]:
    if part.file_id:
        if part.file_owner != "google":
            raise part.cannot_serve("cannot be read by Gemini models.")
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.file_id}}
    text = part.decoded_text()
    if text is not None and not part.data:
        data = base64.b64encode(text.encode()).decode()
        return {"inlineData": {"mimeType": "text/plain", "data": data}}
    if not part.media_type.startswith(_FILE_TYPES):
        raise part.cannot_serve(
            "cannot be sent to Gemini models (they take PDF, text, audio, video and images)."
        )
    if part.url:
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def _arguments(call: ir.ToolCall) -> dict[str, Any]:
    text = call.arguments.strip()
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise invalid_request(
            f"The arguments of tool call {call.id!r} must be a JSON object for Gemini.",
            "messages",
        )
    return value


def _function_response(result: ir.ToolResult, names: dict[str, str]) -> dict[str, Any]:
    name = result.name or names.get(result.id)
    if not name:
        raise invalid_request(
            f"The tool result for {result.id!r} answers no earlier tool call: Gemini needs the"
            " function's name.",
            "messages",
        )
    text = "".join(part.text for part in result.content if isinstance(part, ir.Text))
    response: Any = None
    if not result.is_error and text.lstrip().startswith("{"):
        try:
            response = orjson.loads(text)
        except orjson.JSONDecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"error" if result.is_error else "output": text}
    return {"name": name, "response": response, "id": result.id}


def _generation_config(request: ir.ChatRequest, model: str = "") -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.n > 1:
        config["candidateCount"] = request.n
    thinking = _thinking(request, model)
    if thinking:
        config["thinkingConfig"] = thinking
    fmt = request.response_format
    if fmt is not None:
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema:
            config["responseJsonSchema"] = fmt.schema
    return config


def _thinking(request: ir.ChatRequest, model: str = "") -> dict[str, Any]:
    if request.thinking_budget is not None:
        budget = clamp_budget(request.thinking_budget, model)
        if budget == 0:
            return {"thinkingBudget": 0}  # thinking off (where the model allows it)
        return {"thinkingBudget": budget, "includeThoughts": True}
    if request.reasoning_effort is not None:
        budget = clamp_budget(EFFORT_BUDGETS[request.reasoning_effort], model)
        return {"thinkingBudget": budget}
    return {}


def _declaration(tool: ir.Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if tool.name == structured.ANSWER_TOOL:
        # The structured answer's schema as it is: Gemini 2.5 and later take JSON Schema in
        # parametersJsonSchema, where the OpenAPI subset of `parameters` would lose parts of it.
        declaration["parametersJsonSchema"] = tool.parameters
        return declaration
    parameters = schema.for_gemini(tool.parameters)
    if parameters and schema.has_properties(parameters):
        declaration["parameters"] = parameters
    return declaration


def _calling_config(choice: ir.ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": TOOL_MODES[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return config


# -- answers ---------------------------------------------------------------------------------


def call_id(response_id: str, position: int, call: wire.FunctionCall, arguments: str) -> str:
    """Gemini's own id when it sends one; otherwise one derived from the answer, so the same
    answer gets the same id streamed or not."""
    if call.id:
        return call.id
    seed = f"{response_id}\x00{position}\x00{call.name}\x00{arguments}".encode()
    return "call_" + hashlib.blake2b(seed, digest_size=12).hexdigest()


def finish_reason(candidate: wire.Candidate | None, saw_tool_call: bool) -> ir.FinishReason:
    reason = candidate.finish_reason if candidate else None
    mapped = FINISH_REASONS.get(reason or "STOP", "stop")
    if mapped == "stop" and saw_tool_call:
        return "tool_calls"
    return mapped


def parse(body: bytes, model: str) -> ir.ChatResponse:
    try:
        doc = wire.decode_response(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamFailure.unreadable("Gemini", exc) from None
    response_id = doc.response_id or _new_id()
    usage = doc.usage_metadata.normalize() if doc.usage_metadata else None
    model = doc.model_version or model
    if not doc.candidates:
        # Blocked prompt (promptFeedback.blockReason) or an empty answer.
        blocked = doc.prompt_feedback is not None and doc.prompt_feedback.block_reason
        reason: ir.FinishReason = "content_filter" if blocked else "stop"
        return ir.ChatResponse(
            id=response_id, model=model, parts=[], finish_reason=reason, usage=usage
        )
    candidates = sorted(doc.candidates, key=lambda c: c.index)  # candidateCount > 1: all
    choices = [_candidate(candidate, response_id) for candidate in candidates]
    return ir.ChatResponse.of_choices(response_id, model, choices, usage)


def _candidate(candidate: wire.Candidate, response_id: str) -> ir.Choice:
    parts: list[ir.Part] = []
    calls = 0
    for part in candidate.content.parts if candidate.content else ():
        if part.function_call is not None:
            call = part.function_call
            arguments = orjson.dumps(call.args or {}).decode()
            parts.append(
                ir.ToolCall(
                    id=call_id(response_id, calls, call, arguments),
                    name=call.name,
                    arguments=arguments,
                )
            )
            calls += 1
        elif part.text is not None and part.thought:
            parts.append(ir.Thinking(text=part.text))
        elif part.text:
            _append_text(parts, part.text)
    return ir.Choice(parts=parts, finish_reason=finish_reason(candidate, calls > 0))


def _append_text(parts: list[ir.Part], text: str) -> None:
    last = parts[-1] if parts else None
    if isinstance(last, ir.Text):
        last.text += text
    else:
        parts.append(ir.Text(text=text))


def _new_id() -> str:
    return "gen-" + os.urandom(12).hex()


# -- streams ---------------------------------------------------------------------------------


class StreamParser:
    """``streamGenerateContent?alt=sse``: each ``data:`` event is a whole
    ``GenerateContentResponse`` holding the next parts. No ``[DONE]``: the chunk with a
    ``finishReason`` ends it. Function calls arrive whole in one chunk. ``usageMetadata`` rides on
    many chunks, cumulative, so each one becomes a :class:`~lmrouter.ir.UsageUpdate`. With
    ``candidateCount`` above 1 each candidate's events carry its ``index`` as their ``choice``,
    and the stream is finished when every candidate has its ``finishReason``."""

    __slots__ = ("calls", "decoder", "done", "model", "n", "response_id", "started")

    def __init__(self, model: str, n: int = 1) -> None:
        self.decoder = sse.SSEDecoder()
        self.model = model
        self.n = n
        self.started = False
        self.done: set[int] = set()  # candidates that have finished
        self.response_id = ""
        self.calls: dict[int, int] = {}  # candidate → function calls so far

    @property
    def finished(self) -> bool:
        return len(self.done) >= self.n

    def feed(self, chunk: bytes) -> list[ir.Event]:
        out: list[ir.Event] = []
        for event in self.decoder.feed(chunk):
            self._event(event.data, out)
        return out

    def close(self) -> list[ir.Event]:
        out: list[ir.Event] = []
        for event in self.decoder.close():
            self._event(event.data, out)
        return out

    def _event(self, data: bytes, out: list[ir.Event]) -> None:
        try:
            doc = wire.decode_response(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if data.strip() == b"[DONE]":
                return
            out.append(ir.StreamError(message="Gemini sent an unreadable stream event."))
            return
        if doc.error is not None:
            status = 400 if doc.error.code == 400 else 502
            out.append(ir.StreamError(message=doc.error.describe(), status=status))
            return
        if not self.started:
            self.started = True
            self.response_id = doc.response_id or _new_id()
            out.append(ir.StreamStart(id=self.response_id, model=doc.model_version or self.model))
        finishes: list[ir.Event] = []  # after the chunk's usage: the end comes last
        for candidate in doc.candidates:
            index = candidate.index
            if index in self.done or not 0 <= index < self.n:
                continue
            if candidate.content is not None:
                self._parts(index, candidate.content.parts, out)
            if candidate.finish_reason:
                self.done.add(index)
                calls = self.calls.get(index, 0)
                reason = finish_reason(candidate, calls > 0)
                finishes.append(ir.Finish(finish_reason=reason, choice=index))
        if doc.usage_metadata is not None:
            out.append(ir.UsageUpdate(usage=doc.usage_metadata.normalize()))
        out.extend(finishes)
        if not doc.candidates and doc.prompt_feedback and doc.prompt_feedback.block_reason:
            for index in range(self.n):
                if index not in self.done:
                    self.done.add(index)
                    out.append(ir.Finish(finish_reason="content_filter", choice=index))

    def _parts(self, choice: int, parts: list[wire.Part], out: list[ir.Event]) -> None:
        for part in parts:
            call = part.function_call
            if call is not None:
                arguments = orjson.dumps(call.args or {}).decode()
                index = self.calls.get(choice, 0)
                self.calls[choice] = index + 1
                identifier = call_id(self.response_id, index, call, arguments)
                out.append(
                    ir.ToolCallStart(index=index, id=identifier, name=call.name, choice=choice)
                )
                out.append(ir.ToolCallDelta(index=index, arguments=arguments, choice=choice))
            elif part.text and part.thought:
                out.append(ir.ThinkingDelta(text=part.text, choice=choice))
            elif part.text:
                out.append(ir.TextDelta(text=part.text, choice=choice))
