"""The otel plugin against the real router, a fake OpenAI upstream and a real OTLP/HTTP
receiver that decodes the protobuf the SDK's exporter sends: the spans and their structure, the
GenAI attributes, the caller's trace continued and sent upstream, and no content by default."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer, free_port

KEY = "sk-admin-otel-e2e"
SECRET = "the-secret-prompt-7f3a"
ANSWER = "the-secret-answer-91c2"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP collector on loopback: POST /v1/traces, protobuf, spans kept by trace id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.changed = threading.Condition()

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        with self.changed:
            self.content_types.append(request.content_type)
            for resource_spans in message.resource_spans:
                service = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }.get("service.name")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(_decoded(span, service))
            self.changed.notify_all()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def wait(self, trace_id: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The spans of ``trace_id`` once ``count`` of them came (the exporter batches)."""

        def got() -> list[dict[str, Any]]:
            return [s for s in self.spans if s["trace_id"] == trace_id]

        with self.changed:
            assert self.changed.wait_for(lambda: len(got()) >= count, timeout), got()
            return got()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> Iterator[str]:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield self.url
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in v.array_value.values]
    return getattr(v, kind) if kind else None


def _decoded(span: Any, service: str | None) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent": span.parent_span_id.hex() or None,
        "kind": span.kind,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "status": span.status.code,
        "attributes": {a.key: _value(a.value) for a in span.attributes},
        "service": service,
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield from _serving(r)


def _serving(r: Receiver) -> Iterator[Receiver]:
    for _ in r.run():
        yield r


DISABLED = ["credits", "ratelimit", "dashboard", "stripe", "metrics", "accounts"]


def _config(
    base_url: str,
    endpoint: str,
    capture: bool = False,
    ratio: float = 1,
    disabled: list[str] = DISABLED,
    **sections: Any,
) -> str:
    return kit.config(
        admin=KEY,
        disabled=disabled,
        storage={"url": "sqlite:///otel.db"},
        otel={"endpoint": endpoint, "capture_content": capture, "sample_ratio": ratio},
        providers={
            "broken": kit.provider("openai", base_url),
            "up": kit.provider("openai", base_url),
        },
        models={
            "gpt": kit.route("up", "gpt-x"),
            "fallback": [kit.route("broken", "gpt-broken"), kit.route("up", "gpt-x")],
        },
        **sections,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key="sk-up")
    fake.script("gpt-x", Behavior(text=ANSWER))
    fake.script("gpt-broken", Behavior(status=500))
    with fake.run_in_thread() as base_url:
        yield fake, base_url


# Export within 50 ms of a span ending instead of the SDK's 5 s, so that the test waits less.
FAST = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture(scope="module")
def router(fake: tuple[FakeOpenAI, str], receiver: Receiver) -> Iterator[RouterServer]:
    with RouterServer(_config(fake[1], receiver.url), env=FAST) as server:
        yield server


def _client(router: RouterServer, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=router.openai_url, api_key=KEY, max_retries=0, default_headers=headers
    )


def _traceparent(value: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled (bit 2: a random trace id)
    return trace_id, span_id


def test_a_request_is_one_trace_continued_from_the_caller_and_sent_upstream(
    router: RouterServer, receiver: Receiver, fake: tuple[FakeOpenAI, str]
) -> None:
    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    answer = _client(router, traceparent=caller).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": SECRET}]
    )
    assert answer.choices[0].message.content == ANSWER
    spans = receiver.wait(CALLER_TRACE, 4)
    by_name = {s["name"]: s for s in spans}
    assert sorted(by_name) == ["admission", "attempt up", "chat gpt", "relay"]
    root = by_name["chat gpt"]
    assert root["parent"] == CALLER_SPAN  # the caller's span is the request's parent
    assert root["service"] == "lmrouter"
    for name in ("admission", "attempt up", "relay"):
        assert by_name[name]["parent"] == root["span_id"], name
        assert root["start"] <= by_name[name]["start"] <= by_name[name]["end"] <= root["end"]
    assert by_name["admission"]["end"] <= by_name["attempt up"]["start"]
    # what went upstream carries the attempt's span, in the same trace
    upstream = fake[0].requests[-1].headers["traceparent"]
    assert _traceparent(upstream) == (CALLER_TRACE, by_name["attempt up"]["span_id"])

    attrs = root["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt"
    assert attrs["gen_ai.provider.name"] == "up"
    assert attrs["gen_ai.response.model"] == "gpt-x"
    assert attrs["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens > 0
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.response.id"] == answer.id
    assert attrs["gen_ai.response.finish_reasons"] == [answer.choices[0].finish_reason] == ["stop"]
    attempt = by_name["attempt up"]["attributes"]
    assert attempt["gen_ai.request.model"] == "gpt-x"
    assert attempt["gen_ai.system"] == "up"
    assert attempt["http.response.status_code"] == 200
    # never the prompt nor the answer unless the operator asks
    everything = repr(spans)
    assert SECRET not in everything and ANSWER not in everything


def test_without_a_traceparent_a_new_trace_starts_and_each_fallback_is_a_span(
    router: RouterServer, receiver: Receiver, fake: tuple[FakeOpenAI, str]
) -> None:
    stream = _client(router).chat.completions.create(
        model="fallback", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert ANSWER in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    trace_id, _ = _traceparent(fake[0].requests[-1].headers["traceparent"])
    assert trace_id != CALLER_TRACE
    spans = receiver.wait(trace_id, 5)
    names = sorted(s["name"] for s in spans)
    assert names == ["admission", "attempt broken", "attempt up", "chat fallback", "relay"]
    root = next(s for s in spans if s["name"] == "chat fallback")
    assert root["parent"] is None
    broken = next(s for s in spans if s["name"] == "attempt broken")
    up = next(s for s in spans if s["name"] == "attempt up")
    assert broken["attributes"]["http.response.status_code"] == 500
    assert broken["status"] == 2  # STATUS_CODE_ERROR
    assert broken["end"] <= up["start"]
    assert up["attributes"]["http.response.status_code"] == 200
    # the broken provider was sent its own attempt's span
    sent = [
        r.headers["traceparent"] for r in fake[0].requests if r.json.get("model") == "gpt-broken"
    ]
    assert _traceparent(sent[-1]) == (trace_id, broken["span_id"])
    assert root["attributes"]["lmrouter.stream"] is True


def test_content_is_recorded_when_the_operator_asks(fake: tuple[FakeOpenAI, str]) -> None:
    r = Receiver()
    for url in r.run():
        text = _config(fake[1], url, capture=True)
        with RouterServer(text, env=FAST) as router:
            caller = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
            _client(router, traceparent=caller).chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": SECRET}]
            )
            spans = r.wait("1bf7651916cd43dd8448eb211c80319c", 4)
        root = next(s for s in spans if s["name"] == "chat gpt")
        assert SECRET in root["attributes"]["gen_ai.input.messages"]


def test_spans_still_batched_are_flushed_at_shutdown(fake: tuple[FakeOpenAI, str]) -> None:
    r = Receiver()
    for url in r.run():
        # An export delay far longer than the test: only the flush at shutdown sends them.
        with RouterServer(
            _config(fake[1], url), env={"OTEL_BSP_SCHEDULE_DELAY": "600000"}
        ) as router:
            caller = "00-2cf7651916cd43dd8448eb211c80319c-d7ad6b7169203331-01"
            _client(router, traceparent=caller).chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "hi"}]
            )
            assert r.spans == []
        assert len(r.wait("2cf7651916cd43dd8448eb211c80319c", 4, timeout=1)) == 4


