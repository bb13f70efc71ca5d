"""The conformance kit: check that a provider adapter streams, meters, fails over, times out and
redacts exactly like the first-party ones — through the real router, with the official SDKs.

A provider plugin declares what it claims in one :class:`Spec` and runs the suite in its tests::

    from lmrouter.testing import conformance
    from lmrouter.testing.fake_openai import FakeOpenAI

    SPEC = conformance.Spec(
        adapter=MyProvider,
        fake=lambda key: FakeOpenAI(api_key=key),  # a faithful fake of the upstream
        behavior=conformance.openai_behavior,  # a Scenario as the fake's Behavior
        dialects={"openai.chat", "anthropic.messages"},
        features={"tools", "usage", "cached_tokens"},
    )
    TestConformance = conformance.suite(SPEC)  # one pytest test per claim

The kit starts the fake and a real router (:class:`~lmrouter.testing.server.RouterServer`) with
the adapter registered as provider type ``conformance-subject``; the adapter need not be
installed. Every claim is a test named after it (``openai.chat:usage:stream``,
``errors:failover:429``, ``timeouts:idle`` …); a broken one raises :class:`ClaimFailed`, which
names the claim and shows the requests and responses that broke it.

The fake is driven through :class:`Scenario` (what the upstream should do: answer text, call a
tool, report usage, fail with a status, stall, drop the connection); ``Spec.behavior`` turns one
into the fake's own ``Behavior``. Ready translations exist for the three fakes that ship with
LMRouter (:func:`openai_behavior`, :func:`anthropic_behavior`, :func:`gemini_behavior`). A fake
must script answers per model name (``fake.script(model, behavior)``), record streaming clients
that leave in ``fake.disconnects``, and refuse requests without the right key.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import anthropic
import openai
import pytest

from lmrouter.testing.conformance_plugin import SUBJECT_TYPE
from lmrouter.testing.server import RouterServer, free_port

__all__ = [
    "CHAT_DIALECTS",
    "FEATURES",
    "Claim",
    "ClaimFailed",
    "Harness",
    "Scenario",
    "Spec",
    "Suite",
    "Tokens",
    "anthropic_behavior",
    "claims",
    "gemini_behavior",
    "openai_behavior",
    "suite",
]

CHAT_DIALECTS = frozenset({"openai.chat", "openai.responses", "anthropic.messages"})
DIALECTS = CHAT_DIALECTS | {"openai.embeddings"}
FEATURES = frozenset({"tools", "usage", "cached_tokens", "reasoning_tokens"})
OPERATOR = "sk-conformance-operator"


# -- what a plugin declares ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tokens:
    """Usage as the upstream should report it. ``cached`` is part of ``input``, ``reasoning``
    part of ``output`` (the router's :class:`~lmrouter.usage.Usage` convention)."""

    input: int
    output: int
    cached: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the fake upstream should do for one model. Finish reasons use the IR's names
    (``stop``, ``length``, ``tool_calls``, ``content_filter``)."""

    text: str | None = None
    tool_call: bool = False
    """Call the request's tool (if it has one) unless the last message is a tool result."""
    usage: Tokens | None = None
    finish: str | None = None
    status: int | None = None
    """Answer with this HTTP status and the provider's error body."""
    error_message: str | None = None
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_chars: int = 4
    drop_after_chunks: int | None = None
    """Close the connection after this many content pieces (``0``: without any response)."""


@dataclass(frozen=True)
class Spec:
    """One provider adapter's claims, and how to stand up its upstream."""

    adapter: type
    """The :class:`~lmrouter.providers.Provider` subclass under test (importable by name)."""
    fake: Callable[[str], Any]
    """A fresh fake upstream that accepts only the given key (a ``FakeServer``)."""
    behavior: Callable[[Scenario], Any]
    """A :class:`Scenario` as the fake's ``Behavior``."""
    dialects: Iterable[str] = DIALECTS
    """Inbound dialects the adapter serves: ``openai.chat``, ``openai.responses``,
    ``anthropic.messages``, ``openai.embeddings``."""
    features: Iterable[str] = FEATURES
    """``tools``, ``usage``, ``cached_tokens``, ``reasoning_tokens``."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """Extra keys for the ``[providers.NAME]`` table (adapter-specific settings)."""
    base_url: Callable[[str], str] = str
    """The provider's ``base_url`` given the fake's ``base_url``."""
    key: str = "sk-conformance-9f3c7a21e4b8d605"
    """The provider key: the fake requires it, and it must never reach a caller or a log."""
    python_path: Sequence[str] = ()
    """Extra ``PYTHONPATH`` entries for the router (where the adapter's imports live)."""

    def __post_init__(self) -> None:
        unknown = set(self.dialects) - DIALECTS
        if unknown:
            raise ValueError(f"unknown dialects claimed: {sorted(unknown)}")
        unknown = set(self.features) - FEATURES
        if unknown:
            raise ValueError(f"unknown features claimed: {sorted(unknown)}")


class ClaimFailed(AssertionError):
    """A claim the adapter makes that the router, through it, did not keep."""


# -- scenarios for the fakes that ship with lmrouter ---------------------------------------------


def _fields(s: Scenario) -> dict[str, Any]:
    shared = {
        "text": s.text,
        "tool_call": s.tool_call,
        "status": s.status,
        "error_message": s.error_message,
        "first_byte_delay": s.first_byte_delay,
        "chunk_delay": s.chunk_delay,
        "chunk_chars": s.chunk_chars,
        "drop_after_chunks": s.drop_after_chunks,
    }
    return shared


_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
_OPENAI_FINISH["content_filter"] = "content_filter"


def openai_behavior(s: Scenario) -> Any:
    """For :class:`~lmrouter.testing.fake_openai.FakeOpenAI` (and fakes built on it)."""
    from lmrouter.testing.fake_openai import Behavior

    usage = None
    if s.usage:
        usage = {
            "prompt_tokens": s.usage.input,
            "completion_tokens": s.usage.output,
            "cached_tokens": s.usage.cached,
            "reasoning_tokens": s.usage.reasoning,
        }
    finish = _OPENAI_FINISH[s.finish] if s.finish else None
    return Behavior(**_fields(s), usage=usage, finish_reason=finish)


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ANTHROPIC_STOP["content_filter"] = "refusal"


def anthropic_behavior(s: Scenario) -> Any:
    """For :class:`~lmrouter.testing.fake_anthropic.FakeAnthropic`: Anthropic's
    ``input_tokens`` leaves out cache reads; it reports no reasoning tokens."""
    from lmrouter.testing.fake_anthropic import Behavior

    usage = None
    if s.usage:
        usage = {
            "input_tokens": s.usage.input - s.usage.cached,
            "output_tokens": s.usage.output,
            "cache_read_input_tokens": s.usage.cached,
            "cache_creation_input_tokens": 0,
        }
    stop = _ANTHROPIC_STOP[s.finish] if s.finish else None
    return Behavior(**_fields(s), usage=usage, stop_reason=stop)


_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_GEMINI_FINISH["content_filter"] = "SAFETY"


def gemini_behavior(s: Scenario) -> Any:
    """For :class:`~lmrouter.testing.fake_gemini.FakeGemini`: thoughts are counted apart from
    the candidates' tokens."""
    from lmrouter.testing.fake_gemini import Behavior

    usage = None
    if s.usage:
        usage = {
            "promptTokenCount": s.usage.input,
            "cachedContentTokenCount": s.usage.cached,
            "candidatesTokenCount": s.usage.output - s.usage.reasoning,
            "thoughtsTokenCount": s.usage.reasoning,
        }
    finish = _GEMINI_FINISH[s.finish] if s.finish else None
    return Behavior(**_fields(s), usage=usage, finish_reason=finish)


# -- the fixed scenarios and the router config ---------------------------------------------------

TEXT = "The quick brown fox jumps over the lazy dog."
BACKUP = "Answer from the backup route."
PRICE = {"input": Decimal("1.0"), "output": Decimal("2.0"), "cache_read": Decimal("0.25")}
FAILOVER = (401, 403, 404, 429, 500, 503)
CALLERS = (400, 413, 422)
PARALLEL = 8
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def _tokens(features: frozenset[str]) -> Tokens:
    return Tokens(
        input=1000,
        output=50,
        cached=400 if "cached_tokens" in features else 0,
        reasoning=20 if "reasoning_tokens" in features else 0,
    )


def _pico(t: Tokens) -> int:
    per_token = {name: int(value * 10**6) for name, value in PRICE.items()}
    return (
        (t.input - t.cached) * per_token["input"]
        + t.cached * per_token["cache_read"]
        + t.output * per_token["output"]
    )


def scenarios(spec: Spec) -> dict[str, Scenario]:
    """Upstream model name → what the fake does for it."""
    key = spec.key
    table = {
        "ck-text": Scenario(text=TEXT),
        "ck-tools": Scenario(text="It is sunny in Paris.", tool_call=True),
        "ck-usage": Scenario(text=TEXT, usage=_tokens(frozenset(spec.features))),
        "ck-length": Scenario(text=TEXT, finish="length"),
        "ck-backup": Scenario(text=BACKUP),
        "ck-drop": Scenario(text=TEXT, drop_after_chunks=0),
        "ck-slow-header": Scenario(text=TEXT, first_byte_delay=30.0),
        "ck-idle": Scenario(text="one two three four", chunk_chars=5, chunk_delay=1.5),
        "ck-disconnect": Scenario(text="x" * 400, chunk_chars=4, chunk_delay=0.05),
        "ck-leak-caller": Scenario(status=400, error_message=f"Invalid request from key {key}"),
        "ck-leak-route": Scenario(status=401, error_message=f"Incorrect API key provided: {key}"),
        "ck-embed": Scenario(),
    }
    for status in FAILOVER:
        table[f"ck-err-{status}"] = Scenario(status=status, error_message=f"upstream {status}")
    for status in CALLERS:
        message = f"conformance: the caller's request is wrong ({status})"
        table[f"ck-caller-{status}"] = Scenario(status=status, error_message=message)
    for i in range(PARALLEL):
        table[f"ck-par-{i}"] = Scenario(text=f"Reply number {i} of {PARALLEL}.", chunk_delay=0.01)
    return table


def routes() -> dict[str, list[tuple[str, str]]]:
    """Router model id → its routes (provider, upstream model)."""
    table: dict[str, list[tuple[str, str]]] = {
        name: [("subject", f"ck-{name}")]
        for name in ("text", "tools", "usage", "length", "idle", "disconnect", "embed")
    }
    table["leak-caller"] = [("subject", "ck-leak-caller")]
    table["leak-route"] = [("subject", "ck-leak-route"), ("subject2", "ck-leak-route")]
    for status in FAILOVER:
        table[f"failover-{status}"] = [("subject", f"ck-err-{status}"), ("subject2", "ck-backup")]
    for status in CALLERS:
        table[f"caller-{status}"] = [("subject", f"ck-caller-{status}"), ("subject2", "ck-backup")]
    table["failover-connection"] = [("dead", "ck-text"), ("subject2", "ck-backup")]
    table["failover-dropped"] = [("subject", "ck-drop"), ("subject2", "ck-backup")]
    table["timeout-connect"] = [("blackhole", "ck-text"), ("subject2", "ck-backup")]
    table["timeout-first-byte"] = [("tight", "ck-slow-header"), ("subject2", "ck-backup")]
    table["timeout-idle"] = [("tight", "ck-idle")]
    for i in range(PARALLEL):
        table[f"par-{i}"] = [("subject", f"ck-par-{i}")]
    return table


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def router_config(spec: Spec, fake_url: str, port: int, dead: int, hole: int) -> str:
    def url(port_now: int) -> str:
        return spec.base_url(fake_url.replace(f":{port}", f":{port_now}", 1))

    extra = {**spec.config}
    tight = {"connect_timeout": 0.5, "first_byte_timeout": 1.0, "idle_timeout": 0.5}
    providers = {
        "subject": (url(port), {}),
        "subject2": (url(port), {}),
        "tight": (url(port), tight),
        "dead": (url(dead), {"connect_timeout": 2.0}),
        "blackhole": (url(hole), {"connect_timeout": 0.5}),
    }
    out = [
        f'[auth]\nkeys = ["{OPERATOR}"]\n',
        # a caller that leaves: the upstream is read on for its usage, then cut after 1 s
        "[routing]\nbackoff = 0.01\ndeadline = 10\ndrain_seconds = 1\n",
    ]
    for name, (base_url, timeouts) in providers.items():
        table: dict[str, Any] = {"type": SUBJECT_TYPE, "base_url": base_url, "api_key": spec.key}
        table.update(extra)
        table.update(timeouts)
        out.append(
            f"[providers.{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
        )
    for model, chain in routes().items():
        out.append(f'[[models]]\nid = "{model}"\n')
        for provider, upstream in chain:
            out.append(
                f'  [[models.routes]]\n  provider = "{provider}"\n  model = "{upstream}"\n'
                f"  price = {_toml(PRICE)}\n"
            )
    return "\n".join(out)


# -- the harness: a fake, a router, and what went through them ------------------------------------


@dataclass
class Reply:
    """One answer as the kit reads it, whatever the dialect."""

    status: int = 200
    text: str = ""
    finish: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    cost: float | None = None
    error: str = ""
    error_type: str = ""
    request_id: str = ""
    raw: str = ""


def _import_root(cls: type) -> str | None:
    """The directory that makes ``cls``'s module importable by its name."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if module is None or path is None or cls.__module__ == "__main__":
        return None
    depth = len(cls.__module__.split("."))
    file = Path(path).resolve()
    return str(file.parents[depth] if file.name == "__init__.py" else file.parents[depth - 1])


def _dist_info(site: Path) -> None:
    """Make the kit's router plugin discoverable, as an installed distribution would be."""
    info = site / "lmrouter_conformance-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lmrouter-conformance\nVersion: 0\n"
    )
    (info / "entry_points.txt").write_text(
        "[lmrouter.plugins]\nconformance = lmrouter.testing.conformance_plugin:ConformancePlugin\n"
    )


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port whose connections never complete: a listener with a full backlog that never
    accepts, so further handshakes get no answer (what a firewalled host does)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


class Harness:
    """The fake and the router for one :class:`Spec`; a context manager."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.dialects = frozenset(spec.dialects)
        self.features = frozenset(spec.features)
        self.exchanges: list[str] = []
        self._ids = itertools.count(1)  # shared by the threads of the concurrency claim
        self._stack = contextlib.ExitStack()
        self.fake: Any = None
        self.router: RouterServer | None = None
        self.record = Path()

    def __enter__(self) -> Harness:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def _start(self) -> None:
        spec = self.spec
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="lmr-ck-")))
        site = tmp / "site"
        _dist_info(site)
        self.record = tmp / "request_end.jsonl"
        self.fake = spec.fake(spec.key)
        for model, scenario in scenarios(spec).items():
            self.fake.script(model, spec.behavior(scenario))
        self._stack.enter_context(self.fake.run_in_thread())
        hole = self._stack.enter_context(blackhole())
        config = router_config(spec, self.fake.base_url, self.fake.port, free_port(), hole)
        path = [str(site), *spec.python_path]
        root = _import_root(spec.adapter)
        if root:
            path.append(root)
        adapter = f"{spec.adapter.__module__}:{spec.adapter.__qualname__}"
        env = {"LMROUTER_CONFORMANCE_RECORD": str(self.record)}
        env["LMROUTER_CONFORMANCE_SUBJECT"] = adapter
        self.router = RouterServer(config, workdir=tmp, env=env, python_path=path)
        self._stack.enter_context(self.router)

    # -- clients ----------------------------------------------------------------------------

    def openai(self) -> openai.OpenAI:
        assert self.router is not None
        return openai.OpenAI(base_url=self.router.openai_url, api_key=OPERATOR, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        assert self.router is not None
        return anthropic.Anthropic(base_url=self.router.url, api_key=OPERATOR, max_retries=0)

    def request_id(self, label: str) -> str:
        return f"ck-{label}-{next(self._ids)}".replace(":", "-").replace(".", "-")

    def note(self, request: Any, reply: Reply) -> None:
        self.exchanges.append(
            f"request {reply.request_id}: {json.dumps(request, default=str)[:1500]}\n"
            f"response: HTTP {reply.status} {reply.raw[:3000]}"
        )

    def ends(self, request_id: str, wait: float = 10.0) -> list[dict[str, Any]]:
        """The ``request_end`` records of one request (waits for the first, then a little more
        so that a second, wrong one is seen too)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            found = self._matching(request_id)
            if found:
                time.sleep(0.2)
                return self._matching(request_id)
            time.sleep(0.02)
        return []

    def _matching(self, request_id: str) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["request_id"] == request_id]

    # -- one chat request in any dialect -------------------------------------------------------

    def chat(
        self,
        dialect: str,
        model: str,
        *,
        stream: bool = False,
        tools: bool = False,
        label: str = "chat",
        prompt: str = "Hello there!",
        history: list[Any] | None = None,
        on_first_text: Callable[[], None] | None = None,
    ) -> Reply:
        rid = self.request_id(label)
        request: dict[str, Any] = {"dialect": dialect, "model": model, "stream": stream}
        reply = Reply(request_id=rid)
        try:
            if dialect == "openai.chat":
                _openai_chat(self.openai(), request, reply, prompt, tools, history, on_first_text)
            elif dialect == "openai.responses":
                _responses(self.openai(), request, reply, prompt, tools, history, on_first_text)
            elif dialect == "anthropic.messages":
                _messages(self.anthropic(), request, reply, prompt, tools, history, on_first_text)
            else:
                raise ValueError(dialect)
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            reply.status = exc.status_code
            try:
                reply.raw = exc.response.text
            except Exception:  # an error event in a stream: the body is the event
                reply.raw += f"\n[stream error] {exc}"
            body = exc.body if isinstance(exc.body, dict) else {}
            error = body.get("error", body) if isinstance(body, dict) else {}
            if isinstance(error, dict):
                reply.error = str(error.get("message", ""))
                reply.error_type = str(error.get("type") or error.get("code") or "")
        except (openai.APIError, anthropic.APIError) as exc:  # an error event in a stream
            reply.error = str(exc)
            reply.raw += f"\n[stream error] {exc}"
        self.note(request, reply)
        return reply


