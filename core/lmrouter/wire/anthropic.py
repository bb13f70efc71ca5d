"""Anthropic's Messages wire format, shared by the inbound ``anthropic.messages`` dialect and
the anthropic provider plugin: the usage object, the stop reasons, and the content blocks both
write (a tool call, a thinking block)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from lmrouter import ir
from lmrouter.usage import Usage

__all__ = ["TO_FINISH", "WireUsage", "thinking_block", "tool_input", "tool_use_block"]


class _OutputDetails(msgspec.Struct):
    thinking_tokens: int | None = None


class WireUsage(msgspec.Struct, omit_defaults=True):
    """Anthropic's usage object; ``None`` is "not reported" (``message_delta`` may omit the
    input and cache counts, and then the ones from ``message_start`` stand)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None

    def merge(self, later: WireUsage) -> WireUsage:
        """``later`` (cumulative) over ``self``: reported counts win, absent ones stay."""

        def pick(name: str) -> Any:
            value = getattr(later, name)
            return getattr(self, name) if value is None else value

        return WireUsage(*(pick(name) for name in WireUsage.__struct_fields__))

    def normalize(self) -> Usage:
        written = self.cache_creation_input_tokens or 0
        read = self.cache_read_input_tokens or 0
        details = self.output_tokens_details
        return Usage(
            prompt_tokens=(self.input_tokens or 0) + written + read,
            completion_tokens=self.output_tokens or 0,
            cached_tokens=read,
            cache_write_tokens=written,
            reasoning_tokens=(details.thinking_tokens if details else None) or 0,
        )


# Anthropic ``stop_reason`` → the IR's finish reason.
TO_FINISH: dict[str, ir.FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server-tool turn paused; for the caller the answer simply ends
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON text as the object Anthropic wants. Text that is not a JSON object
    (a model's broken output) becomes ``{}``: Anthropic accepts nothing else there."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_use_block(part: ir.ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": part.id,
        "name": part.name,
        "input": tool_input(part.arguments),
    }


def thinking_block(part: ir.Thinking) -> dict[str, Any]:
    """A thinking part as Anthropic carries it: redacted (opaque data) or text with its
    signature."""
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.redacted}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}
