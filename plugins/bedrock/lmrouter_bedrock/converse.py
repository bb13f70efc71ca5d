"""IR ↔ Bedrock's Converse API: request bodies, whole answers, and the per-family quirks.

Converse is one wire format for every model on Bedrock, but not every model takes every part
of it (the table is in the README). What this module does about each difference:

- models without system prompts (Mistral 7B / Mixtral instruct, Titan Text): the system text
  opens the first user turn;
- models without a forced tool choice (``any`` / ``tool``: only Claude, Nova and Mistral Large
  take it): the tools are offered with ``auto``; a structured answer asked for through the
  forced answer tool is then only as reliable as the model;
- models without tool use at all (Mistral 7B / Mixtral, Titan Text): a request with tools is the
  caller's mistake for that model, answered by Bedrock's own 400.

Tool choice ``none`` has no Converse form: the tools are left out, unless the conversation
already holds tool calls or results (Bedrock then wants the ``toolConfig``), when they are
offered with ``auto``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from lmrouter import Usage, anthropic_tool_input, invalid_request, ir

FIRST_TURN = "."  # a stand-in user turn when a conversation starts with the assistant
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
CHOICES: dict[str, dict[str, Any]] = {"auto": {"auto": {}}, "required": {"any": {}}}
EFFORT_BUDGETS = {"minimal": None, "low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING_BUDGET = 1024

TO_FINISH: dict[str, ir.FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Model families by the id's provider prefix (``anthropic.``, ``us.anthropic.`` for a
# cross-region inference profile, or an ARN that ends in one).
_NO_SYSTEM = re.compile(r"(?:^|[.:/])(?:mistral\.(?:mistral-7b|mixtral)|amazon\.titan-text)")
_NO_TOOLS = _NO_SYSTEM
_FORCED_CHOICE = re.compile(r"(?:^|[.:/])(?:anthropic\.|amazon\.nova|mistral\.mistral-large)")
_THINKING = re.compile(r"anthropic\.claude-(?:3-7|(?:opus|sonnet|haiku)-4|[a-z]+-[4-9])")


def family_system(model: str) -> bool:
    return _NO_SYSTEM.search(model) is None


def family_forced_choice(model: str) -> bool:
    return _FORCED_CHOICE.search(model) is not None


def family_thinking(model: str) -> bool:
    return _THINKING.search(model) is not None


# -- IR → Converse request --------------------------------------------------------------------


def _image(part: ir.Image, where: str) -> dict[str, Any]:
    data, media_type = part.data, part.media_type
    if part.url.startswith("data:"):  # data:<media type>;base64,<data>
        head, _, data = part.url.partition(",")
        media_type = head[5:].split(";")[0]
    elif part.url:
        raise invalid_request(
            "Bedrock takes images inline only: send the image as base64 data, not a URL.", where
        )
    fmt = IMAGE_FORMATS.get(media_type or "image/png")
    if fmt is None:
        raise invalid_request(f"Bedrock takes png, jpeg, gif and webp images, not {media_type}.")
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _text(part: ir.Text) -> list[dict[str, Any]]:
    if not part.text.strip():
        return []  # Bedrock refuses blank text blocks
    blocks: list[dict[str, Any]] = [{"text": part.text}]
    if part.cache:
        blocks.append({"cachePoint": {"type": "default"}})
    return blocks


def _tool_result(part: ir.ToolResult, where: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for item in part.content:
        if isinstance(item, ir.Text):
            content += [b for b in _text(item) if "text" in b]
        else:
            content.append(_image(item, where))
    result: dict[str, Any] = {"toolUseId": part.id, "content": content or [{"json": {}}]}
    if part.is_error:
        result["status"] = "error"
    return {"toolResult": result}


# Converse's document formats by media type (its ``document`` block takes bytes inline only).
DOCUMENTS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}


def _document(part: ir.File) -> dict[str, Any]:
    """A ``document`` block; a text document as text; anything else skips the route."""
    if part.text is not None:
        return {"text": part.text}
    fmt = DOCUMENTS.get(part.media_type.split(";")[0].strip().lower())
    if fmt is None or not part.data:
        why = "by URL or file id" if not part.data else "of this type"
        raise part.cannot_serve(f"cannot be sent to Bedrock (Converse takes no documents {why})")
    # Converse wants a name of letters, digits, spaces, hyphens, parentheses and brackets.
    name = "".join(c if c.isalnum() or c in " -()[]" else " " for c in part.name).strip()
    source = {"bytes": part.data}  # base64 in the JSON body, as Converse's REST API takes it
    return {"document": {"format": fmt, "name": name or "document", "source": source}}


def _blocks(part: ir.Part, where: str) -> list[dict[str, Any]]:
    if isinstance(part, ir.Text):
        return _text(part)
    if isinstance(part, ir.Image):
        return [_image(part, where)]
    if isinstance(part, ir.ToolCall):
        value = anthropic_tool_input(part.arguments)
        return [{"toolUse": {"toolUseId": part.id, "name": part.name, "input": value}}]
    if isinstance(part, ir.ToolResult):
        return [_tool_result(part, where)]
    if isinstance(part, ir.File):
        return [_document(part)]
    if part.redacted:
        return [{"reasoningContent": {"redactedContent": part.redacted}}]
    if part.signature:  # unsigned reasoning (another provider's) cannot go back
        text = {"text": part.text, "signature": part.signature}
        return [{"reasoningContent": {"reasoningText": text}}]
    return []


def _turns(messages: list[ir.Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        blocks = [block for part in message.parts for block in _blocks(part, where)]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":  # tool results open the turn (a stable sort keeps order)
            turn["content"].sort(key=lambda block: "toolResult" not in block)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"text": FIRST_TURN}]})
    return turns


def _has_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def _tool_config(request: ir.ChatRequest, turns: list[dict[str, Any]], model: str) -> Any:
    choice = request.tool_choice
    if not request.tools or (choice is not None and choice.mode == "none"):
        if not request.tools or not _has_tool_blocks(turns):
            return None
        choice = None  # Bedrock wants the tools declared while the history holds calls
    tools = []
    for tool in request.tools:
        schema = tool.parameters or {"type": "object", "properties": {}}
        if "type" not in schema:
            schema = {"type": "object", **schema}
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": schema}}
        if tool.description:
            spec["description"] = tool.description
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if choice is not None and choice.mode != "none":
        if choice.mode != "auto" and not family_forced_choice(model):
            config["toolChoice"] = {"auto": {}}
        elif choice.mode == "tool":
            config["toolChoice"] = {"tool": {"name": choice.name}}
        else:
            config["toolChoice"] = CHOICES[choice.mode]
    return config


def _thinking_budget(request: ir.ChatRequest, model: str, forced: bool) -> int | None:
    budget = request.thinking_budget
    if budget is None and request.reasoning_effort is not None:
        budget = EFFORT_BUDGETS.get(request.reasoning_effort)
    if budget is None or budget <= 0 or forced or not family_thinking(model):
        return None
    ceiling = (request.max_tokens or 0) - 1
    budget = min(max(budget, MIN_THINKING_BUDGET), ceiling)
    return budget if budget >= MIN_THINKING_BUDGET else None


def converse_request(request: ir.ChatRequest, model: str) -> dict[str, Any]:
    """The Converse body for an IR request (model-agnostic, with the quirks above)."""
    if request.n > 1:
        raise invalid_request("n: this model answers with one choice; send n = 1.", "n")
    body: dict[str, Any] = {}
    turns = _turns(request.messages)
    system = [block for part in request.system for block in _text(part)]
    if system and family_system(model):
        body["system"] = system
    elif system:  # the model has no system prompt: its text opens the first user turn
        text = "\n\n".join(b["text"] for b in system if "text" in b)
        turns[0]["content"].insert(0, {"text": text})
    body["messages"] = turns
    tool_config = _tool_config(request, turns, model)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    forced = tool_config is not None and (
        "any" in tool_config.get("toolChoice", {}) or "tool" in tool_config.get("toolChoice", {})
    )
    inference: dict[str, Any] = {}
    if request.max_tokens:
        inference["maxTokens"] = request.max_tokens
    temperature, top_p = request.temperature, request.top_p
    budget = _thinking_budget(request, model, forced)
    if budget is not None:
        body["additionalModelRequestFields"] = {
            "thinking": {"type": "enabled", "budget_tokens": budget}
        }
        # Claude refuses temperature other than 1 and top_p below 0.95 with thinking on.
        temperature = None if temperature != 1 else temperature
        top_p = None if top_p is not None and top_p < 0.95 else top_p
    if temperature is not None:
        inference["temperature"] = temperature
    if top_p is not None:
        inference["topP"] = top_p
    stops = [stop for stop in request.stop if stop.strip()]
    if stops:
        inference["stopSequences"] = stops
    if inference:
        body["inferenceConfig"] = inference
    return body


def count_tokens_request(request: ir.ChatRequest, model: str) -> dict[str, Any]:
    """The CountTokens body: the Converse request's input parts under ``input.converse``."""
    body = converse_request(request, model)
    converse = {k: v for k, v in body.items() if k in ("messages", "system", "toolConfig")}
    return {"input": {"converse": converse}}


