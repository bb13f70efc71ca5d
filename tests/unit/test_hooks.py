"""Per-request hooks resolved once (lmrouter.plugins.Hook): pluggy's order, pluggy's argument
matching, awaitables awaited in turn, and pluggy itself when tracing or wrapping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from lmrouter import hookimpl
from lmrouter.errors import RouterError
from lmrouter.plugins import Hook, PluginManager


class Recorder:
    """Implements the per-request hooks; records every call as (name, hook, args)."""

    def __init__(self, name: str, calls: list[tuple[str, str, tuple[Any, ...]]], **answers: Any):
        self.name = name
        self.calls = calls
        self.answers = answers

    def _answer(self, hook: str, *args: Any) -> Any:
        self.calls.append((self.name, hook, args))
        answer = self.answers.get(hook)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer()
        return answer

    @hookimpl
    def lmrouter_authenticate(self, gateway: Any, api_key: str, headers: Any) -> Any:
        return self._answer("authenticate", gateway, api_key, headers)

    @hookimpl
    def lmrouter_admit(self, ctx: Any) -> Any:
        return self._answer("admit", ctx)

    @hookimpl
    def lmrouter_request_end(self, ctx: Any, outcome: Any) -> Any:
        return self._answer("request_end", ctx, outcome)


class First(Recorder):
    @hookimpl(tryfirst=True)
    def lmrouter_admit(self, ctx: Any) -> Any:
        return self._answer("admit", ctx)


class OnlyKey:
    """Takes fewer arguments than the spec names, as pluggy allows."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    @hookimpl
    def lmrouter_authenticate(self, api_key: str) -> Any:
        self.seen.append(api_key)
        return f"principal for {api_key}"


def build(*plugins: Any, traced: bool = False) -> PluginManager:
    pm = PluginManager()
    for plugin in plugins:
        pm.register(plugin)
    pm.traced = traced
    return pm


@pytest.fixture(params=[False, True], ids=["direct", "through-pluggy"])
def traced(request: pytest.FixtureRequest) -> Iterator[bool]:
    yield request.param


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_calls_in_pluggy_order_with_every_argument(traced: bool) -> None:
    calls: list[tuple[str, str, tuple[Any, ...]]] = []
    # pluggy calls the last registered first, and tryfirst before both
    pm = build(First("a", calls), Recorder("b", calls), Recorder("c", calls), traced=traced)
    run(Hook(pm, "lmrouter_admit").call("ctx"))
    assert calls == [("a", "admit", ("ctx",)), ("c", "admit", ("ctx",)), ("b", "admit", ("ctx",))]
    calls.clear()
    run(Hook(pm, "lmrouter_request_end").call("ctx", "outcome"))
    assert [c[0] for c in calls] == ["c", "b", "a"]
    assert {c[2] for c in calls} == {("ctx", "outcome")}


def test_first_answer_wins_and_later_plugins_are_not_asked(traced: bool) -> None:
    calls: list[tuple[str, str, tuple[Any, ...]]] = []

    async def later() -> str:
        return "from c"

    pm = build(
        Recorder("a", calls, authenticate="from a"),
        Recorder("b", calls),
        Recorder("c", calls, authenticate=later),  # registered last: asked first
        traced=traced,
    )
    assert run(Hook(pm, "lmrouter_authenticate").first("gw", "sk", {})) == "from c"
    if not traced:  # pluggy calls every implementation; the direct path stops at the answer
        assert [c[0] for c in calls] == ["c"]


def test_none_from_everyone_is_none_and_no_plugin_is_falsy() -> None:
    calls: list[tuple[str, str, tuple[Any, ...]]] = []
    pm = build(Recorder("a", calls), Recorder("b", calls))
    assert run(Hook(pm, "lmrouter_authenticate").first("gw", "sk", {})) is None
    assert len(calls) == 2
    assert Hook(pm, "lmrouter_admit")
    assert not Hook(build(), "lmrouter_admit")
    assert not Hook(pm, "lmrouter_upstream_key")


def test_an_implementation_may_take_fewer_arguments(traced: bool) -> None:
    seen: list[str] = []
    pm = build(OnlyKey(seen), traced=traced)
    answer = run(Hook(pm, "lmrouter_authenticate").first("gw", "sk-1", {"h": "v"}))
    assert answer == "principal for sk-1"
    assert seen == ["sk-1"]


def test_an_async_refusal_stops_the_plugins_after_it() -> None:
    """A limit that refuses asynchronously (a Redis backend, say) stops the request before the
    next plugin reserves anything: the refusal is awaited before the next plugin is called."""
    calls: list[tuple[str, str, tuple[Any, ...]]] = []

    async def refuse() -> None:
        await asyncio.sleep(0)
        raise RouterError(429, "slow down", code="rate_limit_exceeded")

    pm = build(Recorder("credits", calls), First("limits", calls, admit=refuse))
    with pytest.raises(RouterError) as raised:
        run(Hook(pm, "lmrouter_admit").call("ctx"))
    assert raised.value.status == 429
    assert [c[0] for c in calls] == ["limits"]


def test_a_wrapper_sends_every_call_through_pluggy() -> None:
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def lmrouter_authenticate(self, gateway: Any, api_key: str, headers: Any) -> Any:
            seen.append("before")
            result = yield
            seen.append("after")
            return result

    pm = build(OnlyKey([]), Wrapper())
    hook = Hook(pm, "lmrouter_authenticate")
    assert hook.caller is not None
    assert run(hook.first("gw", "sk-2", {})) == "principal for sk-2"
    assert seen == ["before", "after"]


def test_start_is_synchronous_until_an_implementation_is_not() -> None:
    calls: list[tuple[str, str, tuple[Any, ...]]] = []

    async def later() -> None:
        calls.append(("b", "awaited", ()))

    pm = build(Recorder("a", calls), Recorder("b", calls, admit=later), Recorder("c", calls))
    hook = Hook(pm, "lmrouter_admit")
    assert Hook(build(Recorder("x", [])), "lmrouter_admit").start("ctx") is None
    pending = hook.start("ctx")
    assert pending is not None
    assert [c[0] for c in calls] == ["c", "b"]  # "a" waits for b's awaitable
    run(pending)  # type: ignore[arg-type]
    assert [c[:2] for c in calls] == [
        ("c", "admit"),
        ("b", "admit"),
        ("b", "awaited"),
        ("a", "admit"),
    ]