def _headers(reply: Reply) -> dict[str, str]:
    return {"x-request-id": reply.request_id}


def _cost(usage: Any) -> float | None:
    if isinstance(usage, dict):
        cost = usage.get("cost")
        return float(cost) if isinstance(cost, int | float) else None
    return None


def _openai_chat(
    client: openai.OpenAI,
    request: dict[str, Any],
    reply: Reply,
    prompt: str,
    tools: bool,
    history: list[Any] | None,
    on_first_text: Callable[[], None] | None,
) -> None:
    messages = history or [{"role": "user", "content": prompt}]
    kwargs: dict[str, Any] = {"model": request["model"], "messages": messages}
    if tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": WEATHER,
                },
            }
        ]
    request.update(kwargs)
    if not request["stream"]:
        raw = client.chat.completions.with_raw_response.create(
            **kwargs, extra_headers=_headers(reply)
        )
        reply.raw = raw.http_response.text
        doc = json.loads(reply.raw)
        choice = doc["choices"][0]
        reply.text = choice["message"].get("content") or ""
        reply.finish = choice.get("finish_reason")
        for call in choice["message"].get("tool_calls") or ():
            fn = call["function"]
            reply.calls.append({"id": call["id"], "name": fn["name"], "arguments": fn["arguments"]})
        reply.cost = _cost(doc.get("usage"))
        return
    kwargs["stream_options"] = {"include_usage": True}
    stream = client.chat.completions.create(**kwargs, stream=True, extra_headers=_headers(reply))
    calls: dict[int, dict[str, Any]] = {}
    lines = []
    with stream:
        for chunk in stream:
            doc = chunk.model_dump(exclude_unset=True)
            lines.append(json.dumps(doc))
            reply.raw = "\n".join(lines)
            if chunk.usage is not None:
                reply.cost = _cost(doc.get("usage"))
            for choice in chunk.choices:
                if choice.delta.content:
                    reply.text += choice.delta.content
                    if on_first_text:
                        on_first_text()
                        return
                for call in choice.delta.tool_calls or ():
                    slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += call.id or ""
                    if call.function:
                        slot["name"] += call.function.name or ""
                        slot["arguments"] += call.function.arguments or ""
                reply.finish = choice.finish_reason or reply.finish
    reply.calls = [calls[i] for i in sorted(calls)]


