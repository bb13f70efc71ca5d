"""The SSE decoder against the event-stream rules, for any chunking; ``encode`` round-trips.

The properties compare :class:`lmrouter.sse.SSEDecoder` fed in arbitrary pieces with a small
whole-buffer reference parser written here from the WHATWG rules (plus the two documented
LMRouter choices: ``close()`` processes an unterminated last line and dispatches a pending event,
and ``retry`` belongs to the next dispatched event).
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lmrouter.sse import SSEDecoder, SSEEvent, encode

BOM = b"\xef\xbb\xbf"
LINE_ENDS = (b"\n", b"\r\n", b"\r")


# -- the reference: whole buffer, straight from the spec -------------------------------------


def reference(stream: bytes, *, close: bool = True) -> list[SSEEvent]:
    if stream.startswith(BOM):
        stream = stream[len(BOM) :]
    lines = re.split(rb"\r\n|\r|\n", stream)
    tail = lines.pop()  # after the last line end: an unterminated line (or b"")
    events: list[SSEEvent] = []
    state: dict[str, object] = {"data": None, "event": None, "id": None, "retry": None}

    def field(line: bytes) -> None:
        if line.startswith(b":"):
            return
        if b":" in line:
            colon = line.index(b":")
            name, value = line[:colon], line[colon + 1 :]
            if value.startswith(b" "):
                value = value[1:]
        else:
            name, value = line, b""
        if name == b"data":
            state["data"] = (state["data"] or []) + [value]  # type: ignore[operator]
        elif name == b"event":
            state["event"] = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                state["id"] = value.decode("utf-8", "replace")
        elif name == b"retry" and value and all(48 <= byte <= 57 for byte in value):
            state["retry"] = int(value)

    def blank() -> None:
        if state["data"] is None:
            state["event"] = None
            return
        events.append(
            SSEEvent(
                b"\n".join(state["data"]),  # type: ignore[arg-type]
                state["event"],  # type: ignore[arg-type]
                state["id"],  # type: ignore[arg-type]
                state["retry"],  # type: ignore[arg-type]
            )
        )
        state.update(data=None, event=None, retry=None)

    for line in lines:
        if line:
            field(line)
        else:
            blank()
    if close:
        if tail:
            field(tail)
        blank()
    return events


def decode(chunks: list[bytes], *, close: bool = True) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    if close:
        events.extend(decoder.close())
    return events


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def chunkings(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    """Arbitrary cut points (repeats give empty chunks), or single bytes, or the whole stream."""
    mode = draw(st.sampled_from(["cuts", "cuts", "bytes", "whole"]))
    if mode == "bytes":
        return [stream[i : i + 1] for i in range(len(stream))]
    if mode == "whole":
        return [stream]
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=12))
    return split_at(stream, cuts)


# -- the reference itself is checked on hand-written cases -----------------------------------


def test_reference_parser_on_known_streams() -> None:
    assert reference(b"data: a\n\ndata:b\r\n\r\n") == [SSEEvent(b"a"), SSEEvent(b"b")]
    assert reference(b"event: x\ndata: 1\ndata: 2\r\r") == [SSEEvent(b"1\n2", "x")]
    assert reference(b"data: a\n\ndata: b", close=False) == [SSEEvent(b"a")]


# -- structured events: what was written is what is read --------------------------------------

line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=8
)


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent], list[bytes]]:
    """A stream of events (some without data) and the events a reader must see.

    Returns ``(stream, expected, lines)``; ``lines`` without their endings, for debugging.
    """
    lines: list[bytes] = []
    expected: list[SSEEvent] = []
    last_id: str | None = None
    retry: int | None = None

    def value_line(name: str, value: bytes) -> bytes:
        # "name: value" (one space, dropped) or "name:value"; a value that starts with a space
        # needs the spaced form, an empty value may also be written as a bare field name
        forms = [name.encode() + b": " + value]
        if not value.startswith(b" "):
            forms.append(name.encode() + b":" + value)
        if not value:
            forms.append(name.encode())
        return draw(st.sampled_from(forms))

    for _ in range(draw(st.integers(0, 5))):
        body: list[bytes] = []
        data_lines = draw(st.lists(line_text, max_size=4))
        event_name = draw(st.none() | names)
        fields: list[tuple[str, bytes]] = [("data", d.encode()) for d in data_lines]
        if event_name is not None:
            fields.insert(draw(st.integers(0, len(fields))), ("event", event_name.encode()))
        new_id = draw(st.none() | names)
        if new_id is not None:
            fields.insert(draw(st.integers(0, len(fields))), ("id", new_id.encode()))
        new_retry = draw(st.none() | st.integers(0, 10**6))
        if new_retry is not None:
            fields.insert(draw(st.integers(0, len(fields))), ("retry", str(new_retry).encode()))
        for name, value in fields:
            body.append(value_line(name, value))
            if draw(st.booleans()):  # comments and unknown fields anywhere are ignored
                body.append(
                    draw(st.sampled_from([b":", b": keep-alive", b":x", b"foo: bar", b"dat: a"]))
                )
        lines.extend(body)
        lines.append(b"")  # the blank line that dispatches
        if new_id is not None:
            last_id = new_id
        if new_retry is not None:
            retry = new_retry
        if data_lines:
            expected.append(SSEEvent("\n".join(data_lines).encode(), event_name, last_id, retry))
            retry = None

    # the last event may lack its blank line, and even its last line end: close() has it
    unterminated = draw(st.booleans())
    final_data = draw(st.lists(line_text, min_size=1, max_size=3))
    final_event = draw(st.none() | names)
    if unterminated:
        if final_event is not None:
            lines.append(value_line("event", final_event.encode()))
        lines.extend(value_line("data", d.encode()) for d in final_data)
        expected.append(SSEEvent("\n".join(final_data).encode(), final_event, last_id, retry))

    stream = BOM if draw(st.booleans()) else b""
    previous = b""
    for i, line in enumerate(lines):
        is_last = i == len(lines) - 1
        if unterminated and is_last and draw(st.booleans()):
            stream += line  # no line end at all
            break
        end = draw(st.sampled_from(LINE_ENDS))
        if previous == b"\r" and not line and end == b"\n":
            end = b"\r\n"  # CR then LF would be one line end, swallowing this blank line
        stream += line + end
        previous = end
    return stream, expected, lines


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_structured_events_survive_any_chunking(data: st.DataObject) -> None:
    stream, expected, _ = data.draw(event_streams())
    chunks = data.draw(chunkings(stream))
    assert b"".join(chunks) == stream
    assert decode(chunks) == expected
    assert reference(stream) == expected


# -- arbitrary byte streams: decoder(chunks) == reference(whole stream) -----------------------

tokens = st.sampled_from(
    [
        b"data",
        b"data",
        b"event",
        b"id",
        b"retry",
        b"dat",
        b"Data",
        b":",
        b":",
        b" ",
        b"  ",
        b"\n",
        b"\n",
        b"\r",
        b"\r",
        b"\r\n",
        b"x",
        b"12",
        b"3",
        b"\0",
        BOM,
        b"\xef",
        b"\xbb",
        "é€😀".encode(),
        b"\xff",
        b"\xe2\x82",
    ]
)
byte_streams = st.lists(tokens, max_size=40).map(b"".join) | st.binary(max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_bytes_any_chunking_matches_reference(data: st.DataObject) -> None:
    stream = data.draw(byte_streams)
    chunks = data.draw(chunkings(stream))
    assert decode(chunks) == reference(stream)
    assert decode(chunks, close=False) == reference(stream, close=False)


TRICKY = [
    b"data: a\r\n\r\ndata: b\r\r",
    b"data: a\r\r\ndata: b\n\n",
    b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n",  # only the first BOM is dropped
    b"\xef\xbbdata: x\n\n",  # half a BOM is not a BOM
    b"\xef\xbb",
    b"\xef\xbb\xbf",
    b"\xef\xbb\xbfdata",
    b"\r\n\r\n\r\r\n\n",
    "data: é€😀\r\n\r\n".encode(),
    b"retry: 10\n\ndata: x\n\n",
    b"retry: 1x\ndata: x\n\nretry:\ndata: y\n\n",
    b"id: a\0b\ndata: x\n\n",
]


def test_tricky_streams_at_every_single_split_point() -> None:
    for stream in TRICKY:
        whole = reference(stream)
        for i in range(len(stream) + 1):
            for j in range(i, len(stream) + 1):
                chunks = [stream[:i], stream[i:j], stream[j:]]
                assert decode(chunks) == whole, (stream, i, j)


# -- the rules, one at a time -------------------------------------------------------------------


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the LF pairs with the CR: no blank line yet
    assert decoder.feed(b"\r") == [SSEEvent(b"a")]
    assert decoder.feed(b"\ndata: b\n\n") == [SSEEvent(b"b")]


def test_cr_alone_then_blank_line_in_next_chunk() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SSEEvent(b"a")]


def test_multibyte_character_split_across_chunks() -> None:
    payload = "€😀".encode()
    stream = b"data: " + payload + b"\n\n"
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == [SSEEvent(payload)]


def test_space_after_colon_only_one_is_dropped() -> None:
    assert decode([b"data:x\n\n"]) == [SSEEvent(b"x")]
    assert decode([b"data: x\n\n"]) == [SSEEvent(b"x")]
    assert decode([b"data:  x\n\n"]) == [SSEEvent(b" x")]
    assert decode([b"data:x \n\n"]) == [SSEEvent(b"x ")]


def test_field_without_colon_has_empty_value() -> None:
    assert decode([b"data\n\n"]) == [SSEEvent(b"")]
    assert decode([b"data\ndata\n\n"]) == [SSEEvent(b"\n")]
    assert decode([b"event\ndata: x\n\n"]) == [SSEEvent(b"x", "")]


def test_empty_data_lines_are_kept() -> None:
    assert decode([b"data:\n\n"]) == [SSEEvent(b"")]
    assert decode([b"data: a\ndata:\ndata: b\n\n"]) == [SSEEvent(b"a\n\nb")]


def test_event_without_data_is_not_dispatched_and_resets_the_name() -> None:
    assert decode([b"event: ping\n\ndata: x\n\n"]) == [SSEEvent(b"x")]
    assert decode([b": only a comment\n\n"]) == []
    assert decode([b"event: a\ndata: 1\n\ndata: 2\n\n"]) == [SSEEvent(b"1", "a"), SSEEvent(b"2")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert decode([b": hi\ndata: x\n:data: no\nfoo: bar\nDATA: no\n\n"]) == [SSEEvent(b"x")]


def test_id_persists_and_nul_id_is_ignored() -> None:
    assert decode([b"id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\n"]) == [
        SSEEvent(b"a", id="1"),
        SSEEvent(b"b", id="1"),
        SSEEvent(b"c", id="1"),
    ]


def test_retry_needs_digits() -> None:
    stream = b"retry: 250\ndata: a\n\nretry: 2.5\ndata: b\n\nretry: -1\ndata: c\n\n"
    stream += b"retry: 7 \ndata: d\n\nretry:  7\ndata: e\n\nretry:7\ndata: f\n\n"
    stream += "retry: \u0667\ndata: g\n\n".encode()  # a non-ASCII digit is not a digit
    assert [e.retry for e in decode([stream])] == [250, None, None, None, None, 7, None]


def test_bom_split_across_chunks_is_dropped() -> None:
    stream = BOM + b"data: x\n\n"
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == [SSEEvent(b"x")]
    assert decode([b"\xef", b"", b"\xbb", b"\xbf", b"data: x\n\n"]) == [SSEEvent(b"x")]


def test_bom_later_in_the_stream_is_data() -> None:
    assert decode([b"data: x\n\n" + BOM + b"data: y\n\n"]) == [SSEEvent(b"x")]
    assert decode([b"data: " + BOM + b"\n\n"]) == [SSEEvent(BOM)]


def test_close_dispatches_an_unterminated_last_event() -> None:
    # a stream that ends without [DONE] and without the final blank line
    for tail in (b"data: last", b"data: last\n", b"data: last\r\n", b"data: last\r"):
        decoder = SSEDecoder()
        assert decoder.feed(b"data: first\n\n" + tail) == [SSEEvent(b"first")]
        assert decoder.close() == [SSEEvent(b"last")]


def test_close_with_nothing_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [SSEEvent(b"a")]
    assert decoder.close() == []
    assert SSEDecoder().close() == []
    decoder = SSEDecoder()
    decoder.feed(b"event: x\n: comment")
    assert decoder.close() == []


def test_feed_empty_chunks_changes_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\n") == [SSEEvent(b"a")]


# -- encode ---------------------------------------------------------------------------------


def normalized(payload: bytes) -> bytes:
    return payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def test_encode_wire_format() -> None:
    assert encode(b"hi") == b"data: hi\n\n"
    assert encode(b"a\nb", "ev") == b"event: ev\ndata: a\ndata: b\n\n"
    assert encode(b"") == b"data: \n\n"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=30), st.none() | names), max_size=4),
    st.data(),
)
@example([(b"\r\n\r\r\n", None), (b" lead", "e"), (BOM, None), (b"", "")], None)
def test_encode_round_trips(
    items: list[tuple[bytes, str | None]], data: st.DataObject | None
) -> None:
    stream = b"".join(encode(payload, event) for payload, event in items)
    expected = [SSEEvent(normalized(payload), event) for payload, event in items]
    chunks = [stream] if data is None else data.draw(chunkings(stream))
    assert decode(chunks) == expected
    assert decode(chunks, close=False) == expected  # every event is fully terminated


def test_encode_refuses_event_names_that_would_inject_fields() -> None:
    with pytest.raises(ValueError, match="line break"):
        encode(b"{}", "message\ndata: injected")
