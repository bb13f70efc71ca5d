"""``background: true``: the router answers at once with a ``queued`` response and runs the
request itself, on every route (OpenAI's included), as a detached request
(:class:`lmrouter.Detached`): the same routes, fallback, credit hold and settlement as any
request, and the caller leaving changes nothing. It runs as a stream, so that a cancel closes
the upstream at once and pays for what was generated (as a client disconnect does).

The response lives in this router's store under the id the caller got: ``queued`` at first,
``in_progress`` once the provider answers, then the final response (``completed``,
``incomplete``, ``failed`` or ``cancelled``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from lmrouter import Detached, invalid_request, sse

if TYPE_CHECKING:
    from lmrouter import RequestContext

TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})
_ENDS = ("response.completed", "response.incomplete", "response.failed", "error")


def new_response_id() -> str:
    return "resp_" + os.urandom(24).hex()


def check(doc: dict[str, Any], days: int) -> None:
    """What OpenAI refuses with background, and what this router cannot do with it."""
    if doc.get("store") is False:
        raise invalid_request("Background mode requires `store` to be true.", "background")
    if days == 0:
        raise invalid_request(
            "background responses are kept until they are read, and this router keeps none "
            "([responses] store_days = 0)",
            "background",
        )


def shell(response_id: str, doc: dict[str, Any], status: str) -> dict[str, Any]:
    """The response as it stands before there is an answer."""
    metadata = doc.get("metadata")
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": True,
        "error": None,
        "incomplete_details": None,
        "instructions": doc.get("instructions"),
        "max_output_tokens": doc.get("max_output_tokens"),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "model": doc.get("model"),
        "output": [],
        "parallel_tool_calls": doc.get("parallel_tool_calls", True),
        "previous_response_id": doc.get("previous_response_id"),
        "store": True,
        "temperature": doc.get("temperature"),
        "text": doc.get("text") or {"format": {"type": "text"}},
        "tool_choice": doc.get("tool_choice") or "auto",
        "tools": doc.get("tools") or [],
        "top_p": doc.get("top_p"),
        "usage": None,
    }


@dataclass
class Job:
    """One background response under way in this process."""

    response_id: str
    owner: str
    queued: dict[str, Any]
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0  # the HTTP status the pipeline answered with
    error_body: bytes = b""  # its body, when that was an error
    detached: Detached | None = None
    cancelled: bool = False
    on_start: Callable[[], None] | None = None  # the provider answered: now in_progress
    # Created with ``stream``: its events, ids made the caller's, for the caller and for
    # ``GET /v1/responses/{id}?stream=true&starting_after=N`` (sequence number, bytes).
    streaming: bool = False
    events: list[tuple[int, bytes]] = field(default_factory=list)
    _decoder: sse.SSEDecoder = field(default_factory=sse.SSEDecoder)
    _more: asyncio.Event = field(default_factory=asyncio.Event)
    _last: Any = None  # the type of the last event

    async def send(self, message: dict[str, Any]) -> None:
        """Where the pipeline's answer goes: the stream itself is not kept (the final response
        is read off the relay at the end); an error answer is, for ``error``."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()
            if self.status < 400 and self.on_start is not None and not self.cancelled:
                self.on_start()
        elif self.status >= 400:
            self.error_body += message.get("body", b"")
        elif self.streaming:
            for event in self._decoder.feed(message.get("body", b"")):
                self._add(event.data, event.event)

    def _add(self, data: bytes, name: str | None) -> None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # not an event of the Responses stream
        if not isinstance(doc, dict):
            return
        if isinstance(doc.get("response"), dict):
            doc["response"] = self._as_ours(doc["response"])
        sequence = doc.get("sequence_number")
        if not isinstance(sequence, int):
            sequence = doc["sequence_number"] = self.events[-1][0] + 1 if self.events else 0
        self.events.append((sequence, sse.encode(orjson.dumps(doc), name or doc.get("type"))))
        self._last = doc.get("type")
        self._more.set()
        self._more = asyncio.Event()

    def end(self, final: dict[str, Any]) -> None:
        """The request ended with ``final``: a failed stream that did not say so gets a last
        event that does (a cancelled one just ends); followers stop."""
        if self.streaming and final["status"] == "failed" and self._last not in _ENDS:
            self._add(orjson.dumps({"type": "response.failed", "response": final}), None)
        self.finished.set()
        self._more.set()

    async def follow(self, after: int = -1) -> AsyncIterator[bytes]:
        """The events after sequence number ``after``, as they come, until the end."""
        sent = 0
        while True:
            more = self._more
            while sent < len(self.events):
                sequence, chunk = self.events[sent]
                sent += 1
                if sequence > after:
                    yield chunk
            if self.finished.is_set():
                return
            await more.wait()

    def cancel(self) -> None:
        self.cancelled = True
        if self.detached is not None:
            self.detached.cancel.set()

    def final(self, ctx: RequestContext) -> dict[str, Any]:
        """The response to keep once the request ended."""
        answer = ctx.final_answer() if not self.cancelled else None
        if answer is None:
            answer = dict(self.queued)
            answer["status"] = "cancelled" if self.cancelled else "failed"
            partial = ctx.final_answer() if self.cancelled else None
            if partial:
                answer["output"] = partial.get("output") or []
                answer["usage"] = partial.get("usage")
            if not self.cancelled:
                answer["error"] = self._error()
        return self._as_ours(answer)

    def _as_ours(self, response: dict[str, Any]) -> dict[str, Any]:
        """A response from the pipeline under the id (and the fields) the caller was given."""
        response = {**response, "id": self.response_id, "background": True, "store": True}
        response["created_at"] = self.queued["created_at"]
        response["previous_response_id"] = self.queued.get("previous_response_id")
        if "conversation" in self.queued:
            response["conversation"] = self.queued["conversation"]
        return response

    def _error(self) -> dict[str, Any]:
        try:
            error = orjson.loads(self.error_body).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            error = {}
        return {
            "code": error.get("code") or "server_error",
            "message": error.get("message") or "The response could not be completed.",
        }