_RESPONSES_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _read_response(doc: dict[str, Any], reply: Reply) -> None:
    reply.text = ""
    reply.calls = []
    for item in doc.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    reply.text += part.get("text", "")
        elif item.get("type") == "function_call":
            reply.calls.append(
                {"id": item["call_id"], "name": item["name"], "arguments": item["arguments"]}
            )
    if doc.get("status") == "incomplete":
        reason = (doc.get("incomplete_details") or {}).get("reason")
        reply.finish = _RESPONSES_INCOMPLETE.get(str(reason), reason)
    elif doc.get("status") == "completed":
        reply.finish = "tool_calls" if reply.calls else "stop"
    else:
        reply.finish = doc.get("status")
    reply.cost = _cost(doc.get("usage"))


def _responses(
    client: openai.OpenAI,
    request: dict[str, Any],
    reply: Reply,
    prompt: str,
    tools: bool,
    history: list[Any] | None,
    on_first_text: Callable[[], None] | None,
) -> None:
    kwargs: dict[str, Any] = {
        "model": request["model"],
        "input": history or [{"role": "user", "content": prompt}],
    }
    if tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER,
                "strict": False,
            }
        ]
    request.update(kwargs)
    if not request["stream"]:
        raw = client.responses.with_raw_response.create(**kwargs, extra_headers=_headers(reply))
        reply.raw = raw.http_response.text
        _read_response(json.loads(reply.raw), reply)
        return
    stream = client.responses.create(**kwargs, stream=True, extra_headers=_headers(reply))
    lines = []
    text = ""
    with stream:
        for event in stream:
            doc = event.model_dump(exclude_unset=True)
            lines.append(json.dumps(doc))
            reply.raw = "\n".join(lines)
            if event.type == "response.output_text.delta":
                text += event.delta
                reply.text = text
                if on_first_text:
                    on_first_text()
                    return
            elif event.type in ("response.completed", "response.incomplete"):
                _read_response(doc["response"], reply)
                if reply.text != text:  # the deltas must add up to the final text
                    reply.text = f"{text!r} (deltas) != {reply.text!r} (final)"
            elif event.type in ("response.failed", "error"):
                reply.error = json.dumps(doc)


_ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
_ANTHROPIC_FINISH.update({"tool_use": "tool_calls", "refusal": "content_filter"})


def _messages(
    client: anthropic.Anthropic,
    request: dict[str, Any],
    reply: Reply,
    prompt: str,
    tools: bool,
    history: list[Any] | None,
    on_first_text: Callable[[], None] | None,
) -> None:
    kwargs: dict[str, Any] = {
        "model": request["model"],
        "max_tokens": 1024,
        "messages": history or [{"role": "user", "content": prompt}],
    }
    if tools:
        kwargs["tools"] = [
            {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER}
        ]
    request.update(kwargs)
    if not request["stream"]:
        raw = client.messages.with_raw_response.create(**kwargs, extra_headers=_headers(reply))
        reply.raw = raw.http_response.text
        doc = json.loads(reply.raw)
        for block in doc.get("content") or ():
            if block.get("type") == "text":
                reply.text += block["text"]
            elif block.get("type") == "tool_use":
                arguments = json.dumps(block.get("input"))
                reply.calls.append(
                    {"id": block["id"], "name": block["name"], "arguments": arguments}
                )
        stop = doc.get("stop_reason")
        reply.finish = _ANTHROPIC_FINISH.get(stop, stop)
        reply.cost = _cost(doc.get("usage"))
        return
    stream = client.messages.create(**kwargs, stream=True, extra_headers=_headers(reply))
    lines = []
    blocks: dict[int, dict[str, Any]] = {}
    with stream:
        for event in stream:
            doc = event.model_dump(exclude_unset=True)
            lines.append(json.dumps(doc))
            reply.raw = "\n".join(lines)
            if event.type == "content_block_start" and doc["content_block"]["type"] == "tool_use":
                block = doc["content_block"]
                blocks[event.index] = {"id": block["id"], "name": block["name"], "arguments": ""}
            elif event.type == "content_block_delta":
                delta = doc["delta"]
                if delta["type"] == "text_delta":
                    reply.text += delta["text"]
                    if on_first_text:
                        on_first_text()
                        return
                elif delta["type"] == "input_json_delta":
                    blocks[event.index]["arguments"] += delta["partial_json"]
            elif event.type == "message_delta":
                stop = doc["delta"].get("stop_reason")
                reply.finish = _ANTHROPIC_FINISH.get(stop, stop)
                reply.cost = _cost(doc.get("usage"))
    reply.calls = [blocks[i] for i in sorted(blocks)]


