"""The Conversations API (``/v1/conversations``…), with OpenAI's shapes, kept by this router for
every route: a conversation may mix models and providers, and ``conversation`` on ``POST
/v1/responses`` is expanded into ``input`` before the request goes anywhere (see the README).

Only the owner sees a conversation (anyone else gets the 404 an unknown id gets); it expires
``store_days`` after its last use and goes with the account."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmrouter import RouterError, invalid_request, require_principal
from lmrouter_responses.keeper import as_items, owner_of

if TYPE_CHECKING:
    from lmrouter import Store, Tx

_MAX_ITEMS = 20  # OpenAI's limit on items added in one call
_MAX_METADATA = 16


def new_id() -> str:
    return "conv_" + os.urandom(24).hex()


def not_found(conversation_id: str) -> RouterError:
    return RouterError(
        404, f"Conversation with id '{conversation_id}' not found.", code="not_found"
    )


def _item_not_found(item_id: str) -> RouterError:
    return RouterError(404, f"Item with id '{item_id}' not found.", code="not_found")


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > _MAX_METADATA
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise invalid_request(
            f"`metadata` must be an object of at most {_MAX_METADATA} string values.", "metadata"
        )
    return value


def _new_items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise invalid_request(f"`items` must be an array of at most {_MAX_ITEMS} items.", "items")
    items = as_items(value)
    if len(items) != len(value):
        raise invalid_request("Each of `items` must be an object.", "items")
    return items


class Conversations:
    """The rows behind conversations: who owns each, its metadata, its items in order."""

    def __init__(self, store: Store, days: int) -> None:
        self.store = store
        self.days = days

    def _expiry(self) -> int:
        return int(time.time()) + self.days * 86_400

    async def create(
        self, owner: str, user_id: str | None, metadata: dict[str, str], items: list[Any]
    ) -> dict[str, Any]:
        conversation_id, now = new_id(), int(time.time())
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO conversations (id, owner, user_id, metadata, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    owner,
                    user_id,
                    orjson.dumps(metadata).decode(),
                    now,
                    self._expiry(),
                ),
            )
            await self.append(tx, conversation_id, items)
        return _conversation(conversation_id, now, metadata)

    async def find(self, owner: str, conversation_id: str) -> dict[str, Any] | None:
        row = await self.store.fetchone(
            "SELECT id, created_at, metadata FROM conversations "
            "WHERE id = ? AND owner = ? AND expires_at > ?",
            (conversation_id, owner, int(time.time())),
        )
        return None if row is None else _conversation(row[0], row[1], orjson.loads(row[2]))

    async def get(self, owner: str, conversation_id: str) -> dict[str, Any]:
        found = await self.find(owner, conversation_id)
        if found is None:
            raise not_found(conversation_id)
        return found

    async def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> None:
        await self.get(owner, conversation_id)
        await self.store.execute(
            "UPDATE conversations SET metadata = ? WHERE id = ?",
            (orjson.dumps(metadata).decode(), conversation_id),
        )

    async def delete(self, owner: str, conversation_id: str) -> None:
        await self.get(owner, conversation_id)
        async with self.store.transaction() as tx:
            await _erase(tx, "id = ?", (conversation_id,))

    async def items(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY position",
            (conversation_id,),
        )
        return [orjson.loads(row[0]) for row in rows]

    async def add(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        """Append ``items`` and keep the conversation ``store_days`` from now."""
        async with self.store.transaction() as tx:
            await self.append(tx, conversation_id, items)

    async def append(self, tx: Tx, conversation_id: str, items: list[dict[str, Any]]) -> None:
        await tx.execute(
            "UPDATE conversations SET expires_at = ? WHERE id = ?",
            (self._expiry(), conversation_id),
        )
        if not items:
            return
        row = await tx.fetchone(
            "SELECT MAX(position) FROM conversation_items WHERE conversation_id = ?",
            (conversation_id,),
        )
        start = 0 if row is None or row[0] is None else int(row[0]) + 1
        await tx.executemany(
            "INSERT INTO conversation_items (conversation_id, position, id, item) "
            "VALUES (?, ?, ?, ?)",
            [
                (conversation_id, start + n, item["id"], orjson.dumps(item).decode())
                for n, item in enumerate(items)
            ],
        )

    async def delete_item(self, conversation_id: str, item_id: str) -> bool:
        return bool(
            await self.store.execute(
                "DELETE FROM conversation_items WHERE conversation_id = ? AND id = ?",
                (conversation_id, item_id),
            )
        )

    async def sweep(self, now: int) -> None:
        async with self.store.transaction() as tx:
            await _erase(tx, "expires_at <= ?", (now,))

    async def erase_user(self, user_id: str) -> None:
        async with self.store.transaction() as tx:
            await _erase(tx, "user_id = ?", (user_id,))


async def _erase(tx: Tx, where: str, params: tuple[Any, ...]) -> None:
    await tx.execute(
        "DELETE FROM conversation_items WHERE conversation_id IN "
        f"(SELECT id FROM conversations WHERE {where})",
        params,
    )
    await tx.execute(f"DELETE FROM conversations WHERE {where}", params)


def _conversation(conversation_id: str, created_at: int, metadata: Any) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "object": "conversation",
        "created_at": created_at,
        "metadata": metadata or {},
    }


def page(items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """One page of a list of items, as OpenAI lists them (``after``, ``limit``, ``order``;
    newest first unless ``order=asc``)."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_request("`order` must be `asc` or `desc`.", "order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise invalid_request("`limit` must be between 1 and 100.", "limit")
    if order == "desc":
        items = items[::-1]
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    chosen = items[:limit]
    return {
        "object": "list",
        "data": chosen,
        "has_more": len(items) > limit,
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
    }


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request("The body is not valid JSON.", None) from None
    if not isinstance(doc, dict):
        raise invalid_request("The body must be a JSON object.", None)
    return doc


