"""Files and several answers across dialects, through the real router with the official SDKs
(openai, anthropic, google-genai) and the fake upstreams. Each test checks what reached the
upstream: a PDF, a text document, audio in the provider's own form; ``n`` as the provider's own
(or fanned out to Anthropic); a route whose provider has no form for a file (audio to
Anthropic) or a stream with ``n > 1`` (Anthropic) skipped for the next, and a 400 naming the
field when no route can take it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from lmrouter.testing.server import RouterServer
from lmrouter.testing.upstreams import Upstreams

ADMIN = "sk-files"
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n").decode()
WAV = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)).decode()
PDF_URL = f"data:application/pdf;base64,{PDF}"
NOTES = "Meeting notes: ship on Friday."
ROUTES: dict[str, list[tuple[str, str]]] = {  # model id: [(provider, upstream model)]
    "gpt": [("oai", "gpt-4o-mini")],
    "claude": [("ant", "claude-haiku-4-5")],
    "gemini": [("gem", "gemini-2.5-flash")],
    "claude-then-gemini": [("ant", "claude-haiku-4-5"), ("gem", "gemini-2.5-flash")],
    "claude-then-gpt": [("ant", "claude-haiku-4-5"), ("oai", "gpt-4o-mini")],
}


@pytest.fixture(scope="module")
def fakes() -> Upstreams:
    return Upstreams()


@pytest.fixture(scope="module")
def router(fakes: Upstreams) -> Iterator[RouterServer]:
    with fakes.running() as providers:
        text = f'[auth]\nkeys = ["{ADMIN}"]\n{providers}'
        for model, routes in ROUTES.items():
            text += f'[[models]]\nid = "{model}"\n'
            for provider, upstream in routes:
                text += f'[[models.routes]]\nprovider = "{provider}"\nmodel = "{upstream}"\n'
        with RouterServer(text) as server:
            yield server


@pytest.fixture
def chat(router: RouterServer, fakes: Upstreams) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(base_url=router.openai_url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def claude(router: RouterServer, fakes: Upstreams) -> anthropic.Anthropic:
    fakes.reset()
    return anthropic.Anthropic(base_url=router.url, api_key=ADMIN, max_retries=0)


@pytest.fixture
def gemini(router: RouterServer, fakes: Upstreams) -> genai.Client:
    fakes.reset()
    options = types.HttpOptions(base_url=router.url, api_version="v1beta")
    return genai.Client(api_key=ADMIN, http_options=options)


def user_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content parts of the upstream's last user turn, in any of the three shapes."""
    if "contents" in body:
        return body["contents"][-1]["parts"]  # type: ignore[no-any-return]
    turns = [m for m in body["messages"] if m["role"] == "user"]
    content = turns[-1]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


# -- OpenAI Chat in ---------------------------------------------------------------------------


def chat_files() -> list[Any]:
    return [
        {"type": "text", "text": "Summarise these."},
        {"type": "file", "file": {"filename": "report.pdf", "file_data": PDF_URL}},
        {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
    ]


def test_chat_files_reach_gemini_inline(chat: openai.OpenAI, fakes: Upstreams) -> None:
    answer = chat.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": chat_files()}]
    )
    assert answer.choices[0].message.content
    parts = user_parts(fakes.body("gem"))
    assert parts[1] == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}
    assert parts[2] == {"inlineData": {"mimeType": "audio/wav", "data": WAV}}


def test_chat_pdf_reaches_anthropic_as_a_document(chat: openai.OpenAI, fakes: Upstreams) -> None:
    files = chat_files()[:2]
    answer = chat.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": files}]
    )
    assert answer.choices[0].message.content
    [document] = [b for b in user_parts(fakes.body("ant")) if b["type"] == "document"]
    assert document == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "report.pdf",
    }


def test_audio_skips_anthropic_for_the_next_route(chat: openai.OpenAI, fakes: Upstreams) -> None:
    answer = chat.chat.completions.create(
        model="claude-then-gemini", messages=[{"role": "user", "content": chat_files()}]
    )
    assert answer.choices[0].message.content
    assert fakes.ant.requests == [], "Anthropic has no audio input: nothing was sent there"
    assert {"inlineData": {"mimeType": "audio/wav", "data": WAV}} in user_parts(fakes.body("gem"))