def _tool_history(dialect: str, prompt: str, call: dict[str, Any]) -> list[Any]:
    """The conversation after a tool call, with the tool's result, in ``dialect``."""
    result = '{"weather": "sunny", "celsius": 21}'
    if dialect == "openai.chat":
        return [
            {"role": "user", "content": prompt},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": result},
        ]
    if dialect == "openai.responses":
        return [
            {"role": "user", "content": prompt},
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": call["name"],
                "arguments": call["arguments"],
            },
            {"type": "function_call_output", "call_id": call["id"], "output": result},
        ]
    return [
        {"role": "user", "content": prompt},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["name"],
                    "input": json.loads(call["arguments"] or "{}"),
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": result}],
        },
    ]


# -- the claims ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One promise the adapter makes; :meth:`check` keeps it or raises :class:`ClaimFailed`."""

    id: str
    run: Callable[[Harness], None]

    def check(self, harness: Harness) -> None:
        harness.exchanges.clear()
        try:
            self.run(harness)
        except ClaimFailed as exc:
            shown = "\n\n".join(harness.exchanges[-4:]) or "(no request was made)"
            raise ClaimFailed(
                f"conformance claim {self.id!r} failed: {exc}\n\n--- what broke it ---\n{shown}"
            ) from None


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise ClaimFailed(message)


