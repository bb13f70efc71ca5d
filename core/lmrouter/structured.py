"""Structured output through a forced tool, for a provider or model without a native form of it.

The request gets one more tool, :data:`ANSWER_TOOL`, whose input schema is the wanted answer's,
and a tool choice that makes the model call a tool. The call's input is then the answer's text:
:func:`from_tool_answer` turns a whole answer back, :class:`ToolAnswerStream` a stream (the
input's JSON fragments become text deltas). Tool inputs are JSON objects, so a schema whose root
is not an object is asked for as ``{"value": …}`` and unwrapped on the way back (a stream of
such an answer is sent as one text delta at its end).

This keeps a schema from ever being dropped on its way to a provider that cannot take it as it
is (a fallback that silently returns prose is what users of other gateways complain about).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from lmrouter import ir

if TYPE_CHECKING:
    from lmrouter.dialects import StreamParser

ANSWER_TOOL = "json_answer"
_DESCRIPTION = (
    "Give your final answer by calling this tool: its input is the answer, as JSON that follows "
    "the input schema."
)
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def wrapped(fmt: ir.ResponseFormat) -> bool:
    """Whether the answer's root is not an object and travels as ``{"value": …}``."""
    schema = fmt.schema
    if fmt.type != "json_schema" or not schema:
        return False
    kind = schema.get("type")
    return kind != "object" and not (kind is None and "properties" in schema)


def answer_tool(fmt: ir.ResponseFormat) -> ir.Tool:
    schema = fmt.schema if fmt.type == "json_schema" and fmt.schema else _ANY_OBJECT
    if wrapped(fmt):
        schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    description = f"{_DESCRIPTION} {fmt.description}".strip() if fmt.description else _DESCRIPTION
    return ir.Tool(name=ANSWER_TOOL, description=description, parameters=schema)


def as_tool_request(request: ir.ChatRequest) -> ir.ChatRequest:
    """``request`` asking for its structured answer through :data:`ANSWER_TOOL`. The caller's own
    tools stay callable (any tool must then be called) unless its tool choice was ``none``; a
    caller's named tool choice stands (that tool is called first, the answer comes later)."""
    fmt = request.response_format
    assert fmt is not None
    choice = request.tool_choice
    tools = request.tools
    if not tools or (choice is not None and choice.mode == "none"):
        tools, choice = [], ir.ToolChoice(mode="tool", name=ANSWER_TOOL)
    elif choice is None or choice.mode != "tool":
        choice = ir.ToolChoice(mode="required")
    return msgspec.structs.replace(
        request, tools=[*tools, answer_tool(fmt)], tool_choice=choice, response_format=None
    )


def answer_text(arguments: str, fmt: ir.ResponseFormat) -> str:
    """The answer's JSON text from the answer tool's input."""
    if not wrapped(fmt):
        return arguments
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and "value" in value:
        return orjson.dumps(value["value"]).decode()
    return arguments


def from_tool_answer(answer: ir.ChatResponse, fmt: ir.ResponseFormat) -> ir.ChatResponse:
    """A whole answer with the answer tool's call turned into its text (in every choice)."""
    first, *others = [_choice_from_tool(choice, fmt) for choice in answer.all_choices()]
    return msgspec.structs.replace(
        answer, parts=first.parts, finish_reason=first.finish_reason, choices=others
    )


def _choice_from_tool(choice: ir.Choice, fmt: ir.ResponseFormat) -> ir.Choice:
    parts: list[ir.Part] = []
    answered = False
    for part in choice.parts:
        if isinstance(part, ir.ToolCall) and part.name == ANSWER_TOOL and not answered:
            answered = True
            parts.append(ir.Text(text=answer_text(part.arguments, fmt)))
        else:
            parts.append(part)
    finish = choice.finish_reason
    if answered and finish == "tool_calls" and not any(isinstance(p, ir.ToolCall) for p in parts):
        finish = "stop"
    return msgspec.structs.replace(choice, parts=parts, finish_reason=finish)


class ToolAnswerStream:
    """A provider's stream parser whose answer-tool call comes out as text deltas; the other
    tool calls keep their order, renumbered from 0."""

    __slots__ = ("answer", "buffer", "fmt", "indexes", "parser")

    def __init__(self, parser: StreamParser, fmt: ir.ResponseFormat) -> None:
        self.parser = parser
        self.fmt = fmt
        self.answer: int | None = None  # the upstream index of the answer tool's call
        self.indexes: dict[int, int] = {}  # other calls: upstream index → ours
        self.buffer: list[str] = []  # a wrapped answer, sent whole at the end

    def feed(self, chunk: bytes) -> list[ir.Event]:
        return self._convert(self.parser.feed(chunk))

    def close(self) -> list[ir.Event]:
        return self._convert(self.parser.close())

    def _convert(self, events: list[ir.Event]) -> list[ir.Event]:
        out: list[ir.Event] = []
        for event in events:
            if isinstance(event, ir.ToolCallStart):
                if event.name == ANSWER_TOOL and self.answer is None:
                    self.answer = event.index
                    continue
                ours = self.indexes.setdefault(event.index, len(self.indexes))
                out.append(ir.ToolCallStart(index=ours, id=event.id, name=event.name))
            elif isinstance(event, ir.ToolCallDelta):
                if event.index == self.answer:
                    if wrapped(self.fmt):
                        self.buffer.append(event.arguments)
                    elif event.arguments:
                        out.append(ir.TextDelta(text=event.arguments))
                    continue
                index = self.indexes.get(event.index, event.index)
                out.append(ir.ToolCallDelta(index=index, arguments=event.arguments))
            elif isinstance(event, ir.Finish):
                if self.buffer:
                    text = answer_text("".join(self.buffer), self.fmt)
                    self.buffer.clear()
                    out.append(ir.TextDelta(text=text))
                answered = self.answer is not None and not self.indexes
                if event.finish_reason == "tool_calls" and answered:
                    event = ir.Finish(finish_reason="stop", stop_sequence=event.stop_sequence)
                out.append(event)
            else:
                out.append(event)
        return out
