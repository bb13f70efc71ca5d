"""Files and several choices through the IR, unit by unit: each dialect's file parts in, each
provider's native form out, and round trips (IR → a provider's wire form → that dialect's
reader → IR) over generated files, so that nothing of a file is lost or altered on the way.
Where a provider has no form for a file, its converter raises :class:`CannotServe` (the proxy
then tries the next route) naming where the caller put it."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmrouter import CannotServe, ir
from lmrouter.dialects import anthropic as anthropic_dialect
from lmrouter.dialects import gemini as gemini_dialect
from lmrouter.dialects import openai as openai_dialect
from lmrouter.dialects import responses as responses_dialect
from lmrouter.usage import PART_FLOOR_CHARS
from lmrouter_anthropic import messages_request
from lmrouter_google import chat as google_chat
from lmrouter_openai.chat import parse_completion, request_body

blobs = st.binary(min_size=1, max_size=200).map(lambda b: base64.b64encode(b).decode())
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=200)


def request(*parts: ir.Part, n: int = 1) -> ir.ChatRequest:
    return ir.ChatRequest(
        model="m", messages=[ir.Message(role="user", parts=[ir.Text(text="hi"), *parts])], n=n
    )


def files_of(req: ir.ChatRequest) -> list[ir.Part]:
    return [p for m in req.messages for p in m.parts if not isinstance(p, ir.Text)]


# -- to Anthropic and back ---------------------------------------------------------------------


def via_anthropic(*parts: ir.Part) -> tuple[list[dict[str, Any]], list[ir.Part]]:
    body = messages_request(request(*parts), "claude-haiku-4-5", 100)
    blocks = body["messages"][0]["content"]
    back = anthropic_dialect.to_ir({"model": "m", "max_tokens": 10, "messages": body["messages"]})
    return blocks, files_of(back)


@given(data=blobs, title=names, context=texts, citations=st.booleans())
def test_pdf_round_trips_through_anthropic(
    data: str, title: str, context: str, citations: bool
) -> None:
    pdf = ir.File(
        media_type="application/pdf", data=data, name=title, context=context, citations=citations
    )
    blocks, [back] = via_anthropic(pdf)
    assert blocks[1]["source"] == {"type": "base64", "media_type": "application/pdf", "data": data}
    assert isinstance(back, ir.File)
    assert (back.media_type, back.data, back.name, back.context, back.citations) == (
        "application/pdf", data, title, context, citations
    )  # fmt: skip


@given(text=texts)
def test_text_documents_round_trip_through_anthropic_and_gemini(text: str) -> None:
    document = ir.File(media_type="text/plain", text=text)
    blocks, [back] = via_anthropic(document)
    assert blocks[1]["source"] == {"type": "text", "media_type": "text/plain", "data": text}
    assert isinstance(back, ir.File) and back.decoded_text() == text
    [part] = via_gemini(document)
    assert isinstance(part, ir.File) and part.decoded_text() == text


@pytest.mark.parametrize(
    "part",
    [
        ir.File(media_type="audio/wav", data="AAAA", param="messages[0].content[1]"),
        ir.File(media_type="video/mp4", url="https://x/v.mp4", param="messages[0].content[1]"),
        ir.File(file_id="file-abc", file_owner="openai", param="messages[0].content[1]"),
    ],
)
def test_what_anthropic_cannot_read_skips_its_route(part: ir.File) -> None:
    with pytest.raises(CannotServe) as caught:
        messages_request(request(part), "claude-haiku-4-5", 100)
    assert caught.value.status == 400 and caught.value.param == "messages[0].content[1]"
    assert "Anthropic" in caught.value.message


def test_n_above_one_skips_anthropic() -> None:
    with pytest.raises(CannotServe) as caught:
        messages_request(request(n=2), "claude-haiku-4-5", 100)
    assert caught.value.param == "n"


# -- to Gemini and back ------------------------------------------------------------------------


def via_gemini(*parts: ir.Part) -> list[ir.Part]:
    body = google_chat.build(request(*parts), "gemini-2.5-flash")
    return files_of(gemini_dialect.to_ir(body))


@given(
    data=blobs,
    media_type=st.sampled_from(
        ["application/pdf", "audio/wav", "audio/mp3", "video/mp4", "text/csv", "image/png"]
    ),
)
def test_inline_files_round_trip_through_gemini(data: str, media_type: str) -> None:
    [back] = via_gemini(ir.media_part(media_type, data=data))
    assert isinstance(back, ir.Image if media_type.startswith("image/") else ir.File)
    assert (back.media_type, back.data) == (media_type, data)


def test_gemini_reads_files_by_url_and_its_own_uris() -> None:
    pdf = ir.File(media_type="application/pdf", url="https://example.com/a.pdf")
    own = ir.File(
        media_type="video/mp4",
        file_id="https://generativelanguage.googleapis.com/v1beta/files/abc",
        file_owner="google",
    )
    body = google_chat.build(request(pdf, own), "gemini-2.5-flash")
    parts = body["contents"][0]["parts"]
    assert parts[1] == {
        "fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}
    }
    assert parts[2]["fileData"]["fileUri"].endswith("/files/abc")
    back = via_gemini(pdf, own)
    assert [msgspec.structs.replace(p, param="") for p in back] == [pdf, own]


@pytest.mark.parametrize(
    "part",
    [
        ir.File(file_id="file-abc", file_owner="openai"),
        ir.File(media_type="application/msword", data="AAAA"),
    ],
)
def test_what_gemini_cannot_read_skips_its_route(part: ir.File) -> None:
    with pytest.raises(CannotServe) as caught:
        google_chat.build(request(part), "gemini-2.5-flash")
    assert "Gemini" in caught.value.message


def test_url_safe_base64_from_google_genai_becomes_standard() -> None:
    raw = bytes(range(250, 256)) * 3  # encodes with '+' and '/' in the standard alphabet
    safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    doc = {
        "contents": [
            {"role": "user", "parts": [{"inlineData": {"mimeType": "audio/wav", "data": safe}}]}
        ]
    }
    [part] = files_of(gemini_dialect.to_ir(doc))
    assert isinstance(part, ir.File) and base64.b64decode(part.data, validate=True) == raw


# -- to OpenAI Chat and back ------------------------------------------------------------------


def via_openai(*parts: ir.Part) -> tuple[list[dict[str, Any]], list[ir.Part]]:
    body = request_body(request(*parts), "gpt-4o-mini")
    back = openai_dialect.to_ir(body)
    return body["messages"][0]["content"], files_of(back)


@given(data=blobs, filename=names)
def test_pdf_round_trips_through_openai(data: str, filename: str) -> None:
    content, [back] = via_openai(ir.File(media_type="application/pdf", data=data, name=filename))
    assert content[1] == {
        "type": "file",
        "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"},
    }
    assert isinstance(back, ir.File)
    assert (back.media_type, back.data, back.name) == ("application/pdf", data, filename)


@given(data=blobs, kind=st.sampled_from([("audio/wav", "wav"), ("audio/mpeg", "mp3")]))
def test_audio_round_trips_through_openai(data: str, kind: tuple[str, str]) -> None:
    content, [back] = via_openai(ir.File(media_type=kind[0], data=data))
    assert content[1] == {"type": "input_audio", "input_audio": {"data": data, "format": kind[1]}}
    assert isinstance(back, ir.File) and (back.media_type, back.data) == (kind[0], data)


def test_text_documents_go_to_openai_as_text_with_their_title() -> None:
    content, _ = via_openai(ir.File(media_type="text/plain", text="body", name="Notes"))
    assert content[1] == {"type": "text", "text": "Notes\n\nbody"}


@pytest.mark.parametrize(
    ("part", "words"),
    [
        (ir.File(media_type="application/pdf", url="https://x/a.pdf"), "not by URL"),
        (ir.File(media_type="video/mp4", data="AAAA"), "video/mp4"),
        (ir.File(media_type="audio/ogg", data="AAAA"), "audio/ogg"),
        (ir.File(file_id="files/abc", file_owner="google"), "google"),
    ],
)
def test_what_openai_cannot_read_skips_its_route(part: ir.File, words: str) -> None:
    with pytest.raises(CannotServe) as caught:
        request_body(request(part), "gpt-4o-mini")
    assert words in caught.value.message


def test_openai_file_ids_pass_to_openai_only() -> None:
    content, [back] = via_openai(ir.File(file_id="file-abc", file_owner="openai", name="a.pdf"))
    assert content[1] == {"type": "file", "file": {"file_id": "file-abc", "filename": "a.pdf"}}
    assert isinstance(back, ir.File) and back.file_owner == "openai"


# -- dialects in --------------------------------------------------------------------------------


def test_anthropic_content_documents_and_search_results() -> None:
    doc = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {
                            "type": "content",
                            "content": [
                                {"type": "text", "text": "one"},
                                {"type": "text", "text": "two"},
                            ],
                        },
                        "title": "T",
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {
                                "type": "search_result",
                                "source": "https://s",
                                "title": "S",
                                "content": [{"type": "text", "text": "found"}],
                            }
                        ],
                    },
                ],
            }
        ],
    }
    document, result = anthropic_dialect.to_ir(doc).messages[0].parts
    assert isinstance(document, ir.File) and document.decoded_text() == "one\n\ntwo"
    assert document.name == "T" and document.param == "messages[0].content"
    assert isinstance(result, ir.ToolResult)
    [text] = result.content
    assert isinstance(text, ir.Text) and "https://s" in text.text and "found" in text.text


def test_responses_input_file_by_url_and_in_tool_output() -> None:
    body = orjson.dumps(
        {
            "model": "m",
            "input": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [{"type": "input_file", "file_url": "https://x/r.pdf"}],
                },
            ],
        }
    )
    parsed = responses_dialect.RESPONSES.parse(body)
    assert responses_dialect.RESPONSES.to_ir is not None
    req = responses_dialect.RESPONSES.to_ir(parsed.doc)
    result, attached = req.messages[-1].parts
    assert isinstance(result, ir.ToolResult) and result.id == "c"
    assert attached == ir.File(
        media_type="application/pdf", url="https://x/r.pdf", param="input[1].output[0]"
    )


def test_chat_file_data_may_be_bare_base64() -> None:
    doc = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "file", "file": {"filename": "x.pdf", "file_data": "AAAA"}}],
            }
        ],
    }
    [part] = openai_dialect.to_ir(doc).messages[0].parts
    assert part == ir.File(
        media_type="application/pdf", data="AAAA", name="x.pdf", param="messages[0].content[0]"
    )


# -- several choices ---------------------------------------------------------------------------


def test_openai_choices_become_ir_choices_and_render_in_both_dialects() -> None:
    upstream = {
        "id": "c1",
        "model": "gpt",
        "choices": [
            {"index": 1, "message": {"content": "second"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": "first"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    answer = parse_completion(orjson.dumps(upstream))
    assert [c.finish_reason for c in answer.all_choices()] == ["stop", "length"]
    chat = orjson.loads(openai_dialect.render(answer, {}, 0))
    assert [c["message"]["content"] for c in chat["choices"]] == ["first", "second"]
    gem = orjson.loads(gemini_dialect.render(answer, {}, 0))
    assert [c["content"]["parts"][0]["text"] for c in gem["candidates"]] == ["first", "second"]
    assert [c["finishReason"] for c in gem["candidates"]] == ["STOP", "MAX_TOKENS"]


def test_gemini_candidates_become_ir_choices() -> None:
    upstream = {
        "candidates": [
            {"index": 0, "content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
            {"index": 1, "content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"},
        ],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2},
    }
    answer = google_chat.parse(orjson.dumps(upstream), "gemini")
    assert [[p.text for p in c.parts if isinstance(p, ir.Text)] for c in answer.all_choices()] == [
        ["a"],
        ["b"],
    ]


def test_gemini_files_by_uri_count_toward_the_prompt_estimate() -> None:
    """A file by URI is a few bytes of the body but thousands of tokens upstream: its floor is
    held like an image's (``lmrouter.usage.PART_FLOOR_CHARS``)."""
    part = {"fileData": {"mimeType": "video/mp4", "fileUri": "https://x/v.mp4"}}
    body = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "?"}, part, part]}]})
    assert gemini_dialect.parse_generate(body).prompt_chars == len(body) + 2 * PART_FLOOR_CHARS
    plain = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "?"}]}]})
    assert gemini_dialect.parse_generate(plain).prompt_chars == len(plain)
