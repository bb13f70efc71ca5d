"""The prompt estimate behind credit holds: non-text parts count at a floor each, in every
dialect's shape, whatever their size in the body (an image by URL is a few dozen bytes)."""

from __future__ import annotations

import orjson

from lmrouter.dialects.anthropic import parse_messages
from lmrouter.dialects.openai import parse_chat
from lmrouter.dialects.responses import parse
from lmrouter.usage import PART_FLOOR_CHARS, non_text_parts

URL = "https://example.com/a.png"


def test_openai_chat_images_audio_and_files_count_at_the_floor() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": URL}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ]
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": content}]})
    assert parse_chat(body).prompt_chars == len(body) + 3 * PART_FLOOR_CHARS
    text_only = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert parse_chat(text_only).prompt_chars == len(text_only)


def test_anthropic_images_count_inside_tool_results_too() -> None:
    image = {"type": "image", "source": {"type": "url", "url": URL}}
    messages = [
        {"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t", "content": [image]}],
        },
    ]
    body = orjson.dumps({"model": "m", "max_tokens": 5, "messages": messages})
    assert parse_messages(body).prompt_chars == len(body) + 2 * PART_FLOOR_CHARS


def test_responses_input_images_and_files_count() -> None:
    item = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Read these"},
            {"type": "input_image", "image_url": URL},
            {"type": "input_file", "file_id": "file-1"},
        ],
    }
    body = orjson.dumps({"model": "m", "input": [item]})
    assert parse(body).prompt_chars == len(body) + 2 * PART_FLOOR_CHARS
    assert non_text_parts("a plain string input") == 0


def test_a_type_key_spelled_with_escapes_still_counts() -> None:
    """The walk is skipped for bodies without a ``"type"`` key; JSON may spell the key with
    escapes, and that must not make an image free again."""
    part = b'{"\\u0074ype": "image_url", "image_url": {"url": "' + URL.encode() + b'"}}'
    body = b'{"model": "m", "messages": [{"role": "user", "content": [' + part + b"]}]}"
    assert orjson.loads(body)["messages"][0]["content"][0]["type"] == "image_url"
    assert parse_chat(body).prompt_chars == len(body) + PART_FLOOR_CHARS
