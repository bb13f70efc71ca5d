"""The internal representation: one shape for a chat request, its answer and its stream.

When the caller's dialect is not one the provider speaks natively, the request goes
dialect → IR → provider and the answer comes back provider → IR → dialect: one converter per
dialect and one per provider, never one per pair. Same-dialect traffic never comes here.

Conventions every converter keeps:
- tool results are parts of a *user* message (as in Anthropic and Gemini); OpenAI's ``role:
  "tool"`` messages become such parts, and consecutive same-role messages merge;
- tool-call arguments are the JSON *text* the model produced (OpenAI's form); providers that
  take objects decode it, and an object coming back is encoded once;
- ``finish_reason`` uses OpenAI's words (stop, length, tool_calls, content_filter);
  ``stop_sequence`` keeps which stop sequence ended it, when the provider says;
- usage is :class:`lmrouter.usage.Usage` (cached and cache-write tokens are parts of the prompt);
- a ``response_format`` is never dropped: a provider without a native form for it asks for it
  through a forced tool (:mod:`lmrouter.structured`) and answers with the tool's input as text;
- nor is a file: images are :class:`Image`, every other file a :class:`File`, and a provider
  with no form for one raises :class:`~lmrouter.CannotServe` (the next route is tried);
- ``n > 1`` answers carry the other choices in :attr:`ChatResponse.choices`, and stream events
  their choice's index; a provider without several choices raises ``CannotServe`` too.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import Any, Literal

import msgspec

from lmrouter.errors import CannotServe
from lmrouter.usage import Usage

# -- content ---------------------------------------------------------------------------------


class Text(msgspec.Struct, tag="text", kw_only=True):
    text: str
    cache: bool = False  # an Anthropic cache breakpoint ends here


class Image(msgspec.Struct, tag="image", kw_only=True):
    """Either a URL (``http(s)://``) or base64 ``data`` with its ``media_type``."""

    url: str = ""
    data: str = ""
    media_type: str = ""


class File(msgspec.Struct, tag="file", kw_only=True):
    """A document or media file that is not an image: a PDF, a text document, audio, video.

    One of: base64 ``data`` with its ``media_type``; ``text`` (a text document, e.g. Anthropic's
    plain-text source, kept as text); a public ``url``; or ``file_id``, a file held by one
    provider (``file_owner``: "openai" for ``file-…`` ids, "google" for Gemini's Files API and
    ``gs://`` URIs) that only that provider can read. ``name`` is its filename or title;
    ``context`` and ``citations`` are Anthropic's document options, kept for its routes."""

    media_type: str = ""
    data: str = ""
    text: str | None = None
    url: str = ""
    file_id: str = ""
    file_owner: str = ""
    name: str = ""
    context: str = ""
    citations: bool = False
    param: str = ""  # where the caller put it (``messages[2].content[1]``), for errors

    def what(self) -> str:
        """How an error names it: the file id and who holds it, else its type."""
        if self.file_id:
            return f"a file held by {self.file_owner or 'another provider'} ({self.file_id!r})"
        return f"a file of type {self.media_type or 'unknown'!r}"

    def cannot_serve(self, why: str) -> CannotServe:
        """The error that skips a route whose provider has no form for this file."""
        where = self.param or "messages"
        return CannotServe(f"{where}: {self.what()} {why}", where)

    def decoded_text(self) -> str | None:
        """The document as text, when it is one (``text``, or base64 ``data`` of a ``text/*``
        type that decodes as UTF-8)."""
        if self.text is not None:
            return self.text
        if self.data and self.media_type.startswith("text/"):
            try:
                return base64.b64decode(self.data).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
        return None


def media_part(
    media_type: str, *, data: str = "", url: str = "", name: str = "", param: str = ""
) -> Image | File:
    """Base64 data or a URL as an :class:`Image` when its type is an image's, else a
    :class:`File`: every converter already knows how to send images."""
    media_type = media_type.strip().lower() or guess_type(name or url.split("?", 1)[0])
    if media_type.startswith("image/"):
        return Image(data=data, url=url, media_type=media_type)
    return File(media_type=media_type, data=data, url=url, name=name, param=param)


def guess_type(name: str) -> str:
    """A media type from a file name or URL path ("" when it says none)."""
    return mimetypes.guess_type(name)[0] or "" if name else ""


class ToolCall(msgspec.Struct, tag="tool_call", kw_only=True):
    id: str
    name: str
    arguments: str = "{}"  # JSON text


class ToolResult(msgspec.Struct, tag="tool_result", kw_only=True):
    id: str  # the ToolCall.id it answers
    content: list[Text | Image] = []
    is_error: bool = False
    name: str = ""  # the called function's name, when known (Gemini needs it)


class Thinking(msgspec.Struct, tag="thinking", kw_only=True):
    text: str = ""
    signature: str = ""  # Anthropic's opaque signature; must go back unchanged
    redacted: str = ""  # Anthropic redacted_thinking data


Part = Text | Image | File | ToolCall | ToolResult | Thinking
Role = Literal["user", "assistant"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
Effort = Literal["minimal", "low", "medium", "high"]


class Message(msgspec.Struct, kw_only=True):
    role: Role
    parts: list[Part]


class Tool(msgspec.Struct, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] = {}  # JSON Schema of the arguments


class ToolChoice(msgspec.Struct, kw_only=True):
    mode: Literal["auto", "required", "none", "tool"] = "auto"
    name: str = ""  # with mode "tool"


class ResponseFormat(msgspec.Struct, kw_only=True):
    """Structured output: the answer's text is JSON (``json_object``), or JSON that follows
    ``schema`` (``json_schema``; ``strict`` as the caller asked, ``None`` when unsaid)."""

    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str = "response"
    description: str = ""
    strict: bool | None = None


class ChatRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Message]
    system: list[Text] = []
    tools: list[Tool] = []
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = []
    stream: bool = False
    n: int = 1  # choices asked for: the answer's ``choices`` holds n - 1 beyond the first
    reasoning_effort: Effort | None = None
    thinking_budget: int | None = None  # tokens; 0 turns reasoning off where a model allows
    user: str | None = None
    response_format: ResponseFormat | None = None
    # Hosted tools (run by the caller's provider, e.g. OpenAI's web_search) that no IR tool can
    # stand for, as (field path, tool type): left out, or refused, by the operator's choice.
    dropped_tools: list[tuple[str, str]] = []
    # Hosted tools with an equivalent on other providers, by the IR's name ("web_search"), as
    # (field path, the caller's tool type): a provider that has it runs its own.
    hosted_tools: list[tuple[str, str]] = []


class Choice(msgspec.Struct, kw_only=True):
    """One more answer to a request with ``n > 1`` (OpenAI's ``choices``, Gemini's
    ``candidates``)."""

    parts: list[Part]
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None


class ChatResponse(msgspec.Struct, kw_only=True):
    """The answer: the first choice's content, and with ``n > 1`` the others in ``choices``."""

    id: str
    model: str
    parts: list[Part]
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None
    usage: Usage | None = None
    choices: list[Choice] = []  # choices 1 … n-1

    @classmethod
    def of_choices(
        cls, id: str, model: str, choices: list[Choice], usage: Usage | None
    ) -> ChatResponse:
        """An answer from its choices in order (none: an empty answer)."""
        first, *others = choices or [Choice(parts=[])]
        return cls(
            id=id,
            model=model,
            parts=first.parts,
            finish_reason=first.finish_reason,
            stop_sequence=first.stop_sequence,
            usage=usage,
            choices=others,
        )

    def all_choices(self) -> list[Choice]:
        first = Choice(
            parts=self.parts, finish_reason=self.finish_reason, stop_sequence=self.stop_sequence
        )
        return [first, *self.choices]


# -- stream events ---------------------------------------------------------------------------
# A provider's stream parser turns bytes into these; a dialect's renderer turns them into bytes.


class StreamStart(msgspec.Struct, tag="start", kw_only=True):
    id: str
    model: str


# ``choice``: which of the ``n`` answers an event belongs to (0 unless the request asked for
# several; the events of different choices may interleave).


class TextDelta(msgspec.Struct, tag="text_delta", kw_only=True):
    text: str
    choice: int = 0


class ThinkingDelta(msgspec.Struct, tag="thinking_delta", kw_only=True):
    text: str = ""
    signature: str = ""
    choice: int = 0


class ToolCallStart(msgspec.Struct, tag="tool_call_start", kw_only=True):
    index: int  # position among this answer's tool calls, from 0
    id: str
    name: str
    choice: int = 0


class ToolCallDelta(msgspec.Struct, tag="tool_call_delta", kw_only=True):
    index: int
    arguments: str
    choice: int = 0


class UsageUpdate(msgspec.Struct, tag="usage", kw_only=True):
    usage: Usage  # cumulative: the latest one is the whole request's


class Finish(msgspec.Struct, tag="finish", kw_only=True):
    """One choice has ended (with ``n > 1``, one per choice)."""

    finish_reason: FinishReason
    stop_sequence: str | None = None
    choice: int = 0


class StreamError(msgspec.Struct, tag="error", kw_only=True):
    message: str
    status: int = 502  # what the error would have been before the first byte


Event = (
    StreamStart
    | TextDelta
    | ThinkingDelta
    | ToolCallStart
    | ToolCallDelta
    | UsageUpdate
    | Finish
    | StreamError
)


# -- embeddings ------------------------------------------------------------------------------


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: str
    inputs: list[str]
    dimensions: int | None = None


class EmbeddingResponse(msgspec.Struct, kw_only=True):
    model: str
    vectors: list[list[float]]
    usage: Usage | None = None