def _chat_dialect(h: Harness) -> str:
    for dialect in ("openai.chat", "anthropic.messages", "openai.responses"):
        if dialect in h.dialects:
            return dialect
    raise ClaimFailed("no chat dialect claimed")


def _text(dialect: str, stream: bool) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        reply = h.chat(dialect, "text", stream=stream, label="text")
        expect(reply.status == 200, f"expected 200, got {reply.status}: {reply.error}")
        expect(reply.text == TEXT, f"expected the text {TEXT!r}, got {reply.text!r}")
        expect(reply.finish == "stop", f"expected finish reason 'stop', got {reply.finish!r}")
        expect(not reply.calls, f"expected no tool calls, got {reply.calls}")

    return run


def _length(dialect: str, stream: bool) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        reply = h.chat(dialect, "length", stream=stream, label="length")
        expect(reply.status == 200, f"expected 200, got {reply.status}: {reply.error}")
        expect(
            reply.finish == "length",
            f"the upstream stopped at its output limit: expected finish 'length', got "
            f"{reply.finish!r}",
        )

    return run


def _tools(dialect: str, stream: bool) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        prompt = "What is the weather in Paris?"
        first = h.chat(dialect, "tools", stream=stream, tools=True, label="tools", prompt=prompt)
        expect(first.status == 200, f"expected 200, got {first.status}: {first.error}")
        expect(len(first.calls) == 1, f"expected one tool call, got {first.calls}")
        call = first.calls[0]
        expect(call["name"] == "get_weather", f"expected a call of get_weather, got {call}")
        expect(call["id"], f"the tool call has no id: {call}")
        try:
            arguments = json.loads(call["arguments"])
        except ValueError:
            arguments = None
        expect(
            isinstance(arguments, dict) and isinstance(arguments.get("city"), str),
            f"the arguments are not the JSON object the schema asks for: {call['arguments']!r}",
        )
        expect(first.finish == "tool_calls", f"expected finish 'tool_calls', got {first.finish!r}")
        history = _tool_history(dialect, prompt, call)
        second = h.chat(dialect, "tools", stream=stream, tools=True, label="tools", history=history)
        expect(second.status == 200, f"the tool result: expected 200, got {second.status}")
        expect(
            second.text == "It is sunny in Paris." and not second.calls,
            f"after the tool result the upstream answers in text, got {second.text!r} "
            f"and calls {second.calls}",
        )
        expect(second.finish == "stop", f"expected finish 'stop', got {second.finish!r}")

    return run


def _usage(dialect: str, stream: bool) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        tokens = _tokens(h.features)
        reply = h.chat(dialect, "usage", stream=stream, label="usage")
        expect(reply.status == 200, f"expected 200, got {reply.status}: {reply.error}")
        end = _one_end(h, reply.request_id, "no request_end record for the request")
        usage = end["usage"] or {}
        got = {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "cached_tokens": usage.get("cached_tokens"),
            "reasoning_tokens": usage.get("reasoning_tokens"),
            "estimated": usage.get("estimated"),
        }
        want = {
            "prompt_tokens": tokens.input,
            "completion_tokens": tokens.output,
            "cached_tokens": tokens.cached,
            "reasoning_tokens": tokens.reasoning,
            "estimated": False,
        }
        expect(got == want, f"the upstream reported {want}, request_end got {got}")
        pico = _pico(tokens)
        expect(
            end["cost_pico"] == pico,
            f"cost in request_end: expected {pico} pico-USD, got {end['cost_pico']}",
        )
        expect(
            reply.cost == pico / 10**12,
            f"usage.cost in the response: expected {pico / 10**12} USD, got {reply.cost}",
        )

    return run


