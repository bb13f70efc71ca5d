"""What the plugin does per request and per lookup.

Per request it costs two hook calls that return at once for every dialect but Responses; a
Responses answer to keep is one row queued on a batch writer. Only ``previous_response_id``
reads the database on the request path (the history is needed before conversion)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson

from lmrouter import BatchWriter, Outcome, RouterError, invalid_request

if TYPE_CHECKING:
    from lmrouter import Gateway, Principal, RequestContext, Row, Store, Tx
    from lmrouter_responses.config import ResponsesConfig

DIALECT = "openai.responses"
_ROW = "id, owner, model, provider, upstream, byok, previous_id, input, response"
_MAX_CHAIN = 10_000  # a conversation longer than this is cut at its oldest turns


def owner_of(principal: Principal) -> str:
    """Whose a stored response is: the account's, else the key's. Anonymous BYOK callers share
    one principal id, so theirs is their provider key's digest (the only thing that is theirs)."""
    if principal.user_id:
        return principal.user_id
    if principal.kind == "byok":
        provider_key = str(principal.extra.get("byok_key") or "")
        return "byok:" + hashlib.sha256(provider_key.encode()).hexdigest()
    return principal.id


def not_found(response_id: str) -> RouterError:
    return RouterError(404, f"No response found with id '{response_id}'.", code="not_found")


def as_items(value: Any) -> list[dict[str, Any]]:
    """A request's ``input`` as the items ``input_items`` lists, each with an id."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for raw in value if isinstance(value, list) else ():
        if not isinstance(raw, dict):
            continue
        item = dict(raw)
        if "role" in item:
            item.setdefault("type", "message")
            content = item.get("content")
            if isinstance(content, str):
                kind = "output_text" if item["role"] == "assistant" else "input_text"
                item["content"] = [{"type": kind, "text": content}]
        item.setdefault("id", ("msg_" if item.get("type") == "message" else "item_") + _hex())
        items.append(item)
    return items


def _hex() -> str:
    return os.urandom(16).hex()


class Keeper:
    def __init__(self, gateway: Gateway, config: ResponsesConfig) -> None:
        self.gateway = gateway
        self.store: Store = gateway.store
        self.days = config.store_days
        self.sweep_interval = config.sweep_interval_s
        self.writer = BatchWriter(self.store)
        # Requests whose answer may be kept, by owner: the caller has the id as soon as the
        # answer is sent, a moment before request_end records it; a lookup in that moment
        # finds the answer here (see find).
        self.inflight: dict[str, dict[int, RequestContext]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.writer.start()
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lmrouter-responses-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.writer.stop()

    async def sweep(self) -> int:
        """Delete what expired (lookups already ignore it: this only frees the space)."""
        return await self.store.execute(
            "DELETE FROM stored_responses WHERE expires_at <= ?", (int(time.time()),)
        )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            with contextlib.suppress(Exception):
                await self.sweep()

    # -- the request path ---------------------------------------------------------------------

    def admit(self, ctx: RequestContext) -> Awaitable[None] | None:
        if ctx.dialect != DIALECT:
            return None
        doc = ctx.doc
        wanted = doc.get("store") is not False  # OpenAI's default is to store
        keep = wanted and self.days > 0
        ctx.state["responses.keep"] = keep
        if keep:
            self.inflight.setdefault(owner_of(ctx.principal), {})[id(ctx)] = ctx
        doc["store"] = keep  # echoed by converted answers; forwarded to OpenAI routes
        previous = doc.get("previous_response_id")
        if previous is None:
            if wanted and not keep:  # store_days = 0: the provider must not keep it either
                ctx.body = orjson.dumps(doc)
            return None
        if self.days == 0:
            raise invalid_request(
                "previous_response_id needs stored responses, and this router keeps none "
                "([responses] store_days = 0); send the full input instead",
                "previous_response_id",
            )
        return self._expand(ctx, previous)

    async def _expand(self, ctx: RequestContext, previous: str) -> None:
        row = await self.find(owner_of(ctx.principal), previous)
        if row is None:
            raise invalid_request(
                f"Previous response with id '{previous}' not found.", "previous_response_id"
            )
        ctx.state["responses.previous"] = previous
        if row[4]:  # the provider keeps it: the request goes to OpenAI routes as it is
            return
        history = await self._history(row)
        own = as_items(ctx.doc.get("input"))
        ctx.state["responses.input"] = own
        ctx.doc["input"] = history + own
        del ctx.doc["previous_response_id"]
        ctx.body = orjson.dumps(ctx.doc)
        ctx.prompt_chars = len(ctx.body)

    async def _history(self, row: Row) -> list[dict[str, Any]]:
        """Every item of the conversation up to and including ``row``'s answer, oldest first."""
        chain = [row]
        owner = row[1]
        while chain[-1][6] and len(chain) < _MAX_CHAIN:
            earlier = await self._fetch(owner, chain[-1][6])
            if earlier is None:
                break  # expired or deleted: the conversation starts after it
            chain.append(earlier)
        items: list[dict[str, Any]] = []
        for turn in reversed(chain):
            items += orjson.loads(turn[7] or b"[]")
            items += (orjson.loads(turn[8] or b"{}")).get("output") or []
        return items

    def record(self, ctx: RequestContext, outcome: Outcome) -> None:
        if not ctx.state.get("responses.keep"):
            return
        owner = owner_of(ctx.principal)
        running = self.inflight.get(owner)
        if running is not None:
            running.pop(id(ctx), None)
            if not running:
                del self.inflight[owner]
        if outcome.status != "ok" or outcome.route is None or ctx.state.get("responses.kept"):
            return
        ctx.state["responses.kept"] = True
        answer = ctx.final_answer()
        if answer is None or not isinstance(answer.get("id"), str):
            return
        provider = self.gateway.providers[outcome.route.provider]
        upstream = DIALECT in provider.native_dialects
        if upstream and answer.get("store") is False:
            return  # the provider did not keep it
        previous = ctx.state.get("responses.previous")
        own: Any = None
        kept: Any = None
        if not upstream:
            own = orjson.dumps(ctx.state.get("responses.input") or as_items(ctx.doc.get("input")))
            answer["previous_response_id"] = previous
            kept = orjson.dumps(answer)
        now = int(time.time())
        values = (
            answer["id"],
            owner_of(ctx.principal),
            ctx.principal.user_id,
            ctx.model.id,
            provider.name,
            int(upstream),
            int(not ctx.billable),
            previous,
            own.decode() if own else None,
            kept.decode() if kept else None,
            now,
            now + self.days * 86_400,
        )

        async def insert(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO stored_responses (id, owner, user_id, model, provider, upstream, "
                "byok, previous_id, input, response, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                values,
            )

        self.writer.add(insert)

    # -- lookups ------------------------------------------------------------------------------

    async def find(self, owner: str, response_id: str) -> Row | None:
        for ctx in list(self.inflight.get(owner, {}).values()):
            answer = ctx.final_answer()  # sent, not yet recorded: record it now
            if answer is not None and answer.get("id") == response_id and ctx.route is not None:
                self.record(ctx, Outcome("ok", 200, route=ctx.route))
        await self.writer.flush()  # a response made a moment ago is found at once
        return await self._fetch(owner, response_id)

    async def _fetch(self, owner: str, response_id: str) -> Row | None:
        return await self.store.fetchone(
            f"SELECT {_ROW} FROM stored_responses WHERE id = ? AND owner = ? AND expires_at > ?",
            (response_id, owner, int(time.time())),
        )

    async def delete(self, response_id: str) -> None:
        await self.store.execute("DELETE FROM stored_responses WHERE id = ?", (response_id,))