def test_audio_with_no_route_that_takes_it_is_a_400_naming_it(
    chat: openai.OpenAI, fakes: Upstreams
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": chat_files()}]
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[0].content[2]"
    assert "audio/wav" in error["message"] and "Anthropic" in error["message"]
    assert fakes.ant.requests == []


def test_chat_n_maps_to_candidate_count(chat: openai.OpenAI, fakes: Upstreams) -> None:
    answer = chat.chat.completions.create(
        model="gemini", n=3, messages=[{"role": "user", "content": "Name a colour"}]
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    texts = [c.message.content or "" for c in answer.choices]
    assert "(candidate 2)" in texts[2] and "(candidate" not in texts[0]
    assert fakes.body("gem")["generationConfig"]["candidateCount"] == 3
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_n_fans_out_to_anthropic(chat: openai.OpenAI, fakes: Upstreams) -> None:
    """Anthropic has no ``n``: the request goes n times, the answers become n choices, and the
    usage is the sum of the calls' (each reads the prompt)."""
    messages: Any = [{"role": "user", "content": "Name a colour"}]
    one = chat.chat.completions.create(model="claude", messages=messages)
    fakes.reset()
    answer = chat.chat.completions.create(model="claude", n=3, messages=messages)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.message.content for c in answer.choices)
    assert len(fakes.ant.requests) == 3 and all("n" not in r.json for r in fakes.ant.requests)
    assert one.usage is not None and answer.usage is not None
    assert answer.usage.prompt_tokens == 3 * one.usage.prompt_tokens
    assert answer.usage.completion_tokens == 3 * one.usage.completion_tokens


def test_streams_with_n_skip_anthropic(chat: openai.OpenAI, fakes: Upstreams) -> None:
    messages: Any = [{"role": "user", "content": "Hi"}]
    stream = chat.chat.completions.create(
        model="claude-then-gpt", n=2, stream=True, messages=messages
    )
    indexes = {choice.index for chunk in stream for choice in chunk.choices}
    assert indexes == {0, 1} and fakes.ant.requests == [] and fakes.body("oai")["n"] == 2
    with pytest.raises(openai.BadRequestError) as caught:
        chat.chat.completions.create(model="claude", n=2, stream=True, messages=messages)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "n"
    assert "stream" in caught.value.body["message"] and fakes.ant.requests == []


def test_chat_streams_several_choices_from_gemini(chat: openai.OpenAI, fakes: Upstreams) -> None:
    stream = chat.chat.completions.create(
        model="gemini",
        n=3,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Name a colour"}],
    )
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert sorted(texts) == [0, 1, 2] and finishes == {0: "stop", 1: "stop", 2: "stop"}
    assert "(candidate 1)" in texts[1] and "(candidate" not in texts[0]
    assert fakes.body("gem")["generationConfig"]["candidateCount"] == 3
    assert usage is not None and usage.completion_tokens > 0


# -- Anthropic Messages in --------------------------------------------------------------------

DOCUMENTS: list[Any] = [
    {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "Report",
        "context": "Q3 figures",
        "citations": {"enabled": True},
    },
    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": NOTES}},
    {
        "type": "search_result",
        "source": "https://example.com/ship",
        "title": "Shipping plan",
        "content": [{"type": "text", "text": "Ships Friday."}],
    },
    {"type": "text", "text": "When do we ship?"},
]


def test_anthropic_documents_reach_openai(claude: anthropic.Anthropic, fakes: Upstreams) -> None:
    answer = claude.messages.create(
        model="gpt", max_tokens=100, messages=[{"role": "user", "content": DOCUMENTS}]
    )
    assert answer.content[0].type == "text"
    parts = user_parts(fakes.body("oai"))
    assert parts[0] == {
        "type": "file",
        "file": {"filename": "Report", "file_data": PDF_URL},
    }
    assert parts[1] == {"type": "text", "text": NOTES}
    assert parts[2]["type"] == "text"
    assert "Shipping plan" in parts[2]["text"] and "https://example.com/ship" in parts[2]["text"]
    assert "Ships Friday." in parts[2]["text"]


def test_anthropic_documents_reach_gemini(claude: anthropic.Anthropic, fakes: Upstreams) -> None:
    claude.messages.create(
        model="gemini", max_tokens=100, messages=[{"role": "user", "content": DOCUMENTS}]
    )
    parts = user_parts(fakes.body("gem"))
    assert parts[0] == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}
    notes = base64.b64encode(NOTES.encode()).decode()
    assert parts[1] == {"inlineData": {"mimeType": "text/plain", "data": notes}}
    assert "Ships Friday." in parts[2]["text"]


# -- Responses in -----------------------------------------------------------------------------


