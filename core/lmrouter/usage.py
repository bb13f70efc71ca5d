"""Token usage in one shape, whatever the provider reported."""

from __future__ import annotations

import msgspec


class Usage(msgspec.Struct, kw_only=True):
    """``cached_tokens`` and ``cache_write_tokens`` are parts of ``prompt_tokens``;
    ``reasoning_tokens`` is part of ``completion_tokens``. ``estimated`` marks counts the router
    made up from what it saw (a stream cut before the provider reported usage)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_tokens(chars: int) -> int:
    """A deliberately generous estimate (about 4 characters a token) for holds and cut streams."""
    return (chars + 3) // 4


# An image, audio clip or file in a prompt counts as at least this many tokens: given by URL it
# is a few dozen bytes of the body, but the provider bills it as hundreds or thousands of tokens
# (a large image: about 1,600 at Anthropic, up to about 2,500 at OpenAI). A floor, not a price:
# settlement charges what the provider reports.
PART_FLOOR_TOKENS = 3000
PART_FLOOR_CHARS = 4 * PART_FLOOR_TOKENS

# Parts of a message's ``content`` that are not text, in every dialect's names (OpenAI Chat,
# Responses, Anthropic).
_NON_TEXT = frozenset(
    {
        "image_url",
        "input_audio",
        "file",
        "image",
        "document",
        "input_image",
        "input_file",
        "audio",
    }
)


def non_text_parts(messages: object) -> int:
    """How many non-text parts ``messages`` (a dialect's list of messages or input items) has,
    one level of nesting included (an Anthropic ``tool_result`` holding an image). A plain
    string content costs one type check per message: this runs on every request."""
    if not isinstance(messages, list):
        return 0
    count = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict):
                if part.get("type") in _NON_TEXT:
                    count += 1
                elif isinstance(part.get("content"), list):
                    count += non_text_parts([part])
    return count


def prompt_chars(body: bytes, messages: object) -> int:
    """The size the prompt estimate starts from: the body, plus the floor for each non-text
    part. A body with no ``"type"`` key (plain text messages, the usual request) skips the
    walk; a key spelled with escapes would contain ``\\u``, so it cannot slip past."""
    if b'"type"' not in body and b"\\u" not in body:
        return len(body)
    return len(body) + non_text_parts(messages) * PART_FLOOR_CHARS


def held_usage(prompt_chars: int, output_tokens: int) -> Usage:
    """The most a request could have used: what a credit hold is computed from, and what a
    request is charged when its real usage cannot be learned (a client that left before the
    provider reported it)."""
    return Usage(
        prompt_tokens=estimate_tokens(prompt_chars),
        completion_tokens=output_tokens,
        estimated=True,
    )
