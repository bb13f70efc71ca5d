"""Gemini's ``generateContent`` wire format, shared by the inbound ``gemini.generate`` dialect
and the google (and vertex) provider plugins: the parts of Gemini's answers the router reads
(msgspec decodes only these fields)."""

from __future__ import annotations

from typing import Any

import msgspec

from lmrouter.usage import Usage

__all__ = [
    "BatchEmbeddings",
    "Candidate",
    "Content",
    "Embedding",
    "Error",
    "ErrorBody",
    "FunctionCall",
    "Part",
    "PromptFeedback",
    "Response",
    "UsageMetadata",
    "decode_embeddings",
    "decode_error",
    "decode_response",
]


class FunctionCall(msgspec.Struct, rename="camel"):
    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    function_call: FunctionCall | None = None


class Content(msgspec.Struct, rename="camel"):
    parts: list[Part] = []
    role: str | None = None


class Candidate(msgspec.Struct, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0

    def normalize(self) -> Usage:
        """Gemini counts thoughts and built-in tool prompts apart from candidates and prompt
        (``totalTokenCount`` is the sum of all four); the IR counts them in."""
        return Usage(
            prompt_tokens=self.prompt_token_count + self.tool_use_prompt_token_count,
            completion_tokens=self.candidates_token_count + self.thoughts_token_count,
            cached_tokens=self.cached_content_token_count,
            reasoning_tokens=self.thoughts_token_count,
        )


class PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class Error(msgspec.Struct, rename="camel"):
    code: int = 0
    message: str = ""
    status: str = ""
    details: list[Any] = []

    def describe(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


class Response(msgspec.Struct, rename="camel"):
    candidates: list[Candidate] = []
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: Error | None = None


class Embedding(msgspec.Struct):
    values: list[float] = []


class BatchEmbeddings(msgspec.Struct):
    embeddings: list[Embedding] = []


class ErrorBody(msgspec.Struct):
    error: Error


decode_response = msgspec.json.Decoder(Response).decode
decode_embeddings = msgspec.json.Decoder(BatchEmbeddings).decode


def decode_error(body: bytes) -> Error | None:
    """Gemini's ``{"error": {code, message, status}}`` — wrapped in a JSON array when it comes
    from ``streamGenerateContent`` without ``alt=sse``."""
    try:
        doc = msgspec.json.decode(body, type=ErrorBody | list[ErrorBody])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(doc, list):
        return doc[0].error if doc else None
    return doc.error
