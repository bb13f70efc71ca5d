"""Server-sent events: an incremental decoder that is right for any chunking, and encoders.

Follows the WHATWG event-stream rules: LF, CRLF or CR end a line (a CR at the end of one chunk
and an LF at the start of the next are one line end); ``:`` starts a comment; ``data`` lines of
one event join with ``\\n``; a field without a colon has an empty value; one leading space after
the colon is dropped; a leading BOM is ignored. Unlike a browser, :meth:`SSEDecoder.close`
dispatches a last event that the stream did not terminate with a blank line: providers that drop
the connection right after their final ``data:`` line still had something to say.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    data: bytes
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    __slots__ = ("_buffer", "_data", "_event", "_id", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF is its pair
        self._started = False
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not self._started:
            joined = self._buffer + chunk
            if len(joined) < 3 and b"\xef\xbb\xbf".startswith(joined):
                self._buffer = joined  # could still become a BOM
                return []
            self._started = True
            self._buffer = b""
            chunk = joined[3:] if joined.startswith(b"\xef\xbb\xbf") else joined
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                self._skip_lf = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._buffer:
            chunk = self._buffer + chunk
        lines = chunk.split(b"\n")
        self._buffer = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            if line:
                self._field(line)
            elif self._data:
                events.append(self._dispatch())
            else:
                self._event = None  # an empty event resets the type; nothing is dispatched
        return events

    @property
    def at_boundary(self) -> bool:
        """Nothing pending: a chunk of whole events could pass by without being fed."""
        return self._started and not (self._buffer or self._data or self._skip_lf)

    def close(self) -> list[SSEEvent]:
        """End of stream: the last line and event, even without the closing blank line."""
        if self._buffer and self._started:
            self._field(self._buffer)
        self._buffer = b""
        return [self._dispatch()] if self._data else []

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> SSEEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = SSEEvent(data, self._event, self._id, self._retry)
        self._data = []
        self._event = None
        self._retry = None
        return event


def encode(data: bytes, event: str | None = None) -> bytes:
    """One event. Multi-line data becomes several ``data:`` lines, so any payload round-trips."""
    if b"\n" in data or b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\ndata: ")
    if event is None:
        return b"data: " + data + b"\n\n"
    if "\n" in event or "\r" in event:  # a name must not smuggle in extra fields
        raise ValueError(f"SSE event name with a line break: {event!r}")
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
