"""What the fake upstreams (:mod:`~lmrouter.testing.fake_openai`,
:mod:`~lmrouter.testing.fake_anthropic`, :mod:`~lmrouter.testing.fake_gemini`) share.

Each fake speaks one provider's wire format; everything that is not wire format lives here once:
the loopback HTTP server and its lifecycle (:meth:`FakeServer.start`, :meth:`~FakeServer.stop`,
:meth:`~FakeServer.run_in_thread`), per-model scripting, the record of requests and of clients
that went away, the paced SSE writer that notices those clients, and small helpers the fakes'
answers are built from (text pieces, sample tool arguments, deterministic embeddings).

A fake subclasses :class:`FakeServer` with its own ``Behavior`` dataclass and implements
:meth:`FakeServer._answer`: route, authenticate, validate, render.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web

__all__ = ["Disconnect", "FakeServer", "Recorded", "ToolCall"]

B = TypeVar("B")
"""A fake's ``Behavior`` dataclass."""

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The characters of real providers' ids (``chatcmpl-…``, ``msg_01…``)."""

Event = tuple[bytes, bool]
"""One encoded stream event and whether it is a content delta (what ``*_after_chunks`` count)."""


@dataclass(slots=True)
class Recorded:
    """One request a fake received (in :attr:`FakeServer.requests`)."""

    method: str
    path: str
    """The path; :class:`~lmrouter.testing.fake_gemini.FakeGemini` keeps the query string too."""
    headers: dict[str, str]
    """Header names in lower case (the last value wins when a header is repeated)."""
    json: Any
    """The parsed JSON body, or ``None`` when there was none or it did not parse."""
    at: float
    """``time.monotonic()`` when the request arrived."""
    body: bytes = b""
    """The raw request body."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A scripted tool call, every fake's ``Behavior.call``: when a request offers a tool of
    this name (and does not end with a tool's result), the answer calls it with these
    arguments, instead of calling the first tool with arguments sampled from its schema. What
    makes an agent's round trip real: the fake asks Codex to run ``cat hello.py``, Claude Code
    to read it, and the next request carries the file's text back."""

    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class Disconnect:
    """A streaming client that went away before the stream ended."""

    model: str
    chunks_sent: int
    """Content deltas (text pieces or tool-argument fragments) written before it was noticed."""
    at: float
    """``time.monotonic()`` when the fake noticed."""