def test_embeddings_are_named_so_and_count_their_input(
    router: RouterServer, receiver: Receiver
) -> None:
    caller = "00-3df7651916cd43dd8448eb211c80319c-e7ad6b7169203331-01"
    result = _client(router, traceparent=caller).embeddings.create(model="gpt", input=SECRET)
    spans = receiver.wait("3df7651916cd43dd8448eb211c80319c", 4)
    root = next(s for s in spans if s["parent"] == "e7ad6b7169203331")
    assert root["name"] == "embeddings gpt"
    assert root["attributes"]["gen_ai.operation.name"] == "embeddings"
    assert root["attributes"]["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert SECRET not in repr(spans)


def test_a_request_refused_at_admission_is_a_trace_without_attempts(
    fake: tuple[FakeOpenAI, str],
) -> None:
    r = Receiver()
    for url in r.run():
        # the rate limiter on, at one request a minute
        on = [name for name in DISABLED if name != "ratelimit"]
        text = _config(fake[1], url, disabled=on, ratelimit={"rpm": 1})
        with RouterServer(text, env=FAST) as router:
            _client(router).chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "hi"}]
            )
            sent = len(fake[0].requests)
            caller = "00-4ef7651916cd43dd8448eb211c80319c-f7ad6b7169203331-01"
            with pytest.raises(openai.RateLimitError):
                _client(router, traceparent=caller).chat.completions.create(
                    model="gpt", messages=[{"role": "user", "content": "hi"}]
                )
            spans = r.wait("4ef7651916cd43dd8448eb211c80319c", 2)
        assert len(fake[0].requests) == sent  # nothing went upstream
        assert sorted(s["name"] for s in spans) == ["admission", "chat gpt"]
        root = next(s for s in spans if s["name"] == "chat gpt")
        assert root["attributes"]["http.response.status_code"] == 429
        assert root["attributes"]["lmrouter.outcome"] == "refused"
        assert "gen_ai.usage.input_tokens" not in root["attributes"]


def test_sampling_keeps_whole_traces_and_follows_the_callers_choice(
    fake: tuple[FakeOpenAI, str],
) -> None:
    r = Receiver()
    for url in r.run():
        with RouterServer(_config(fake[1], url, ratio=0), env=FAST) as router:
            client = _client(router)
            client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "a"}])
            unsampled, flagged = _traceparent_any(fake[0].requests[-1].headers["traceparent"])
            assert not flagged  # upstream is told the trace is not recorded
            # the caller sampled this one: it is recorded whole whatever the ratio
            caller = "00-4ef7651916cd43dd8448eb211c80319c-f7ad6b7169203331-01"
            _client(router, traceparent=caller).chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "b"}]
            )
            assert len(r.wait("4ef7651916cd43dd8448eb211c80319c", 4)) == 4
        # after the shutdown flush: nothing of the trace the ratio left out
        assert {s["trace_id"] for s in r.spans} == {"4ef7651916cd43dd8448eb211c80319c"}
        assert unsampled != "4ef7651916cd43dd8448eb211c80319c"


def _traceparent_any(value: str) -> tuple[str, bool]:
    """The trace id and the sampled flag of a traceparent, whichever the flag says."""
    _, trace_id, _, flags = value.split("-")
    return trace_id, bool(int(flags, 16) & 1)