# -- Converse answer → IR ---------------------------------------------------------------------


class WireUsage(msgspec.Struct, rename="camel"):
    """Converse's usage: ``inputTokens`` leaves out the cached (read and written) tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    def normalize(self) -> Usage:
        read, written = self.cache_read_input_tokens, self.cache_write_input_tokens
        return Usage(
            prompt_tokens=self.input_tokens + read + written,
            completion_tokens=self.output_tokens,
            cached_tokens=read,
            cache_write_tokens=written,
        )


class _ToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str = ""
    name: str = ""
    input: Any = None


class _ReasoningText(msgspec.Struct):
    text: str = ""
    signature: str = ""


class _Reasoning(msgspec.Struct, rename="camel"):
    reasoning_text: _ReasoningText | None = None
    redacted_content: str = ""


class _Block(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _ToolUse | None = None
    reasoning_content: _Reasoning | None = None


class _Message(msgspec.Struct):
    content: list[_Block] = []


class _Output(msgspec.Struct):
    message: _Message | None = None


class ConverseResponse(msgspec.Struct, rename="camel"):
    output: _Output | None = None
    stop_reason: str = "end_turn"
    usage: WireUsage | None = None


decode_response = msgspec.json.Decoder(ConverseResponse).decode


def arguments(value: Any) -> str:
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


def _part(block: _Block) -> ir.Part | None:
    if block.text is not None:
        return ir.Text(text=block.text)
    if block.tool_use is not None:
        use = block.tool_use
        return ir.ToolCall(id=use.tool_use_id, name=use.name, arguments=arguments(use.input))
    reasoning = block.reasoning_content
    if reasoning is not None:
        if reasoning.redacted_content:
            return ir.Thinking(redacted=reasoning.redacted_content)
        if reasoning.reasoning_text is not None:
            text = reasoning.reasoning_text
            return ir.Thinking(text=text.text, signature=text.signature)
    return None


def chat_response(answer: ConverseResponse, id: str, model: str) -> ir.ChatResponse:
    message = answer.output.message if answer.output else None
    blocks = message.content if message else []
    return ir.ChatResponse(
        id=id,
        model=model,
        parts=[part for block in blocks if (part := _part(block)) is not None],
        finish_reason=TO_FINISH.get(answer.stop_reason, "stop"),
        usage=answer.usage.normalize() if answer.usage is not None else None,
    )