class FakeServer(abc.ABC, Generic[B]):
    """An HTTP server on loopback that answers like one provider, scriptable per model.

    ``api_key=None`` accepts any key or none; otherwise each fake checks the key the way its
    provider does. A subclass sets :attr:`_behavior_type` (and the other ``_`` class attributes
    where its defaults differ) and implements :meth:`_answer`.
    """

    _behavior_type: type[B]
    """The fake's ``Behavior`` dataclass; ``Behavior()`` is the :attr:`default`."""
    _base_path: str = ""
    """Appended to ``http://HOST:PORT`` in :attr:`base_url` (OpenAI clients expect ``/v1``)."""
    _max_body: int = 64 * 1024 * 1024
    """The largest request body accepted (aiohttp's 1 MiB default is far below the real APIs')."""
    _thread_name: str = "fake-server"
    """The name of :meth:`run_in_thread`'s thread, to tell the fakes apart in a thread dump."""
    _record_query: bool = False
    """Record the path with its query string (where the query carries meaning, as for Gemini)."""
    record: bool = True
    """Keep every request in :attr:`requests` (off for benchmarks, so memory stays flat; the
    OpenAI fake takes it as a constructor argument, as it does :attr:`reuse_port`)."""
    reuse_port: bool = False
    """Bind with ``SO_REUSEPORT``, so several processes can serve one port."""

    def __init__(
        self, api_key: str | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        """The bound port (``0`` until started when constructed with ``port=0``)."""
        self.base_url = ""
        """``http://HOST:PORT`` (plus the fake's base path) once started."""
        self.default: B = self._behavior_type()
        """The behaviour for models without a script."""
        self.requests: list[Recorded] = []
        self.disconnects: list[Disconnect] = []
        self._scripts: dict[str, B] = {}
        self._runner: web.BaseRunner | None = None
        self._stopping = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        """A counter for the ids a fake hands out, so they are unique per server."""
        self._id_prefix = random_alnum(22)
        """Random characters that make ids differ between servers, like real ids do."""

    # -- public API ---------------------------------------------------------------------------

    def script(self, model: str, behavior: B) -> None:
        """Answer requests for ``model`` with ``behavior`` (the model is the body's ``"model"``,
        or the name in the URL path where the provider puts it there)."""
        self._scripts[model] = behavior

    def reset(self) -> None:
        """Forget the recorded requests and disconnects (scripts stay)."""
        self.requests.clear()
        self.disconnects.clear()

    async def start(self) -> str:
        """Start serving in the running event loop; returns :attr:`base_url`."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        sock = bind(self.host, self.port, reuse_port=self.reuse_port)
        loop = asyncio.get_running_loop()
        max_body = self._max_body

        def make_request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=max_body
            )

        # The low-level server: no router or middleware work per request. handler_cancellation:
        # a client that goes away cancels its handler at once, so a disconnect is noticed even
        # while the stream sleeps between chunks.
        server = web.Server(
            self._handle,
            request_factory=make_request,
            handler_cancellation=True,
            access_log=None,
        )
        runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        self._stopping = False
        self.port = int(sock.getsockname()[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{self.port}{self._base_path}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; open streams are cut (and not recorded as client disconnects)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for task in list(self._inflight):  # don't wait out slow scripted streams
            task.cancel()
        await runner.cleanup()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[str]:
        """Serve from a background thread with its own event loop; yields :attr:`base_url`."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name=self._thread_name, daemon=True
        )
        thread.start()
        try:
            base_url = asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            raise
        try:
            yield base_url
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=30)

    # -- request handling ---------------------------------------------------------------------

    @abc.abstractmethod
    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        """Answer one request, already read and recorded: route, authenticate, validate, render.

        ``parsed`` is the JSON body (``None`` when there was none or ``bad_json``); ``at`` is
        ``time.monotonic()`` when it arrived.
        """

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        at = time.monotonic()
        # Tracked so that stop() can cut handlers that a script keeps busy for long.
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            body = await request.read() if request.body_exists else b""
            parsed: Any = None
            bad_json = False
            if body:
                try:
                    parsed = orjson.loads(body)
                except orjson.JSONDecodeError:
                    bad_json = True
            if self.record:
                headers = {k.lower(): v for k, v in request.headers.items()}
                path = request.path_qs if self._record_query else request.path
                self.requests.append(Recorded(request.method, path, headers, parsed, at, body))
            return await self._answer(request, parsed, bad_json, at)
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _behavior(self, model: str) -> B:
        return self._scripts.get(model, self.default)

    async def _delay_headers(self, seconds: float, model: str, stream: bool) -> None:
        """Wait ``seconds`` before the status line; a streaming client that leaves meanwhile is
        a disconnect with nothing sent (callers skip the call when there is no delay)."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if stream:
                self._note_disconnect(model, 0)
            raise

    def _note_disconnect(self, model: str, chunks_sent: int) -> None:
        if not self._stopping:  # stop() cuts streams itself; those clients did not go away
            self.disconnects.append(Disconnect(model, chunks_sent, time.monotonic()))

    async def _write_stream(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        events: Sequence[Event],
        *,
        model: str,
        delay: float,
        cut: bool = False,
        tail: bytes = b"",
        linger: float = 0.0,
    ) -> web.StreamResponse:
        """Send ``response`` with ``events`` as its body, then ``tail`` right after the last one;
        ``linger`` seconds pass before the body ends (the end marker sent, the EOF late).

        ``delay <= 0`` writes everything at once: the fastest path, and what a router reading a
        fast upstream sees anyway (several events per read). Otherwise the events go out
        ``delay`` seconds apart, and a client that has gone away is noticed before each write
        and recorded in :attr:`disconnects` with the content events it got. ``cut`` closes the
        connection after the last write instead of ending the body, as a dropped upstream does.
        """
        sent = 0
        whole: Sequence[Event] = ()  # the single write's events, counted only if it fails
        try:
            await response.prepare(request)
            if delay <= 0:
                whole = events
                chunks = [data for data, _ in events]
                if tail:
                    chunks.append(tail)
                await response.write(b"".join(chunks))
            else:
                for position, (data, is_content) in enumerate(events):
                    if position:
                        await asyncio.sleep(delay)
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        self._note_disconnect(model, sent)
                        return response
                    await response.write(data)
                    sent += is_content
                if tail:
                    await response.write(tail)
            if linger > 0:
                await asyncio.sleep(linger)
            if cut:
                close_connection(request)
            return response
        except ConnectionResetError:
            self._note_disconnect(model, sent + _content_count(whole))
            return response
        except asyncio.CancelledError:
            self._note_disconnect(model, sent + _content_count(whole))
            raise


def _content_count(events: Sequence[Event]) -> int:
    return sum(is_content for _, is_content in events)


# -- stream cutting -----------------------------------------------------------------------------


def content_index(events: Sequence[Event], count: int) -> int | None:
    """The position of the content event that follows ``count`` others, or ``None``."""
    seen = 0
    for position, (_, is_content) in enumerate(events):
        if is_content:
            if seen == count:
                return position
            seen += 1
    return None


def content_end(events: Sequence[Event], count: int) -> int:
    """The position right after the ``count``-th content event (the end when there are fewer)."""
    seen = 0
    for position, (_, is_content) in enumerate(events):
        if seen >= count:
            return position
        seen += is_content
    return len(events)


# -- answers ------------------------------------------------------------------------------------


def split_text(text: str, size: int) -> list[str]:
    """``text`` in pieces of ``size`` characters (one piece when ``size <= 0``, none if empty)."""
    if not text:
        return []
    if size <= 0:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the ``text`` of its parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def sample_value(schema: Any, depth: int = 0) -> Any:
    """A deterministic value that fits a schema (strings ``"test"``, numbers ``1``, ``true`` …).

    Takes JSON Schema (OpenAI, Anthropic) and Gemini's OpenAPI subset alike: type names in any
    case, ``anyOf`` also spelt ``any_of`` as proto JSON allows.
    """
    if not isinstance(schema, dict) or depth > 8:
        return "test"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "any_of", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return sample_value(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        kind = kind.lower()
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: sample_value(sub, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        return [sample_value(items, depth + 1)] if isinstance(items, dict) else []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "test"


def sample_json(schema: Any) -> str:
    """A structured answer's text: a value that fits ``schema`` (``$ref``s to its ``$defs``
    followed, as pydantic models nest), as JSON."""
    root = schema if isinstance(schema, dict) else {}
    return orjson.dumps(sample_value(_resolve_refs(schema, root))).decode()


def _resolve_refs(schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    if depth > 8:
        return {}
    if isinstance(schema, list):
        return [_resolve_refs(item, root, depth) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return _resolve_refs(target, root, depth + 1)
    return {k: _resolve_refs(v, root, depth + 1) for k, v in schema.items()}


def sample_arguments(schema: Any) -> dict[str, Any]:
    """Tool-call arguments built from the tool's parameter schema (``{}`` unless an object)."""
    value = sample_value(schema)
    return value if isinstance(value, dict) else {}


