"""The OpenAI Responses dialect (``POST /v1/responses``).

OpenAI routes speak it natively: the request passes through (built-in and ``namespace`` tools,
``include``, reasoning items all work there) and :class:`ResponsesStreamRelay` reads the usage
off the stream. Every other provider is reached by conversion, Responses → IR → provider, and
the answer comes back as a ``response`` object or its typed event stream.

**State lives in a response store, not here.** On OpenAI routes the upstream keeps what it
stores. For converted routes, a store plugin (``lmrouter-responses``) keeps the conversation: it
replaces ``previous_response_id`` with the stored history in ``input`` before conversion, and
sets ``store`` to whether it keeps the answer (echoed back). A ``previous_response_id`` still
there at conversion is a 400, and so are ``conversation`` and ``background`` (the store plugin
expands the one and runs the other). ``item_reference`` items and ``prompt`` templates are
400s that say so.

Mapping choices (the README's support table repeats them):

- ``instructions`` and ``system``/``developer`` messages anywhere in ``input`` become the IR's
  system text, in order (the IR, like Anthropic and Gemini, has one system prompt).
- ``reasoning`` input items become :class:`ir.Thinking` in the assistant turn: the text is the
  item's ``content`` (``reasoning_text``) or else its ``summary``, and ``encrypted_content``
  carries the provider's signature back unchanged. Output reasoning is a ``reasoning`` item
  whose ``summary`` holds the thinking text (streamed as ``reasoning_summary_text`` events — the
  events the SDK's stream helper and most UIs show) and whose ``encrypted_content`` holds the
  signature, so a stateless client that sends the item back keeps multi-turn thinking valid.
  Redacted thinking travels as ``encrypted_content`` with the :data:`REDACTED` prefix.
- ``reasoning.effort``: ``xhigh``/``max`` → ``high``; ``none`` → no effort setting.
- ``text.format`` ``json_object`` / ``json_schema`` become the IR's ``response_format``.
- Function tools; ``namespace`` tools flattened into function tools named
  ``{namespace}__{function}`` (calls come back with ``namespace`` and ``name`` apart); built-in
  tools (``web_search``, ``file_search``…) left out and named in ``x-lmrouter-dropped-tools``,
  or refused with ``[routing] unsupported_tools = "reject"``. ``custom`` tools, file inputs and
  ``file_id`` images are 400s naming the field. Hints without an IR
  equivalent are accepted and ignored: ``strict``, ``include``,
  ``truncation``, ``service_tier``, ``text.verbosity``, ``top_logprobs``, ``max_tool_calls``,
  ``prompt_cache_key``, ``reasoning.summary``, ``metadata`` (echoed back).
- A finish for ``length`` or ``content_filter`` is ``status: "incomplete"`` with
  ``incomplete_details.reason`` ``max_output_tokens`` / ``content_filter``; the item being
  generated then is ``incomplete``. A stream ends with ``response.completed`` or
  ``response.incomplete`` (no ``[DONE]``), carrying usage with ``cost`` (USD).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from lmrouter import ir, sse
from lmrouter.dialects import Dialect, Parsed, files
from lmrouter.dialects.cost import cost_json, finish_reading
from lmrouter.dialects.openai import error_body, load_object, model_field
from lmrouter.errors import RouterError, invalid_request
from lmrouter.money import Rates
from lmrouter.usage import Usage, estimate_tokens, prompt_chars

REDACTED = "lmr-redacted:"
"""``encrypted_content`` prefix for Anthropic redacted thinking (the rest is its ``data``)."""

_STATELESS = "this router is stateless; send the full input"

# Fields that need stored state: refused with a message that says what to do instead.
_STATEFUL_FIELDS: dict[str, str] = {
    "prompt": "prompt templates are not supported: this router is stateless; send instructions "
    "and input instead",
}

# Responses API effort → IR effort; a missing key is a 400.
_EFFORTS: dict[str, ir.Effort | None] = {
    "none": None,
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}

_INCOMPLETE_REASONS: dict[str, str] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
}

_SUMMARIES = ("auto", "concise", "detailed")
_VERBOSITIES = ("low", "medium", "high")
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_TYPES = {"input_text": "text", "output_text": "text", "refusal": "refusal"}


# -- requests ---------------------------------------------------------------------------------


def parse(body: bytes) -> Parsed:
    """What routing needs, plus the refusals no route could change (stateful features)."""
    doc = load_object(body)
    model = model_field(doc)
    for name, message in _STATEFUL_FIELDS.items():
        if doc.get(name) is not None:
            raise invalid_request(message, name)
    _bool(doc, "background")  # a response store (plugin) acts on these
    _bool(doc, "store")
    previous = doc.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise invalid_request(
            "`previous_response_id` must be a response id.", "previous_response_id"
        )
    stream = _bool(doc, "stream")
    value = doc.get("input")
    if not isinstance(value, str) and not (isinstance(value, list) and value):
        raise invalid_request(
            f"`input` must be a string or a non-empty array of items ({_STATELESS}).", "input"
        )
    limit = doc.get("max_output_tokens")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise invalid_request(
            "`max_output_tokens` must be a positive integer.", "max_output_tokens"
        )
    # Usage always comes with a Responses stream (in response.completed): wants_usage is True.
    chars = prompt_chars(body, value)
    return Parsed(doc, model, stream, True, limit, 1, chars)


def _bool(doc: dict[str, Any], name: str, path: str = "") -> bool:
    value = doc.get(name)
    if value is None:
        return False
    if type(value) is not bool:
        path = path or name
        raise invalid_request(f"`{path}` must be a boolean.", path)
    return value


def _one_of(obj: dict[str, Any], name: str, path: str, allowed: tuple[str, ...]) -> None:
    """Settings the IR ignores are still checked: the ``response`` echoes them back."""
    value = obj.get(name)
    if value is not None and value not in allowed:
        raise invalid_request(f"`{path}` must be one of {', '.join(allowed)}.", path)


def _metadata(doc: dict[str, Any]) -> None:
    value = doc.get("metadata")
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid_request("`metadata` must be an object of strings.", "metadata")


def _number(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise invalid_request(f"`{name}` must be a number.", name)
    return float(value)


def _string(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> str:
    value = obj.get(name)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    raise invalid_request(f"`{path}.{name}` must be a string.", f"{path}.{name}")


class _Turns:
    """Collects IR messages; consecutive same-role turns merge (the IR's convention)."""

    __slots__ = ("call_names", "messages", "system")

    def __init__(self) -> None:
        self.messages: list[ir.Message] = []
        self.system: list[ir.Text] = []
        self.call_names: dict[str, str] = {}  # call_id → function name, for ToolResult.name

    def add(self, role: ir.Role, parts: list[ir.Part]) -> None:
        if not parts:
            return
        if self.messages and self.messages[-1].role == role:
            self.messages[-1].parts.extend(parts)
        else:
            self.messages.append(ir.Message(role=role, parts=parts))


def to_ir(doc: dict[str, Any]) -> ir.ChatRequest:
    if doc.get("previous_response_id") is not None:
        raise invalid_request(
            "previous_response_id needs stored responses, which this router does not keep "
            "for this route (no response store, or the response is kept by another "
            "provider); send the full input instead",
            "previous_response_id",
        )
    # A response store (plugin) expands a conversation and runs background requests itself.
    if doc.get("conversation") is not None:
        raise invalid_request(
            f"conversation needs stored conversations, which this router does not keep "
            f"(no response store); {_STATELESS}",
            "conversation",
        )
    if doc.get("background"):
        raise invalid_request(
            "background responses need a response store, which this router does not have; "
            "send the request without `background`",
            "background",
        )
    response_format = _response_format(doc)
    _metadata(doc)
    turns = _Turns()
    instructions = doc.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid_request("`instructions` must be a string.", "instructions")
        if instructions:
            turns.system.append(ir.Text(text=instructions))
    value = doc.get("input")
    if isinstance(value, str):
        turns.add("user", [ir.Text(text=value)])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _item(turns, item, f"input[{i}]")
    if not turns.messages:
        raise invalid_request("`input` must contain at least one user or assistant item.", "input")
    tools, dropped, hosted = _tools(doc.get("tools"))
    return ir.ChatRequest(
        model=model_field(doc),
        messages=turns.messages,
        system=turns.system,
        tools=tools,
        dropped_tools=dropped,
        hosted_tools=hosted,
        tool_choice=_tool_choice(doc.get("tool_choice")),
        parallel_tool_calls=_optional_bool(doc, "parallel_tool_calls"),
        max_tokens=doc.get("max_output_tokens"),
        temperature=_number(doc, "temperature"),
        top_p=_number(doc, "top_p"),
        stream=doc.get("stream") is True,
        reasoning_effort=_effort(doc.get("reasoning")),
        user=_user(doc),
        response_format=response_format,
    )


def _optional_bool(doc: dict[str, Any], name: str) -> bool | None:
    return _bool(doc, name) if doc.get(name) is not None else None


def _user(doc: dict[str, Any]) -> str | None:
    for name in ("user", "safety_identifier"):  # safety_identifier is user's successor
        value = doc.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise invalid_request(f"`{name}` must be a string.", name)
            return value
    return None


# -- input items ------------------------------------------------------------------------------


def _item(turns: _Turns, item: Any, path: str) -> None:
    if not isinstance(item, dict):
        raise invalid_request(f"`{path}` must be an object.", path)
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"  # the "easy" input message has no type
    handler = _ITEMS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        raise invalid_request(_unsupported_item(kind), f"{path}.type")
    handler(turns, item, path)


def _unsupported_item(kind: Any) -> str:
    if kind == "item_reference":
        return (
            "item_reference names an item this route cannot see: only items of responses and "
            "conversations this router keeps (plugin responses) can be referenced here"
        )
    return (
        f"Input item type {kind!r} is not supported; use message, function_call, "
        "function_call_output or reasoning items."
    )


def _message_item(turns: _Turns, item: dict[str, Any], path: str) -> None:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise invalid_request(
            f"`{path}.role` must be one of user, assistant, system, developer.", f"{path}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        parts: list[ir.Part] = [ir.Text(text=content)]
    elif isinstance(content, list):
        parts = [_content(part, role, f"{path}.content[{j}]") for j, part in enumerate(content)]
    else:
        raise invalid_request(
            f"`{path}.content` must be a string or an array of content parts.", f"{path}.content"
        )
    if role in ("system", "developer"):
        turns.system.extend(part for part in parts if isinstance(part, ir.Text))
    else:
        turns.add(role, parts)


def _content(part: Any, role: str, path: str) -> ir.Part:
    if not isinstance(part, dict):
        raise invalid_request(f"`{path}` must be an object.", path)
    kind = part.get("type")
    if isinstance(kind, str) and kind in _TEXT_TYPES:
        return ir.Text(text=_string(part, _TEXT_TYPES[kind], path))
    if kind == "input_image" and role == "user":
        return _image(part, path)
    if kind == "input_file" and role == "user":
        return files.openai_file(
            file_data=_string(part, "file_data", path, required=False) or None,
            file_id=_string(part, "file_id", path, required=False) or None,
            filename=_string(part, "filename", path, required=False) or None,
            file_url=_string(part, "file_url", path, required=False) or "",
            param=path,
        )
    if kind == "input_file":
        message = f"Files are only supported in user messages, not in {role} messages."
    elif kind == "input_image":
        message = f"Images are only supported in user messages, not in {role} messages."
    else:
        message = f"Content type {kind!r} is not supported here; use input_text or input_image."
    raise invalid_request(message, f"{path}.type")


def _image(part: dict[str, Any], path: str) -> ir.Image:
    if part.get("file_id") is not None:
        raise invalid_request(
            "Images by file_id are not supported (no file storage); send image_url as an "
            "https URL or a data: URL.",
            f"{path}.file_id",
        )
    url = part.get("image_url")
    if isinstance(url, str):
        if url.startswith(("https://", "http://")):
            return ir.Image(url=url)
        if url.startswith("data:"):
            return _data_url(url, f"{path}.image_url")
    raise invalid_request(
        f"`{path}.image_url` must be an http(s) URL or a base64 data: URL.", f"{path}.image_url"
    )


def _data_url(url: str, path: str) -> ir.Image:
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not media_type.startswith("image/"):
        raise invalid_request(f"`{path}` must be a data URL like data:image/png;base64,…", path)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"`{path}` does not hold valid base64 data.", path) from None
    return ir.Image(data=data, media_type=media_type)


def _function_call_item(turns: _Turns, item: dict[str, Any], path: str) -> None:
    call_id = _string(item, "call_id", path)
    name = _string(item, "name", path)
    namespace = _string(item, "namespace", path, required=False)
    if namespace:
        name = namespace + NAMESPACE_SEP + name
    arguments = _string(item, "arguments", path, required=False) or "{}"
    turns.call_names[call_id] = name
    turns.add("assistant", [ir.ToolCall(id=call_id, name=name, arguments=arguments)])


def _function_call_output_item(turns: _Turns, item: dict[str, Any], path: str) -> None:
    call_id = _string(item, "call_id", path)
    output = item.get("output")
    content: list[ir.Text | ir.Image]
    attached: list[ir.Part] = []  # files a tool returned: tool results hold text and images
    if isinstance(output, str):
        content = [ir.Text(text=output)] if output else []
    elif isinstance(output, list):
        content = []
        for j, part in enumerate(output):
            converted = _content(part, "user", f"{path}.output[{j}]")
            if isinstance(converted, ir.File):
                attached.append(converted)
                continue
            assert isinstance(converted, ir.Text | ir.Image)
            content.append(converted)
    else:
        raise invalid_request(
            f"`{path}.output` must be a string or an array of content parts.", f"{path}.output"
        )
    result = ir.ToolResult(id=call_id, content=content, name=turns.call_names.get(call_id, ""))
    turns.add("user", [result, *attached])


def _reasoning_item(turns: _Turns, item: dict[str, Any], path: str) -> None:
    texts = _reasoning_texts(item.get("content"), "reasoning_text", f"{path}.content")
    if not texts:
        texts = _reasoning_texts(item.get("summary"), "summary_text", f"{path}.summary")
    encrypted = item.get("encrypted_content")
    if encrypted is not None and not isinstance(encrypted, str):
        raise invalid_request(
            f"`{path}.encrypted_content` must be a string.", f"{path}.encrypted_content"
        )
    encrypted = encrypted or ""
    text = "\n\n".join(texts)
    if encrypted.startswith(REDACTED):
        thinking = ir.Thinking(redacted=encrypted[len(REDACTED) :])
    elif text or encrypted:
        thinking = ir.Thinking(text=text, signature=encrypted)
    else:
        return  # nothing a provider could use
    turns.add("assistant", [thinking])


def _reasoning_texts(value: Any, kind: str, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_request(f"`{path}` must be an array.", path)
    texts = []
    for j, part in enumerate(value):
        where = f"{path}[{j}]"
        if not isinstance(part, dict) or part.get("type") != kind:
            raise invalid_request(f"`{where}` must be a {kind} part.", f"{where}.type")
        texts.append(_string(part, "text", where))
    return texts


_ITEMS: dict[str, Callable[[_Turns, dict[str, Any], str], None]] = {
    "message": _message_item,
    "function_call": _function_call_item,
    "function_call_output": _function_call_output_item,
    "reasoning": _reasoning_item,
}


# -- tools and settings -----------------------------------------------------------------------


NAMESPACE_SEP = "__"
"""Joins a ``namespace`` tool's name and a function's into the one name other providers see."""


# Built-in tools other providers have an equivalent of (their own web search).
_WEB_SEARCH = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26"})


def _tools(
    value: Any,
) -> tuple[list[ir.Tool], list[tuple[str, str]], list[tuple[str, str]]]:
    """Function tools, and the functions of ``namespace`` tools flattened into function tools
    named ``{namespace}__{function}``. ``web_search`` (with live web access) is returned as a
    hosted tool that providers with a web search of their own run; the other built-in tools
    are returned as dropped, for the provider side to leave out or refuse (``[routing]
    unsupported_tools``). ``custom`` (free-form) tools are refused: the model would answer them
    with text no other provider produces."""
    if value is None:
        return [], [], []
    if not isinstance(value, list):
        raise invalid_request("`tools` must be an array.", "tools")
    tools: list[ir.Tool] = []
    dropped: list[tuple[str, str]] = []
    hosted: list[tuple[str, str]] = []
    for i, tool in enumerate(value):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_request(f"`{path}` must be an object.", path)
        kind = tool.get("type")
        if kind == "function":
            tools.append(_function_tool(tool, path))
        elif kind == "namespace":
            tools.extend(_namespace_tools(tool, path))
        elif kind == "custom" or not isinstance(kind, str):
            raise invalid_request(
                f"Tool type {kind!r} is not supported for this model's provider; function, "
                "namespace and built-in tools are.",
                f"{path}.type",
            )
        elif kind in _WEB_SEARCH and tool.get("external_web_access") is not False:
            hosted.append((f"{path}.type", kind))  # offline (cache-only) search has no equal
        else:
            dropped.append((f"{path}.type", kind))
    return tools, dropped, hosted


def _function_tool(tool: dict[str, Any], path: str, prefix: str = "") -> ir.Tool:
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid_request(f"`{path}.parameters` must be an object.", f"{path}.parameters")
    if tool.get("strict") is not None:
        _bool(tool, "strict", f"{path}.strict")  # accepted, not enforced (see the top)
    return ir.Tool(
        name=prefix + _string(tool, "name", path),
        description=_string(tool, "description", path, required=False),
        parameters=parameters or {},
    )


def _namespace_tools(tool: dict[str, Any], path: str) -> list[ir.Tool]:
    namespace = _string(tool, "name", path)
    inner = tool.get("tools")
    if not isinstance(inner, list) or not inner:
        raise invalid_request(f"`{path}.tools` must be a non-empty array.", f"{path}.tools")
    out = []
    for j, sub in enumerate(inner):
        where = f"{path}.tools[{j}]"
        if not isinstance(sub, dict) or sub.get("type") != "function":
            raise invalid_request(
                "Only function tools are supported inside a namespace for this model's provider.",
                f"{where}.type",
            )
        out.append(_function_tool(sub, where, namespace + NAMESPACE_SEP))
    return out


def namespaced(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Flattened function name → (namespace, function) for the request's namespace tools, to
    give calls their ``namespace`` back."""
    names: dict[str, tuple[str, str]] = {}
    for tool in doc.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            space = str(tool.get("name"))
            for sub in tool.get("tools") or ():
                if isinstance(sub, dict) and isinstance(sub.get("name"), str):
                    names[f"{space}{NAMESPACE_SEP}{sub['name']}"] = (space, sub["name"])
    return names


def _tool_choice(value: Any) -> ir.ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "required", "none"):
        return ir.ToolChoice(mode=value)
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if isinstance(name, str) and name:
            return ir.ToolChoice(mode="tool", name=name)
    raise invalid_request(
        '`tool_choice` must be "auto", "required", "none" or {"type": "function", "name": …}.',
        "tool_choice",
    )


def _effort(value: Any) -> ir.Effort | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_request("`reasoning` must be an object.", "reasoning")
    _one_of(value, "summary", "reasoning.summary", _SUMMARIES)
    effort = value.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise invalid_request(
            f"`reasoning.effort` must be one of {', '.join(_EFFORTS)}.", "reasoning.effort"
        )
    return _EFFORTS[effort]


def _response_format(doc: dict[str, Any]) -> ir.ResponseFormat | None:
    """``text.format``: plain text, ``json_object``, or ``json_schema`` with its ``name``,
    ``schema``, ``description`` and ``strict`` (the Responses API puts them in the format
    itself, where Chat Completions nests them under ``json_schema``)."""
    text = doc.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid_request("`text` must be an object.", "text")
    _one_of(text, "verbosity", "text.verbosity", _VERBOSITIES)
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ir.ResponseFormat(type="json_object")
    if kind != "json_schema":
        raise invalid_request(
            "`text.format.type` must be one of text, json_object, json_schema.", "text.format.type"
        )
    assert isinstance(fmt, dict)
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid_request("`text.format.schema` must be an object.", "text.format.schema")
    return ir.ResponseFormat(
        type="json_schema",
        schema=schema,
        name=_string(fmt, "name", "text.format"),
        description=_string(fmt, "description", "text.format", required=False),
        strict=_optional_bool(fmt, "strict"),
    )


# -- answers ----------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(24).hex()


def _echo(doc: dict[str, Any]) -> dict[str, Any]:
    """The request settings a ``response`` object repeats back (what the SDK model expects)."""
    tools = [
        {
            "type": "function",
            "name": tool.get("name"),
            "description": tool.get("description"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict"),
        }
        if tool.get("type") == "function"
        else tool
        for tool in doc.get("tools") or ()
        if isinstance(tool, dict)
    ]
    text: dict[str, Any] = {"format": {"type": "text"}}
    asked = doc.get("text")
    if isinstance(asked, dict):
        if isinstance(asked.get("format"), dict):
            text["format"] = asked["format"]
        if asked.get("verbosity") is not None:
            text["verbosity"] = asked["verbosity"]
    reasoning = doc.get("reasoning") or {}
    metadata = doc.get("metadata")
    parallel = doc.get("parallel_tool_calls")
    return {
        "instructions": doc.get("instructions"),
        "max_output_tokens": doc.get("max_output_tokens"),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": None,  # a store put the history in input instead
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": doc.get("store") is True,  # a response store sets it to what it keeps
        "background": False,
        "temperature": doc.get("temperature"),
        "text": text,
        "tool_choice": doc.get("tool_choice") or "auto",
        "tools": tools,
        "top_p": doc.get("top_p"),
        "truncation": "disabled",
        "user": doc.get("user"),
    }


def _usage(usage: Usage | None, cost: int) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
        "cost": cost_json(cost),
    }


def _response(
    echo: dict[str, Any],
    *,
    rid: str,
    created_at: int,
    model: str,
    output: list[dict[str, Any]],
    finish_reason: str | None,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A whole ``response`` object; ``finish_reason=None`` means still in progress."""
    reason = _INCOMPLETE_REASONS.get(finish_reason or "")
    status = "in_progress" if finish_reason is None else "incomplete" if reason else "completed"
    return {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": model,
        "output": output,
        **echo,
        "usage": usage,
    }


def _message(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _reasoning(item_id: str, text: str, signature: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if signature:
        item["encrypted_content"] = signature
    return item


def _function_call(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    status: str,
    spaces: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    item = {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    if spaces and name in spaces:  # a flattened namespace function: its own two names back
        item["namespace"], item["name"] = spaces[name]
    return item


def _output(
    parts: list[ir.Part], spaces: dict[str, tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """IR answer parts as output items; a run of text parts is one message item."""
    items: list[dict[str, Any]] = []
    message: dict[str, Any] | None = None
    for part in parts:
        if isinstance(part, ir.Text):
            if message is None:
                message = _message(_new_id("msg_"), "", "completed")
                items.append(message)
            message["content"][0]["text"] += part.text
            continue
        message = None
        if isinstance(part, ir.Thinking):
            signature = REDACTED + part.redacted if part.redacted else part.signature
            items.append(_reasoning(_new_id("rs_"), part.text, signature))
        elif isinstance(part, ir.ToolCall):
            items.append(
                _function_call(
                    _new_id("fc_"), part.id, part.name, part.arguments, "completed", spaces
                )
            )
    return items


def render(answer: ir.ChatResponse, doc: dict[str, Any], cost: int) -> bytes:
    output = _output(answer.parts, namespaced(doc))
    if answer.finish_reason in _INCOMPLETE_REASONS and output and "status" in output[-1]:
        output[-1]["status"] = "incomplete"  # the item being generated when it stopped
    body = _response(
        _echo(doc),
        rid=_new_id("resp_"),
        created_at=int(time.time()),
        model=answer.model,
        output=output,
        finish_reason=answer.finish_reason,
        usage=_usage(answer.usage, cost),
    )
    return orjson.dumps(body)


# -- streams ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """An output item being streamed."""

    index: int
    kind: str  # message | reasoning | function_call
    id: str
    chunks: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    signature: str = ""
    part_open: bool = False  # reasoning: its summary part was announced
    done: bool = False
    wire: dict[str, Any] = field(default_factory=dict)  # the final shape, once done

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class ResponsesStreamRenderer:
    """IR events → typed Responses events, each with ``event:`` and a rising sequence_number.

    Message and reasoning items close when something else begins; function calls stay open
    until the answer finishes, so interleaved argument fragments still land in their item."""

    __slots__ = (
        "answer",
        "created_at",
        "current",
        "echo",
        "finish_reason",
        "items",
        "model",
        "out",
        "rid",
        "seq",
        "spaces",
        "started",
        "tools",
    )

    def __init__(self, doc: dict[str, Any], wants_usage: bool = True) -> None:
        # wants_usage is moot: a Responses stream always ends with the response and its usage.
        self.echo = _echo(doc)
        self.spaces = namespaced(doc)
        self.rid = _new_id("resp_")
        self.created_at = int(time.time())
        self.model = str(doc.get("model", ""))
        self.seq = 0
        self.started = False
        self.items: list[_Item] = []
        self.current: _Item | None = None  # the open message or reasoning item
        self.tools: dict[int, _Item] = {}  # open function calls by IR index
        self.finish_reason: str | None = None
        self.out: list[bytes] = []
        self.answer: dict[str, Any] | None = None  # the final response, for a response store

    # -- the StreamRenderer protocol ----------------------------------------------------------

    def render(self, events: list[ir.Event]) -> bytes:
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        return self._flush()

    def error(self, err: RouterError) -> bytes:
        """The error event, numbered after everything this renderer sent."""
        return self._flush() + stream_error(err, self.next_sequence_number())

    def finish(self, usage: Usage | None, cost_pico: int) -> bytes:
        self._start()
        self._close_all(self.finish_reason or "stop")
        reason = self.finish_reason or "stop"
        response = self._snapshot(reason, _usage(usage, cost_pico))
        self.answer = response
        kind = "response.incomplete" if reason in _INCOMPLETE_REASONS else "response.completed"
        self._emit(kind, response=response)
        return self._flush()

    def next_sequence_number(self) -> int:
        self.seq += 1
        return self.seq - 1

    # -- IR events ----------------------------------------------------------------------------

    def _on_start(self, event: ir.StreamStart) -> None:
        if not self.started and event.model:
            self.model = event.model
        self._start()

    def _on_text(self, event: ir.TextDelta) -> None:
        if not event.text:
            return
        self._start()
        item = self.current
        if item is None or item.kind != "message":
            item = self._open("message", "msg_")
            self._emit(
                "response.output_item.added",
                output_index=item.index,
                item=_message(item.id, "", "in_progress") | {"content": []},
            )
            self._emit(
                "response.content_part.added",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            )
        item.chunks.append(event.text)
        self._emit(
            "response.output_text.delta",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            delta=event.text,
            logprobs=[],
        )

    def _on_thinking(self, event: ir.ThinkingDelta) -> None:
        if not event.text and not event.signature:
            return
        self._start()
        item = self.current
        # Text after a signature is a new thinking block: a new reasoning item.
        if item is None or item.kind != "reasoning" or (event.text and item.signature):
            item = self._open("reasoning", "rs_")
            self._emit(
                "response.output_item.added",
                output_index=item.index,
                item=_reasoning(item.id, "", ""),
            )
        if event.text:
            if not item.part_open:
                item.part_open = True
                self._emit(
                    "response.reasoning_summary_part.added",
                    item_id=item.id,
                    output_index=item.index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            item.chunks.append(event.text)
            self._emit(
                "response.reasoning_summary_text.delta",
                item_id=item.id,
                output_index=item.index,
                summary_index=0,
                delta=event.text,
            )
        item.signature += event.signature

    def _on_tool_start(self, event: ir.ToolCallStart) -> None:
        self._start()
        self._open_call(event.index, event.id, event.name)

    def _on_tool_delta(self, event: ir.ToolCallDelta) -> None:
        if not event.arguments:
            return
        self._start()
        item = self.tools.get(event.index)
        if item is None:  # a parser that skipped the start: the call still needs an item
            item = self._open_call(event.index, _new_id("call_"), "")
        item.chunks.append(event.arguments)
        self._emit(
            "response.function_call_arguments.delta",
            item_id=item.id,
            output_index=item.index,
            delta=event.arguments,
        )

    def _on_finish(self, event: ir.Finish) -> None:
        self._start()
        self.finish_reason = event.finish_reason
        self._close_all(event.finish_reason)

    # -- items --------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.started:
            return
        self.started = True
        for kind in ("response.created", "response.in_progress"):
            self._emit(kind, response=self._snapshot(None, None))

    def _open(self, kind: str, prefix: str) -> _Item:
        self._close_current()
        item = _Item(len(self.items), kind, _new_id(prefix))
        self.items.append(item)
        if kind != "function_call":
            self.current = item
        return item

    def _open_call(self, index: int, call_id: str, name: str) -> _Item:
        item = self._open("function_call", "fc_")
        item.call_id, item.name = call_id, name
        self.tools[index] = item
        self._emit(
            "response.output_item.added",
            output_index=item.index,
            item=_function_call(item.id, call_id, name, "", "in_progress", self.spaces),
        )
        return item

    def _close_current(self) -> None:
        if self.current is not None:
            self._close(self.current, "completed")
            self.current = None

    def _close_all(self, finish_reason: str) -> None:
        open_items = [item for item in self.items if not item.done]
        self.current = None
        self.tools.clear()
        for item in open_items:
            # The item being generated when the limit hit is incomplete.
            cut = item is self.items[-1] and finish_reason in _INCOMPLETE_REASONS
            self._close(item, "incomplete" if cut else "completed")

    def _close(self, item: _Item, status: str) -> None:
        item.done = True
        text = item.text
        base = {"item_id": item.id, "output_index": item.index}
        if item.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._emit("response.output_text.done", **base, content_index=0, text=text, logprobs=[])
            self._emit("response.content_part.done", **base, content_index=0, part=part)
            item.wire = _message(item.id, text, status)
        elif item.kind == "reasoning":
            if item.part_open:
                self._emit(
                    "response.reasoning_summary_text.done", **base, summary_index=0, text=text
                )
                part = {"type": "summary_text", "text": text}
                self._emit(
                    "response.reasoning_summary_part.done", **base, summary_index=0, part=part
                )
            item.wire = _reasoning(item.id, text, item.signature)
        else:
            self._emit("response.function_call_arguments.done", **base, arguments=text)
            item.wire = _function_call(item.id, item.call_id, item.name, text, status, self.spaces)
        self._emit("response.output_item.done", output_index=item.index, item=item.wire)

    # -- output -------------------------------------------------------------------------------

    def _snapshot(self, finish_reason: str | None, usage: dict[str, Any] | None) -> dict[str, Any]:
        output = [item.wire for item in self.items] if finish_reason is not None else []
        return _response(
            self.echo,
            rid=self.rid,
            created_at=self.created_at,
            model=self.model,
            output=output,
            finish_reason=finish_reason,
            usage=usage,
        )

    def _emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": self.next_sequence_number(), **fields}
        self.out.append(sse.encode(orjson.dumps(payload), kind))

    def _flush(self) -> bytes:
        out = b"".join(self.out)
        self.out.clear()
        return out


_HANDLERS: dict[type, Callable[[ResponsesStreamRenderer, Any], None]] = {
    ir.StreamStart: ResponsesStreamRenderer._on_start,
    ir.TextDelta: ResponsesStreamRenderer._on_text,
    ir.ThinkingDelta: ResponsesStreamRenderer._on_thinking,
    ir.ToolCallStart: ResponsesStreamRenderer._on_tool_start,
    ir.ToolCallDelta: ResponsesStreamRenderer._on_tool_delta,
    ir.Finish: ResponsesStreamRenderer._on_finish,
}


def stream_error(err: RouterError, sequence_number: int = 0) -> bytes:
    """A mid-stream error: a Responses ``error`` event that also carries OpenAI's ``error``
    object, which makes the openai SDK raise ``APIError`` with the message (as it does for
    chat streams) instead of ending with no ``response.completed``."""
    payload = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": err.code,
        "message": err.message,
        "param": err.param,
        "error": {
            "message": err.message,
            "type": err.openai_type,
            "param": err.param,
            "code": err.code,
        },
    }
    return sse.encode(orjson.dumps(payload), "error")


# -- pass-through (OpenAI routes speak Responses themselves) -----------------------------------


class _InputDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class _WireUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None

    def normalize(self) -> Usage:
        inputs = self.input_tokens_details or _InputDetails()
        outputs = self.output_tokens_details or _OutputDetails()
        return Usage(
            prompt_tokens=self.input_tokens,
            completion_tokens=self.output_tokens,
            cached_tokens=inputs.cached_tokens,
            cache_write_tokens=inputs.cache_write_tokens,
            reasoning_tokens=outputs.reasoning_tokens,
        )


class _Body(msgspec.Struct):
    usage: _WireUsage | None = None


finish_json = finish_reading(_WireUsage)  # a native ``response`` object's usage


class _Event(msgspec.Struct):
    type: str = ""
    delta: Any = None
    response: _Body | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
# The events that end a stream: the last one carries the whole response and its usage.
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStreamRelay:
    """Relays a native Responses stream event by event. Usage comes with the final
    ``response.completed`` / ``response.incomplete`` / ``response.failed`` event, whose
    ``response.usage`` also gets ``cost``; the text deltas relayed are counted so a cut stream
    can still be charged. An ``error`` event (or ``response.failed``) is the upstream's
    failure, relayed as it is."""

    __slots__ = ("answer", "chars", "decoder", "failed", "finished", "rates", "usage")

    def __init__(self, wants_usage: bool, rates: Rates) -> None:
        self.decoder = sse.SSEDecoder()
        self.rates = rates
        self.usage: Usage | None = None
        self.finished = False
        self.failed = False
        self.chars = 0
        self.answer: dict[str, Any] | None = None  # the final response, for a response store

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._event(event) for event in self.decoder.feed(chunk)])

    def close(self) -> bytes:
        return b"".join([self._event(event) for event in self.decoder.close()])

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

    def _event(self, event: sse.SSEEvent) -> bytes:
        data = event.data
        try:
            parsed = _decode_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return sse.encode(data, event.event)  # not ours to judge: pass it on unchanged
        kind = parsed.type
        if isinstance(parsed.delta, str):
            self.chars += len(parsed.delta)
        elif kind in _FINAL:
            self.finished = True
            self.failed = kind == "response.failed"
            wire = parsed.response.usage if parsed.response is not None else None
            if wire is not None:
                self.usage = wire.normalize()
                doc = orjson.loads(data)
                doc["response"]["usage"]["cost"] = cost_json(self.rates.cost(self.usage))
                data = orjson.dumps(doc)
                self.answer = doc["response"]
        elif kind == "error":
            self.failed = True
        return sse.encode(data, event.event or kind or None)


RESPONSES = Dialect(
    name="openai.responses",
    kind="chat",
    parse=parse,
    error_body=error_body,
    stream_error=stream_error,
    finish_json=finish_json,
    stream_relay=ResponsesStreamRelay,
    to_ir=to_ir,
    render=render,
    renderer=ResponsesStreamRenderer,
)