def test_responses_input_file_reaches_anthropic(chat: openai.OpenAI, fakes: Upstreams) -> None:
    answer = chat.responses.create(
        model="claude",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Summarise"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": PDF_URL},
                    {"type": "input_file", "file_url": "https://example.com/b.pdf"},
                ],
            }
        ],
    )
    assert answer.output_text
    documents = [b for b in user_parts(fakes.body("ant")) if b["type"] == "document"]
    assert documents == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "a.pdf",
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/b.pdf"}},
    ]


# -- Gemini in --------------------------------------------------------------------------------


def genai_parts() -> list[types.Part]:
    return [
        types.Part(text="What is in these?"),
        types.Part.from_bytes(data=base64.b64decode(PDF), mime_type="application/pdf"),
        types.Part.from_bytes(data=NOTES.encode(), mime_type="text/plain"),
    ]


def test_gemini_files_reach_openai(gemini: genai.Client, fakes: Upstreams) -> None:
    contents = types.Content(role="user", parts=genai_parts())
    answer = gemini.models.generate_content(model="gpt", contents=contents)
    assert answer.text
    parts = user_parts(fakes.body("oai"))
    assert parts[1] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": PDF_URL},
    }
    assert parts[2] == {"type": "text", "text": NOTES}


def test_gemini_files_reach_anthropic(gemini: genai.Client, fakes: Upstreams) -> None:
    parts = [
        *genai_parts(),
        types.Part.from_uri(file_uri="https://example.com/c.pdf", mime_type="application/pdf"),
    ]
    answer = gemini.models.generate_content(
        model="claude", contents=types.Content(role="user", parts=parts)
    )
    assert answer.text
    blocks = [b for b in user_parts(fakes.body("ant")) if b["type"] == "document"]
    assert [b["source"] for b in blocks] == [
        {"type": "base64", "media_type": "application/pdf", "data": PDF},
        {"type": "text", "media_type": "text/plain", "data": NOTES},
        {"type": "url", "url": "https://example.com/c.pdf"},
    ]


def test_gemini_video_with_no_route_for_it_is_a_400(gemini: genai.Client, fakes: Upstreams) -> None:
    video = types.Part.from_bytes(data=b"\x00\x00\x00\x18ftypmp42", mime_type="video/mp4")
    with pytest.raises(errors.ClientError) as caught:
        gemini.models.generate_content(
            model="gpt", contents=types.Content(role="user", parts=[types.Part(text="?"), video])
        )
    assert caught.value.code == 400 and "video/mp4" in (caught.value.message or "")
    assert "contents[0].parts" in (caught.value.message or "")
    assert fakes.oai.requests == []


def test_gemini_streams_several_candidates_from_openai(
    gemini: genai.Client, fakes: Upstreams
) -> None:
    config = types.GenerateContentConfig(candidate_count=2)
    texts: dict[int, str] = {}
    finishes: dict[int, Any] = {}
    for chunk in gemini.models.generate_content_stream(
        model="gpt", contents="Name a colour", config=config
    ):
        for candidate in chunk.candidates or ():
            index = candidate.index or 0
            parts = candidate.content.parts if candidate.content else None
            texts[index] = texts.get(index, "") + "".join(p.text or "" for p in parts or ())
            if candidate.finish_reason:
                finishes[index] = candidate.finish_reason
    assert "(choice 1)" in texts[1] and "(choice" not in texts[0]
    assert finishes == {0: "STOP", 1: "STOP"}
    assert fakes.body("oai")["n"] == 2 and fakes.body("oai")["stream"] is True


def test_gemini_candidate_count_maps_to_n(gemini: genai.Client, fakes: Upstreams) -> None:
    config = types.GenerateContentConfig(candidate_count=2)
    answer = gemini.models.generate_content(model="gpt", contents="Name a colour", config=config)
    assert answer.candidates is not None and [c.index for c in answer.candidates] == [0, 1]
    assert all(c.content and c.content.parts for c in answer.candidates)
    assert fakes.body("oai")["n"] == 2
    answer = gemini.models.generate_content(model="claude", contents="Hi", config=config)
    assert answer.candidates is not None and [c.index for c in answer.candidates] == [0, 1]
    assert len(fakes.ant.requests) == 2  # Anthropic has no n: sent twice, merged
    with pytest.raises(errors.ClientError) as caught:
        list(gemini.models.generate_content_stream(model="claude", contents="Hi", config=config))
    assert caught.value.code == 400 and "candidateCount" in (caught.value.message or "")
