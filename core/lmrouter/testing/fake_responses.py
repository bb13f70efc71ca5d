"""The Responses API of :class:`~lmrouter.testing.fake_openai.FakeOpenAI` (``POST
/v1/responses``): what a pass-through to OpenAI must carry, built from OpenAI's published spec.

* Tools as OpenAI takes them: ``function``, ``namespace`` (function tools grouped under a name;
  a call to one comes back as a ``function_call`` with ``namespace`` and ``name``) and the
  built-in tools (``web_search`` …), which OpenAI runs itself and this fake accepts and never
  calls. A request with function tools (and ``tool_choice`` other than ``none``) is answered
  with a call to the first one, unless the input ends with a ``function_call_output``.
* Answers: the ``response`` object (``output`` items, ``usage`` with both details objects,
  the request's settings echoed), or with ``stream`` its typed events, each with ``event:`` and
  a rising ``sequence_number``, ending with ``response.completed`` carrying the usage.
* ``text.format`` ``json_schema`` is answered with JSON that fits the schema, ``json_object``
  with a JSON object.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from lmrouter.testing.fakeserver import (
    Event,
    ToolCall,
    content_text,
    sample_arguments,
    sample_json,
    split_text,
)

BUILT_IN = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "tool_search",
    }
)


class RequestError(Exception):
    """Answered as OpenAI's 400 with ``param``."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def functions(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The callable function tools as (namespace, tool), checking every tool's shape."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise RequestError("Invalid type for 'tools': expected an array.", "tools")
    found: list[tuple[str, dict[str, Any]]] = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            if not isinstance(tool.get("name"), str):
                raise RequestError(
                    f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name"
                )
            found.append(("", tool))
        elif kind == "namespace":
            inner = tool.get("tools")
            if not isinstance(tool.get("name"), str) or not isinstance(inner, list) or not inner:
                raise RequestError(f"Invalid namespace tool at 'tools[{i}]'.", f"tools[{i}]")
            found += [(tool["name"], t) for t in inner if t.get("type") == "function"]
        elif kind not in BUILT_IN and kind != "custom":
            raise RequestError(f"Invalid value: '{kind}'.", f"tools[{i}].type")
    return found


def _last_user_text(items: Any) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content_text(content)
    return ""


def answer(
    body: dict[str, Any],
    rid: str,
    item_id: str,
    call_id: str,
    size: int,
    *,
    text: str | None = None,
    tool_call: bool = True,
    call: ToolCall | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The finished output item and its pieces (text, or argument fragments); ``text``,
    ``tool_call`` and ``call`` as in :class:`~lmrouter.testing.fake_openai.Behavior`."""
    model_input = body.get("input")
    if not isinstance(model_input, str | list) or not model_input:
        raise RequestError("Missing required parameter: 'input'.", "input")
    callable_ = functions(body)
    ended_by_output = isinstance(model_input, list) and (
        isinstance(model_input[-1], dict) and model_input[-1].get("type") == "function_call_output"
    )
    if tool_call and callable_ and body.get("tool_choice") != "none" and not ended_by_output:
        namespace, tool = callable_[0]
        arguments = orjson.dumps(sample_arguments(tool.get("parameters"))).decode()
        scripted = [(ns, t) for ns, t in callable_ if call is not None and t["name"] == call.name]
        if call is not None and scripted:
            (namespace, tool), arguments = scripted[0], orjson.dumps(call.arguments).decode()
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "call_id": call_id,
            "name": tool["name"],
            "arguments": arguments,
        }
        if namespace:
            item["namespace"] = namespace
        return item, split_text(arguments, size)
    if text is None:
        text = "Hello! You said: " + _last_user_text(model_input)[:40]
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        text = sample_json(fmt.get("schema") or {})
    elif fmt.get("type") == "json_object":
        text = orjson.dumps({"text": text}).decode()
    item = {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    return item, split_text(text, size)


def response_object(
    body: dict[str, Any], rid: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    done = usage is not None
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if done else "in_progress",
        "completed_at": int(time.time()) if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
    }


def usage(body: dict[str, Any], output_tokens: int, cached: int = 0) -> dict[str, Any]:
    prompt = len(orjson.dumps(body.get("input"))) // 4 + len(orjson.dumps(body.get("tools") or []))
    prompt += len(body.get("instructions") or "") // 4
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output_tokens,
    }


def stream_events(
    body: dict[str, Any], rid: str, item: dict[str, Any], pieces: list[str], final: dict[str, Any]
) -> list[Event]:
    """The typed events of one answer, content deltas marked (for ``drop_after_chunks``)."""
    events: list[Event] = []

    def emit(kind: str, content: bool = False, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": len(events), **fields}
        events.append(
            (f"event: {kind}\ndata: ".encode() + orjson.dumps(payload) + b"\n\n", content)
        )

    start = response_object(body, rid, [], None)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    base = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "message":
        emit(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        )
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        emit("response.content_part.added", **base, content_index=0, part=part)
        for piece in pieces:
            emit(
                "response.output_text.delta",
                True,
                **base,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        text = "".join(pieces)
        emit("response.output_text.done", **base, content_index=0, text=text, logprobs=[])
        emit("response.content_part.done", **base, content_index=0, part={**part, "text": text})
    else:
        emit(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "arguments": ""},
        )
        for piece in pieces:
            emit("response.function_call_arguments.delta", True, **base, delta=piece)
        emit("response.function_call_arguments.done", **base, arguments="".join(pieces))
    emit("response.output_item.done", output_index=0, item=item)
    emit("response.completed", response=final)
    return events


def input_items(body: dict[str, Any], new_id: Any) -> list[dict[str, Any]]:
    """A request's ``input`` as the items OpenAI lists for it, each with an id."""
    value = body.get("input")
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for raw in value if isinstance(value, list) else ():
        item = dict(raw)
        if "role" in item:
            item.setdefault("type", "message")
            if isinstance(item.get("content"), str):
                item["content"] = [{"type": "input_text", "text": item["content"]}]
        item.setdefault("id", new_id("msg_", 50))
        items.append(item)
    return items
