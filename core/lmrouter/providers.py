"""The provider adapter base: one pooled HTTP client per provider, timeouts, error classification.

A provider plugin subclasses :class:`Provider` and names its ``type``. For dialects it speaks as
they are, it lists them in ``native_dialects`` and implements :meth:`Provider.prepare` (a
pass-through). For the rest it lists IR kinds in ``converts`` and implements ``build``, ``parse``
and ``stream_parser`` (to and from :mod:`lmrouter.ir`). Connections, timeouts and failure
classification are here, once.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import aiohttp
import msgspec

if TYPE_CHECKING:
    from lmrouter.config import Route
    from lmrouter.context import RequestContext
    from lmrouter.dialects import StreamParser


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Keys every ``[providers.NAME]`` table accepts; an adapter may subclass to add its own."""

    type: str
    base_url: str
    api_key: str = ""
    headers: dict[str, str] = {}  # sent with every upstream request
    # Users may store their own key for this provider (BYOK), used instead of ``api_key`` and
    # spending no credits. Only for a provider that checks the key: one that accepts any key
    # (a local server, a mock) would make every request free.
    byok: bool = False
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0  # until response headers; a whole answer when not streaming
    idle_timeout: float = 300.0  # longest silence between two chunks of a stream
    max_connections: int = 1024  # pooled keep-alive connections to this provider

    def own_credentials(self) -> bool:
        """Whether the router authenticates to this provider by itself (else only users' own
        keys work). An adapter with other credentials than ``api_key`` (a cloud's credential
        chain, a service account, client secrets) overrides it, so that ``lmrouter check`` does
        not warn of a missing key it never needed."""
        return bool(self.api_key)


class UpstreamRequest(NamedTuple):
    url: str
    headers: dict[str, str]
    body: bytes