def _embeddings(h: Harness) -> None:
    client = h.openai()
    reply = Reply(request_id=h.request_id("embed"))
    request: dict[str, Any] = {"model": "embed", "input": ["first text", "second text"]}
    try:
        raw = client.embeddings.with_raw_response.create(
            **request, encoding_format="float", extra_headers=_headers(reply)
        )
        reply.raw = raw.http_response.text
    except openai.APIStatusError as exc:
        reply.status, reply.raw = exc.status_code, exc.response.text
    h.note(request, reply)
    expect(reply.status == 200, f"expected 200, got {reply.status}")
    doc = json.loads(reply.raw)
    vectors = [item["embedding"] for item in doc["data"]]
    expect(len(vectors) == 2, f"expected 2 vectors, got {len(vectors)}")
    expect(
        all(isinstance(v, list) and v and len(v) == len(vectors[0]) for v in vectors),
        "the vectors are empty or differ in length",
    )
    expect(vectors[0] != vectors[1], "two different texts got the same vector")
    end = _one_end(h, reply.request_id, "no request_end record for the request")
    prompt = doc["usage"]["prompt_tokens"]
    expect(prompt > 0, f"no prompt tokens reported: {doc['usage']}")
    pico = prompt * int(PRICE["input"] * 10**6)
    expect(end["cost_pico"] == pico, f"expected cost {pico} pico-USD, got {end['cost_pico']}")
    expect(_cost(doc["usage"]) == pico / 10**12, f"usage.cost is not {pico / 10**12}")


def _failover(status: int | str, stream: bool) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        dialect = _chat_dialect(h)
        reply = h.chat(dialect, f"failover-{status}", stream=stream, label=f"failover-{status}")
        expect(
            reply.status == 200 and reply.text == BACKUP,
            f"a {status} from the first route must move on to the next one; the caller got "
            f"HTTP {reply.status} {reply.text or reply.error!r}",
        )
        end = _one_end(h, reply.request_id, "no request_end record for the request")
        first = end["attempts"][0] if end["attempts"] else None
        expect(
            len(end["attempts"]) == 2 and end["attempts"][1][0] == "subject2",
            f"expected two attempts, the second on the next route: {end['attempts']}",
        )
        if isinstance(status, int):
            expect(first and first[1] == status, f"first attempt not recorded as {status}: {first}")

    return run


