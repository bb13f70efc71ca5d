"""ConverseStream as IR events: binary ``application/vnd.amazon.eventstream`` messages, framed
and checksummed by botocore's :class:`~botocore.eventstream.EventStreamBuffer`, carrying JSON.

Events, in order: ``messageStart``, per content block ``contentBlockStart`` (tool use only),
``contentBlockDelta`` (text, tool-input JSON fragments, reasoning text or signature) and
``contentBlockStop``, then ``messageStop`` (the stop reason) and ``metadata`` (usage). An
``exception`` message (``modelStreamErrorException``, ``internalServerException``,
``throttlingException``, ``validationException``, ``serviceUnavailableException``) ends the
stream with an error; a frame that fails its checksum does too.
"""

from __future__ import annotations

from typing import Any

import msgspec
from botocore.eventstream import EventStreamBuffer, ParserError

from lmrouter import ir
from lmrouter_bedrock.converse import TO_FINISH, WireUsage

# An in-stream exception → the status it would have had before the first byte: the caller's
# own mistakes stay theirs, the rest is the upstream's failure (502).
STREAM_ERROR_STATUS = {"validationException": 400}


class _ToolStart(msgspec.Struct, rename="camel"):
    tool_use_id: str = ""
    name: str = ""


class _Start(msgspec.Struct, rename="camel"):
    tool_use: _ToolStart | None = None


class _ToolDelta(msgspec.Struct):
    input: str = ""


class _ReasoningDelta(msgspec.Struct, rename="camel"):
    text: str = ""
    signature: str = ""
    redacted_content: str = ""


class _Delta(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _ToolDelta | None = None
    reasoning_content: _ReasoningDelta | None = None


class _Event(msgspec.Struct, rename="camel"):
    content_block_index: int = 0
    start: _Start | None = None
    delta: _Delta | None = None
    stop_reason: str = ""
    usage: WireUsage | None = None
    message: str = ""


_decode = msgspec.json.Decoder(_Event).decode


class ConverseStreamParser:
    """Tool calls are numbered among tool-use blocks only, as the IR wants. ``redact`` names
    secrets that must never reach a caller through an error's message."""

    __slots__ = ("buffer", "done", "id", "model", "redact", "started", "tools")

    def __init__(self, id: str, model: str, redact: tuple[str, ...] = ()) -> None:
        self.buffer = EventStreamBuffer()
        self.id = id
        self.model = model
        self.redact = redact
        self.started = False
        self.done = False  # an error ended the stream: nothing after it counts
        self.tools: dict[int, int] = {}  # content block index → IR tool index

    def feed(self, chunk: bytes) -> list[ir.Event]:
        out: list[ir.Event] = []
        if self.done:
            return out
        self.buffer.add_data(chunk)
        try:
            for message in self.buffer:
                self._message(message.headers, message.payload, out)
                if self.done:
                    break
        except ParserError as exc:  # a corrupt frame: the rest cannot be trusted
            self.done = True
            out.append(ir.StreamError(message=f"unreadable event stream ({type(exc).__name__})"))
        return out

    def close(self) -> list[ir.Event]:
        return []

    def _message(self, headers: dict[str, Any], payload: bytes, out: list[ir.Event]) -> None:
        kind = headers.get(":message-type")
        if kind in ("exception", "error"):
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "error")
            try:
                said = _decode(payload).message
            except (msgspec.DecodeError, msgspec.ValidationError):
                said = ""
            text = str(headers.get(":error-message") or said or name)
            for secret in self.redact:
                if secret:
                    text = text.replace(secret, "***")
            self.done = True
            status = STREAM_ERROR_STATUS.get(name, 502)
            out.append(ir.StreamError(message=f"{name}: {text}", status=status))
            return
        try:
            event = _decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        event_type = headers.get(":event-type")
        if not self.started:
            self.started = True
            out.append(ir.StreamStart(id=self.id, model=self.model))
        if event_type == "contentBlockStart":
            use = event.start.tool_use if event.start else None
            if use is not None:
                index = len(self.tools)
                self.tools[event.content_block_index] = index
                out.append(ir.ToolCallStart(index=index, id=use.tool_use_id, name=use.name))
        elif event_type == "contentBlockDelta" and event.delta is not None:
            self._delta(event.content_block_index, event.delta, out)
        elif event_type == "messageStop":
            out.append(ir.Finish(finish_reason=TO_FINISH.get(event.stop_reason, "stop")))
        elif event_type == "metadata" and event.usage is not None:
            out.append(ir.UsageUpdate(usage=event.usage.normalize()))

    def _delta(self, block: int, delta: _Delta, out: list[ir.Event]) -> None:
        if delta.text:
            out.append(ir.TextDelta(text=delta.text))
        elif delta.tool_use is not None and delta.tool_use.input:
            index = self.tools.get(block)
            if index is not None:
                out.append(ir.ToolCallDelta(index=index, arguments=delta.tool_use.input))
        elif (reasoning := delta.reasoning_content) is not None and (
            reasoning.text or reasoning.signature
        ):
            out.append(ir.ThinkingDelta(text=reasoning.text, signature=reasoning.signature))