def embedding(key: bytes, dims: int) -> bytes:
    """A deterministic unit vector for ``key`` as little-endian float32 bytes."""
    raw: list[float] = []
    block = 0
    while len(raw) < dims:
        digest = hashlib.blake2b(key, digest_size=64, salt=block.to_bytes(16, "little")).digest()
        raw.extend(v / 2_147_483_648.0 - 1.0 for (v,) in struct.iter_unpack("<I", digest))
        block += 1
    del raw[dims:]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return struct.pack(f"<{dims}f", *(x / norm for x in raw))


def retry_after(seconds: float | None) -> dict[str, str] | None:
    """A ``retry-after`` header for ``seconds`` (whole seconds without a fraction), or ``None``."""
    if seconds is None:
        return None
    shown = str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
    return {"retry-after": shown}


def close_connection(request: web.BaseRequest) -> None:
    """Cut the connection: what was written is flushed, then FIN; nothing else follows."""
    transport = request.transport
    if transport is not None:
        transport.close()


def random_alnum(length: int) -> str:
    """``length`` random characters from ``[0-9A-Za-z]``, as real ids are made of."""
    return "".join(ALNUM[b % 62] for b in os.urandom(length))


# -- plumbing -----------------------------------------------------------------------------------


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound (not yet listening) socket; ``port=0`` picks a free port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Run ``loop`` until stopped, then cancel what is left and close it (a fake's thread)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