def _dialect_shaped(dialect: str, raw: str) -> bool:
    """Whether an error body has the shape of ``dialect``'s errors."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return False
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return False
    if dialect == "anthropic.messages":
        return doc.get("type") == "error" and isinstance(error.get("type"), str)
    return "type" in error or "code" in error


def _callers_fault(status: int, dialect: str) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        before = sum(1 for r in h.fake.requests if "ck-backup" in json.dumps(r.json) + r.path)
        reply = h.chat(dialect, f"caller-{status}", label=f"caller-{status}")
        answered = 400 if status == 422 else status
        expect(
            reply.status == answered,
            f"a {status} is the caller's mistake: expected HTTP {answered} at once, got "
            f"{reply.status} {reply.text or reply.error!r}",
        )
        expect(
            "the caller's request is wrong" in reply.error,
            f"the provider's own message must reach the caller, got {reply.error!r}",
        )
        expect(
            _dialect_shaped(dialect, reply.raw),
            f"the error must be in the caller's dialect ({dialect}), got {reply.raw[:300]!r}",
        )
        after = sum(1 for r in h.fake.requests if "ck-backup" in json.dumps(r.json) + r.path)
        expect(after == before, "the next route was tried for the caller's own mistake")

    return run


def _timeout(name: str) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        reply = h.chat(_chat_dialect(h), f"timeout-{name}", label=f"timeout-{name}")
        expect(
            reply.status == 200 and reply.text == BACKUP,
            f"the {name} timeout must end the attempt and move on to the next route within "
            f"the request's deadline; the caller got HTTP {reply.status} "
            f"{reply.text or reply.error!r}",
        )

    return run


def _idle(h: Harness) -> None:
    dialect = _chat_dialect(h)
    full = "one two three four"
    reply = h.chat(dialect, "timeout-idle", stream=True, label="timeout-idle")
    expect(
        reply.text != full,
        "the upstream fell silent for longer than idle_timeout mid-stream; the stream must "
        f"end there, but the caller got all of it: {reply.text!r}",
    )
    expect(full.startswith(reply.text), f"the caller got text never sent: {reply.text!r}")
    end = _one_end(h, reply.request_id, "no request_end record for the timed-out stream")
    expect(end["status"] != "ok", f"a timed-out stream was recorded as {end['status']!r}")


def _disconnect(h: Harness) -> None:
    dialect = _chat_dialect(h)
    before = len(h.fake.disconnects)
    reply = h.chat(
        dialect, "disconnect", stream=True, label="disconnect", on_first_text=lambda: None
    )
    expect(reply.text, f"the stream never started: HTTP {reply.status} {reply.error!r}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(h.fake.disconnects) == before:
        time.sleep(0.02)
    expect(
        len(h.fake.disconnects) > before,
        "the caller went away mid-stream but the upstream stream was never closed",
    )
    ends = h.ends(reply.request_id)
    expect(len(ends) == 1, f"expected exactly one request_end record, got {ends}")
    expect(
        ends[0]["status"] == "client_disconnected",
        f"expected status 'client_disconnected', got {ends[0]['status']!r}",
    )
    expect(ends[0]["usage"], "a cut stream must still settle its usage (estimated)")


def _secrets(h: Harness) -> None:
    key = h.spec.key
    for dialect in sorted(h.dialects & CHAT_DIALECTS):
        for model in ("leak-caller", "leak-route"):
            for stream in (False, True):
                reply = h.chat(dialect, model, stream=stream, label=model)
                expect(reply.status >= 400, f"expected an error, got HTTP {reply.status}")
                expect(key not in reply.raw, "the provider key appears in the response")
                expect(key not in reply.error, "the provider key appears in the error message")
    assert h.router is not None
    logs = h.router.logs()
    lines = [line for line in logs.splitlines() if key in line]
    expect(not lines, f"the provider key appears in the router's log: {lines[:3]}")


def _concurrency(h: Harness) -> None:
    dialect = _chat_dialect(h)

    def one(i: int) -> tuple[int, Reply]:
        return i, h.chat(dialect, f"par-{i}", stream=True, label=f"par-{i}")

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(one, range(PARALLEL)))
    for i, reply in results:
        want = f"Reply number {i} of {PARALLEL}."
        expect(
            reply.status == 200 and reply.text == want,
            f"concurrent request {i}: expected {want!r}, got HTTP {reply.status} {reply.text!r}",
        )


def claims(spec: Spec) -> list[Claim]:
    """Every claim ``spec`` makes, in a stable order."""
    dialects = frozenset(spec.dialects)
    features = frozenset(spec.features)
    out: list[Claim] = []
    chats = [d for d in ("openai.chat", "openai.responses", "anthropic.messages") if d in dialects]
    for dialect in chats:
        for stream in (False, True):
            mode = "stream" if stream else "whole"
            out.append(Claim(f"{dialect}:text:{mode}", _text(dialect, stream)))
            out.append(Claim(f"{dialect}:finish-length:{mode}", _length(dialect, stream)))
            if "tools" in features:
                out.append(Claim(f"{dialect}:tools:{mode}", _tools(dialect, stream)))
            if "usage" in features:
                out.append(Claim(f"{dialect}:usage:{mode}", _usage(dialect, stream)))
    if "openai.embeddings" in dialects:
        out.append(Claim("openai.embeddings", _embeddings))
    if chats:
        out += [Claim(f"errors:failover:{s}", _failover(s, False)) for s in FAILOVER]
        out.append(Claim("errors:failover:429:stream", _failover(429, True)))
        out.append(Claim("errors:failover:connection", _failover("connection", False)))
        out.append(Claim("errors:failover:dropped", _failover("dropped", False)))
        out += [
            Claim(f"errors:callers-fault:{status}:{dialect}", _callers_fault(status, dialect))
            for dialect in chats
            for status in CALLERS
        ]
        out.append(Claim("timeouts:connect", _timeout("connect")))
        out.append(Claim("timeouts:first-byte", _timeout("first-byte")))
        out.append(Claim("timeouts:idle", _idle))
        out.append(Claim("disconnect:settles", _disconnect))
        out.append(Claim("concurrency:no-crosstalk", _concurrency))
        out.append(Claim("secrets:key-never-shown", _secrets))
    return out


# -- pytest --------------------------------------------------------------------------------------


class Suite:
    """Subclass with ``spec = Spec(...)`` (named ``Test…``) to run every claim as a test, with
    one fake and one router for the whole class."""

    spec: ClassVar[Spec]

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_harness(cls) -> Iterator[Harness]:
        with Harness(cls.spec) as harness:
            yield harness

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "claim" in metafunc.fixturenames:
            found = claims(self.spec)
            metafunc.parametrize("claim", found, ids=[claim.id for claim in found])

    def test_claim(self, conformance_harness: Harness, claim: Claim) -> None:
        claim.check(conformance_harness)


def suite(spec: Spec, name: str = "TestConformance") -> type[Suite]:
    """A :class:`Suite` subclass for ``spec``: ``TestConformance = conformance.suite(SPEC)``."""
    return type(name, (Suite,), {"spec": spec})


def _one_end(h: Any, request_id: str, missing: str) -> dict[str, Any]:
    """The one request_end record of a request: none fails with ``missing``, two fail too."""
    ends: list[dict[str, Any]] = h.ends(request_id)
    expect(ends, missing)
    expect(len(ends) == 1, f"request_end ran {len(ends)} times for one request")
    return ends[0]