class ConversationEndpoints:
    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin  # its keeper (and conversations) exist once the server started

    def routes(self) -> list[Route]:
        base = "/v1/conversations"
        return [
            Route(base, self.create, methods=["POST"]),
            Route(base + "/{cid}", self.one, methods=["GET", "POST", "DELETE"]),
            Route(base + "/{cid}/items", self.items, methods=["GET", "POST"]),
            Route(base + "/{cid}/items/{item_id}", self.item, methods=["GET", "DELETE"]),
        ]

    async def _caller(self, request: Request) -> tuple[Conversations, str, str | None]:
        principal = await require_principal(request)
        keeper = self.plugin.keeper
        conversations: Conversations = keeper.conversations
        await keeper.caught_up(owner_of(principal))
        if conversations.days == 0:
            raise invalid_request(
                "conversations need stored state, and this router keeps none "
                "([responses] store_days = 0)",
                None,
            )
        return conversations, owner_of(principal), principal.user_id

    async def create(self, request: Request) -> Response:
        conversations, owner, user_id = await self._caller(request)
        doc = await _body(request)
        created = await conversations.create(
            owner, user_id, _metadata(doc.get("metadata")), _new_items(doc.get("items"))
        )
        return JSONResponse(created)

    async def one(self, request: Request) -> Response:
        conversations, owner, _user = await self._caller(request)
        cid = request.path_params["cid"]
        if request.method == "DELETE":
            await conversations.delete(owner, cid)
            return JSONResponse({"id": cid, "object": "conversation.deleted", "deleted": True})
        if request.method == "POST":
            doc = await _body(request)
            if "metadata" not in doc:
                raise invalid_request("Missing required parameter: 'metadata'.", "metadata")
            await conversations.update(owner, cid, _metadata(doc["metadata"]))
        return JSONResponse(await conversations.get(owner, cid))

    async def items(self, request: Request) -> Response:
        conversations, owner, _user = await self._caller(request)
        cid = request.path_params["cid"]
        await conversations.get(owner, cid)
        if request.method == "POST":
            doc = await _body(request)
            added = _new_items(doc.get("items"))
            if not added:
                raise invalid_request("`items` must hold at least one item.", "items")
            await conversations.add(cid, added)
            return JSONResponse(page(added, {"order": "asc", "limit": "100"}))
        return JSONResponse(page(await conversations.items(cid), request.query_params))

    async def item(self, request: Request) -> Response:
        conversations, owner, _user = await self._caller(request)
        cid, item_id = request.path_params["cid"], request.path_params["item_id"]
        conversation = await conversations.get(owner, cid)
        if request.method == "DELETE":
            if not await conversations.delete_item(cid, item_id):
                raise _item_not_found(item_id)
            return JSONResponse(conversation)
        for item in await conversations.items(cid):
            if item.get("id") == item_id:
                return JSONResponse(item)
        raise _item_not_found(item_id)
