"""The conversations' rows on a real database, SQLite and PostgreSQL: the plugin's migrations,
items kept in order across appends, owner-only lookups, expiry and erasure with the account."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lmrouter_responses import ResponsesPlugin
from lmrouter_responses.conversations import Conversations, page

from lmrouter import PluginManager, Store, migrate
from lmrouter.testing.pytest_plugin import parametrize_stores


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)


def message(text: str, n: int) -> dict[str, Any]:
    return {"id": f"msg_{n}", "type": "message", "role": "user", "content": text}


def run(make_store: Callable[[Path], Store], path: Path, body: Any) -> None:
    async def main() -> None:
        store = make_store(path)
        await store.open()
        pm = PluginManager()
        pm.register(ResponsesPlugin())
        await migrate(store, pm)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_items_keep_their_order_and_owner(
    store_kind: str, make_store: Callable[[Path], Store], tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        kept = Conversations(store, days=30)
        conv = await kept.create("alice", "u1", {"k": "v"}, [message("a", 1), message("b", 2)])
        async with store.transaction() as tx:
            await kept.append(tx, conv["id"], [message("c", 3)])
        await kept.add(conv["id"], [message("d", 4)])
        assert [i["content"] for i in await kept.items(conv["id"])] == ["a", "b", "c", "d"]
        assert (await kept.get("alice", conv["id"]))["metadata"] == {"k": "v"}
        assert await kept.find("bob", conv["id"]) is None  # another owner: as if unknown
        assert await kept.delete_item(conv["id"], "msg_2")
        assert [i["id"] for i in await kept.items(conv["id"])] == ["msg_1", "msg_3", "msg_4"]
        await kept.add(conv["id"], [message("e", 5)])  # after a deletion: still at the end
        assert (await kept.items(conv["id"]))[-1]["id"] == "msg_5"

        other = await kept.create("carol", "u2", {}, [message("x", 9)])
        await kept.erase_user("u1")
        assert await kept.find("alice", conv["id"]) is None
        assert await kept.items(conv["id"]) == []
        assert await kept.find("carol", other["id"]) is not None

        await kept.sweep(now=2**40)  # everything has expired by then
        assert await kept.find("carol", other["id"]) is None
        assert await kept.items(other["id"]) == []

    run(make_store, tmp_path / "conv.db", body)


def test_pages() -> None:
    items = [{"id": f"i{n}"} for n in range(5)]
    first = page(items, {"limit": "2"})
    assert [i["id"] for i in first["data"]] == ["i4", "i3"] and first["has_more"]
    rest = page(items, {"limit": "5", "after": first["last_id"]})
    assert [i["id"] for i in rest["data"]] == ["i2", "i1", "i0"] and not rest["has_more"]
    assert page(items, {"order": "asc", "after": "i3"})["data"] == [{"id": "i4"}]
