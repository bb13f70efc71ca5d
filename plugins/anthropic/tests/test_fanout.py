"""The fan-out that gives Anthropic routes ``n > 1``: copies sent at once, one failure or
error response standing for all (the others closed), answers merged with usage summed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmrouter import UpstreamFailure, UpstreamRequest, Usage, ir
from lmrouter_anthropic import fanout


class Response:
    def __init__(self, status: int, body: bytes = b"{}") -> None:
        self.status = status
        self.body = body
        self.closed = self.released = False

    async def read(self) -> bytes:
        return self.body

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


def opener(results: list[Any]) -> tuple[Any, list[UpstreamRequest]]:
    sent: list[UpstreamRequest] = []
    queue = list(results)

    async def open_one(request: UpstreamRequest, *, stream: bool, budget: float) -> Any:
        sent.append(request)
        result = queue.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    return open_one, sent


REQUEST = fanout.fan_out(UpstreamRequest("http://x/v1/messages", {}, b'{"a":1}'), 3)


def test_copies_are_sent_and_read_as_one_array() -> None:
    responses = [Response(200, b'{"i":%d}' % i) for i in range(3)]
    open_one, sent = opener(responses)
    merged = asyncio.run(fanout.open_all(open_one, REQUEST, stream=False, budget=5))
    assert sent == [UpstreamRequest("http://x/v1/messages", {}, b'{"a":1}')] * 3
    assert type(sent[0]) is UpstreamRequest  # the plain request: no fan-out marker upstream
    assert asyncio.run(merged.read()) == b'[{"i":0},{"i":1},{"i":2}]'
    merged.release()
    assert all(r.released for r in responses)


def test_an_error_response_stands_for_all_and_the_others_close() -> None:
    ok, bad, other = Response(200), Response(429), Response(200)
    open_one, _ = opener([ok, bad, other])
    assert asyncio.run(fanout.open_all(open_one, REQUEST, stream=False, budget=5)) is bad
    assert ok.closed and other.closed and not bad.closed


def test_a_failure_fails_the_attempt_and_closes_what_opened() -> None:
    ok = Response(200)
    failure = UpstreamFailure("down", status=502, retryable=True, upstream_status=None)
    open_one, _ = opener([ok, failure, Response(200)])
    with pytest.raises(UpstreamFailure):
        asyncio.run(fanout.open_all(open_one, REQUEST, stream=False, budget=5))
    assert ok.closed


def test_answers_merge_into_choices_with_usage_summed() -> None:
    def answer(text: str, finish: ir.FinishReason, tokens: int) -> ir.ChatResponse:
        usage = Usage(prompt_tokens=10, completion_tokens=tokens, cached_tokens=4)
        return ir.ChatResponse(
            id=f"msg_{text}", model="c", parts=[ir.Text(text=text)], finish_reason=finish,
            usage=usage,
        )  # fmt: skip

    merged = fanout.merge([answer("a", "stop", 3), answer("b", "length", 5)])
    assert merged.id == "msg_a" and merged.parts == [ir.Text(text="a")]
    assert merged.choices == [ir.Choice(parts=[ir.Text(text="b")], finish_reason="length")]
    assert merged.usage == Usage(prompt_tokens=20, completion_tokens=8, cached_tokens=8)


def test_a_caller_gone_closes_every_copy_that_opened() -> None:
    opened = [Response(200), Response(200)]
    blocked = asyncio.Event()

    async def main() -> None:
        async def open_one(request: UpstreamRequest, *, stream: bool, budget: float) -> Any:
            if opened:
                return opened.pop(0)
            blocked.set()
            await asyncio.Event().wait()  # the third copy never answers

        task = asyncio.ensure_future(fanout.open_all(open_one, REQUEST, stream=False, budget=5))
        await blocked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    first, second = opened
    asyncio.run(main())
    assert first.closed and second.closed