class UpstreamFailure(Exception):
    """An attempt that failed before anything reached the client. ``retryable`` failures send the
    request on to the next route; others answer the client at once with ``status``."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retryable: bool,
        upstream_status: int | None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.upstream_status = upstream_status
        self.retry_after = retry_after  # the provider's Retry-After, passed on with a 429


class Health:
    """What requests saw of a provider lately: enough for ``/health`` to say it is failing."""

    __slots__ = ("consecutive_failures", "last_error", "last_ok")

    def __init__(self) -> None:
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.last_ok: float | None = None

    def ok(self) -> None:
        self.consecutive_failures = 0
        self.last_ok = time.time()

    def failed(self, message: str) -> None:
        self.consecutive_failures += 1
        self.last_error = message

    def summary(self) -> dict[str, Any]:
        if self.consecutive_failures >= 3:
            status = "failing"
        else:
            status = "ok" if self.last_ok is not None else "unknown"
        return {
            "status": status,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error if self.consecutive_failures else None,
        }


class _ErrorBody(msgspec.Struct):
    error: Any = None
    message: Any = None


class Provider:
    type: ClassVar[str]
    Config: ClassVar[builtins.type[ProviderConfig]] = ProviderConfig  # `type` is the name above
    # Forwarded untouched (prepare()); an instance may narrow it from its config.
    native_dialects: frozenset[str] = frozenset()
    converts: ClassVar[frozenset[str]] = frozenset()  # IR kinds served: build/parse/stream_parser
    # The adapter authenticates with the ``key`` it is given (``api_key``, or a user's own key
    # under ``byok = true``) and with nothing else of the operator's: only then can a provider
    # of this type be opened to users' keys.
    user_keys: ClassVar[bool] = False

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self.health = Health()
        self._timeouts = {
            stream: aiohttp.ClientTimeout(
                total=None,
                sock_connect=config.connect_timeout,
                # Streams: the idle limit between chunks. Otherwise the whole answer is one read.
                sock_read=config.idle_timeout if stream else config.first_byte_timeout,
            )
            for stream in (False, True)
        }
        self._read_limits = {False: config.first_byte_timeout, True: config.idle_timeout}

    # -- what a plugin implements -------------------------------------------------------------

    def prepare(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest:
        """The upstream request for ``ctx`` (in one of ``native_dialects``) on ``route``."""
        raise NotImplementedError

    def passes_through(self, ctx: RequestContext, route: Route) -> bool:
        """Whether ``ctx``'s request goes upstream as it came (:meth:`prepare`) rather than
        through the IR (:meth:`build`): when its dialect is one of ``native_dialects``. An
        adapter overrides it to convert a request that this route's model would refuse as it
        is (Anthropic: ``output_config.format`` for a Claude without structured outputs)."""
        return ctx.dialect in self.native_dialects

    def build(self, ctx: RequestContext, request: Any, route: Route, key: str) -> UpstreamRequest:
        """The upstream request for an IR request (``ir.ChatRequest``/``ir.EmbeddingRequest``)."""
        raise NotImplementedError

    def parse(self, ctx: RequestContext, request: Any, body: bytes) -> Any:
        """A whole upstream answer as IR (``ir.ChatResponse``/``ir.EmbeddingResponse``). Raise
        ``UpstreamFailure`` for a body that cannot be read."""
        raise NotImplementedError

    def stream_parser(self, ctx: RequestContext, request: Any) -> StreamParser:
        """A fresh parser turning this provider's stream into IR events."""
        raise NotImplementedError

    def count_tokens(self, ctx: RequestContext, route: Route, key: str) -> UpstreamRequest | None:
        """An upstream request counting the input tokens of the request in ``ctx.doc`` (dialect
        ``ctx.dialect``: ``anthropic.messages`` or ``gemini.generate``; ``ctx.ir`` holds it
        converted when that is not one of :attr:`native_dialects`), or ``None`` for a provider
        without a counter for it (the router then estimates)."""
        return None

    def token_count(self, body: bytes) -> int:
        """The count from the answer to :meth:`count_tokens`' request (``ValueError`` if none)."""
        raise NotImplementedError

    def error_message(self, status: int, body: bytes) -> str:
        """The provider's own words from an error body; override for unusual shapes."""
        try:
            doc = msgspec.json.decode(body, type=_ErrorBody)
            err = doc.error
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return err["message"]
            if isinstance(err, str):
                return err
            if isinstance(doc.message, str):
                return doc.message
        except msgspec.DecodeError:
            pass
        text = body[:300].decode("utf-8", "replace").strip()
        return text or f"HTTP {status}"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections,
            ttl_dns_cache=300,
            keepalive_timeout=60,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeouts[False],
            auto_decompress=True,
            headers={"User-Agent": "lmrouter", **self.config.headers},
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- one attempt --------------------------------------------------------------------------

    async def open(
        self, request: UpstreamRequest, *, stream: bool, budget: float
    ) -> aiohttp.ClientResponse:
        """Send and wait for the response headers. Raises UpstreamFailure, never aiohttp errors."""
        assert self.session is not None, "provider used before start()"
        # The session's read timeout already bounds the wait for headers (first_byte_timeout
        # without streaming, idle_timeout with); an extra timer is armed only when this
        # request's budget is shorter — it costs microseconds on every request otherwise.
        wait = min(budget, self.config.first_byte_timeout)
        post = self.session.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=self._timeouts[stream],
        )
        try:
            if wait < self._read_limits[stream]:
                async with asyncio.timeout(wait):
                    return await post
            return await post
        except TimeoutError:
            raise self.timeout_failure("waiting for the response") from None
        except aiohttp.ClientError as exc:
            raise self.connection_failure(exc) from None

    async def read_error(self, response: aiohttp.ClientResponse, key: str) -> UpstreamFailure:
        """Turn an HTTP error response into a failure: 429, 5xx, 401/403/404 try the next route
        (a rate limit, an outage or a misconfigured key or model of ours); 400/413/422 are the
        caller's own mistake and are answered as such."""
        status = response.status
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                body = await response.content.read(65536)
        except (TimeoutError, aiohttp.ClientError):
            body = b""
        finally:
            response.release()
        # Redact the whole body first: a message cut short may hold the start of a key.
        body = redact_bytes(body, key, self.config.api_key)
        message = redact(self.error_message(status, body), key, self.config.api_key)
        if self.callers_fault(status, body):
            return UpstreamFailure(
                message,
                status=400 if status == 422 else status,
                retryable=False,
                upstream_status=status,
            )
        return UpstreamFailure(
            f"{self.name} answered {status}: {message}",
            status=502,
            retryable=True,
            upstream_status=status,
            retry_after=response.headers.get("retry-after"),
        )

    def callers_fault(self, status: int, body: bytes) -> bool:
        """Whether an error answer is about the caller's request (answered at once) rather than
        about this route (tried elsewhere). Override for providers that answer 400 to problems
        of their own, such as a rejected key."""
        return status in (400, 413, 422)

    def timeout_failure(self, what: str) -> UpstreamFailure:
        return UpstreamFailure(
            f"{self.name} timed out {what}", status=504, retryable=True, upstream_status=None
        )

    def connection_failure(self, exc: BaseException) -> UpstreamFailure:
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return self.timeout_failure("reading the response")
        reason = type(exc).__name__
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = f"cannot connect ({exc.os_error.strerror or exc.os_error})"
        elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            reason = "closed the connection before the response was complete"
        return UpstreamFailure(
            f"{self.name}: {reason}", status=502, retryable=True, upstream_status=None
        )


def redact(text: str, *keys: str) -> str:
    """Never echo a provider key, even when an upstream quotes it back."""
    for key in keys:
        if key and key in text:
            text = text.replace(key, "***")
    return text


def redact_bytes(data: bytes, *keys: str) -> bytes:
    """:func:`redact` for bytes on their way to a client (an upstream error event, say)."""
    for key in keys:
        if key and (raw := key.encode()) in data:
            data = data.replace(raw, b"***")
    return data
