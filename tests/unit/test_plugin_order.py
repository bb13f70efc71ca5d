"""Hook order and semantics come from declarations: ``firstresult`` in the spec, ``requires`` and
``after`` on plugins; ``lmrouter plugins --hooks`` shows the resulting order."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from lmrouter import hookimpl, plugins, require_principal
from lmrouter.guard import Guard
from lmrouter.plugins import Hook, PluginManager
from lmrouter.storage import SQLiteStore
from lmrouter.stores import migrate


class Answers:
    def __init__(self, name: str, calls: list[str], answer: Any = None) -> None:
        self.name, self.calls, self.answer = name, calls, answer

    @hookimpl
    def lmrouter_authenticate(self, gateway: Any, api_key: str, headers: Any) -> Any:
        self.calls.append(self.name)
        return self.answer() if callable(self.answer) else self.answer

    @hookimpl
    def lmrouter_admit(self, ctx: Any) -> None:
        self.calls.append(self.name)


def manager(*members: Any, traced: bool = False) -> PluginManager:
    pm = PluginManager()
    for member in members:
        pm.register(member)
    pm.traced = traced
    return pm


def test_the_spec_says_which_hooks_stop_at_the_first_answer() -> None:
    pm = manager(Answers("a", []))
    assert Hook(pm, "lmrouter_authenticate").firstresult
    assert Hook(pm, "lmrouter_upstream_key").firstresult
    assert not Hook(pm, "lmrouter_admit").firstresult
    with pytest.raises(TypeError, match="lmrouter_admit is called with call"):
        asyncio.run(Hook(pm, "lmrouter_admit").first("ctx"))
    with pytest.raises(TypeError, match="lmrouter_authenticate is called with first"):
        Hook(pm, "lmrouter_authenticate").start("gw", "sk", {})


@pytest.mark.parametrize("traced", [False, True], ids=["direct", "through-pluggy"])
def test_an_async_none_does_not_end_a_first_result_hook(traced: bool) -> None:
    """pluggy's own firstresult stops at the first coroutine; the answer is what it awaits to."""

    async def nobody() -> None:
        return None

    calls: list[str] = []
    pm = manager(Answers("a", calls, "from a"), Answers("b", calls, nobody), traced=traced)
    assert asyncio.run(Hook(pm, "lmrouter_authenticate").first("gw", "sk", {})) == "from a"
    assert calls == ["b", "a"]


def request_for(pm: PluginManager, key: str) -> Request:
    guard = Guard(body_timeout=30, auth_failures_per_minute=60)
    gateway = SimpleNamespace(pm=pm, guard=guard)
    app = SimpleNamespace(state=SimpleNamespace(gateway=gateway))
    headers = [(b"authorization", f"Bearer {key}".encode())]
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "app": app}
    return Request({**scope, "query_string": b"", "client": ("127.0.0.1", 1)})


def test_plugin_endpoints_stop_authenticating_at_the_first_answer() -> None:
    calls: list[str] = []
    pm = manager(Answers("later", calls, "nobody"), Answers("first", calls, "the caller"))
    assert asyncio.run(require_principal(request_for(pm, "sk-1"))) == "the caller"
    assert calls == ["first"]  # the dashboard and credits endpoints asked every plugin before


def test_order_follows_requires_and_after() -> None:
    calls: list[str] = []

    class Needs(Answers):
        requires = ["zz"]

    class After(Answers):
        after = ["needs"]

    pm = plugins.manager(
        {
            "after": After("after", calls),
            "needs": Needs("needs", calls),
            "zz": Answers("zz", calls),
            "aa": Answers("aa", calls),
        }
    )
    # zz before needs (requires), needs before after (after); aa free: reverse name order
    assert plugins.call_order(pm, "lmrouter_admit") == ["zz", "needs", "after", "aa"]


def test_migrations_make_referenced_tables_first(tmp_path: Path) -> None:
    """Every table a migration refers to exists before it: PostgreSQL, unlike SQLite, refuses
    a reference to a table made later."""
    pm = plugins.build()
    steps = dict(answer for answer in pm.hook.lmrouter_migrations() if answer)

    async def run() -> list[tuple[str, int]]:
        store = SQLiteStore("sqlite:///m.db", tmp_path / "m.db")
        await store.open()
        try:
            return await migrate(store, pm)
        finally:
            await store.close()

    applied = asyncio.run(run())
    assert {"accounts", "credits", "stripe"} <= {namespace for namespace, _ in applied}
    made: set[str] = set()
    for namespace, version in applied:
        sql = steps[namespace][version - 1]
        for statement in sql.split(";"):
            created = re.search(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", statement, re.I)
            if created:
                made.add(created.group(1))
            for table in re.findall(r"REFERENCES (\w+)", statement, re.I):
                assert table in made, f"{namespace} v{version} refers to {table} before it exists"
