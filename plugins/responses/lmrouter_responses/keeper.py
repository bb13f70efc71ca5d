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

from lmrouter import BatchWriter, Detached, Outcome, RouterError, invalid_request
from lmrouter_responses.background import Job, new_response_id, shell
from lmrouter_responses.background import check as check_background

if TYPE_CHECKING:
    from lmrouter import Gateway, Principal, RequestContext, Row, Store, Tx
    from lmrouter_responses.config import ResponsesConfig
    from lmrouter_responses.conversations import Conversations

DIALECT = "openai.responses"
_ROW = "id, owner, model, provider, upstream, byok, previous_id, input, response"
_MAX_CHAIN = 10_000  # a conversation longer than this is cut at its oldest turns
_STREAMS_KEPT = 256  # streamed background responses whose events are kept in memory
_INSERT = (
    "INSERT INTO stored_responses (id, owner, user_id, model, provider, upstream, byok, "
    "previous_id, input, response, created_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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


def _as_input(item: dict[str, Any]) -> dict[str, Any]:
    """A kept item as input again: the ids this router gave the caller's own messages are
    its own, not the provider's, so they are not sent (OpenAI would look them up)."""
    if item.get("type") == "message" and item.get("role") != "assistant" and "id" in item:
        item = {k: v for k, v in item.items() if k != "id"}
    return item


def _is_reference(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "item_reference"


def _references(doc: dict[str, Any]) -> bool:
    """Whether ``input`` names earlier items by id (``item_reference``)."""
    items = doc.get("input")
    return isinstance(items, list) and any(_is_reference(item) for item in items)


def _hex() -> str:
    return os.urandom(16).hex()


class Keeper:
    def __init__(
        self, gateway: Gateway, config: ResponsesConfig, conversations: Conversations
    ) -> None:
        self.conversations = conversations
        self.jobs: dict[str, Job] = {}  # background responses under way here, by id
        # Streamed background responses, the latest few, for GET …?stream=true to resume.
        self.streams: dict[str, Job] = {}
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
        now = int(time.time())
        await self.conversations.sweep(now)
        return await self.store.execute(
            "DELETE FROM stored_responses WHERE expires_at <= ?", (now,)
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
        background = doc.get("background") is True
        if background:
            check_background(doc, self.days)
        conversation = doc.get("conversation")
        wanted = doc.get("store") is not False  # OpenAI's default is to store
        keep = wanted and self.days > 0
        ctx.state["responses.keep"] = keep
        doc["store"] = keep  # echoed by converted answers; forwarded to OpenAI routes
        previous = doc.get("previous_response_id")
        references = self.days > 0 and _references(doc)
        if previous is None and conversation is None and not background and not references:
            if keep:
                self.inflight.setdefault(owner_of(ctx.principal), {})[id(ctx)] = ctx
            elif wanted:  # store_days = 0: the provider must not keep it either
                ctx.body = orjson.dumps(doc)
            return None
        if self.days == 0:
            name = "previous_response_id" if previous is not None else "conversation"
            raise invalid_request(
                f"{name} needs stored responses, and this router keeps none "
                "([responses] store_days = 0); send the full input instead",
                name,
            )
        if previous is not None and conversation is not None:
            raise invalid_request(
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                "conversation",
            )
        return self._prepare(ctx, previous, conversation, background, references)

    async def _prepare(
        self,
        ctx: RequestContext,
        previous: str | None,
        conversation: Any,
        background: bool,
        references: bool = False,
    ) -> None:
        if references:
            await self._resolve(ctx)
        if previous is not None:
            await self._expand(ctx, previous)
        if conversation is not None:
            await self._join(ctx, conversation)
        if background:
            self._detach(ctx)
        # Registered only now: a request refused above has nothing to record.
        self.inflight.setdefault(owner_of(ctx.principal), {})[id(ctx)] = ctx
        ctx.body = orjson.dumps(ctx.doc)
        ctx.prompt_chars = len(ctx.body)

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

    async def _resolve(self, ctx: RequestContext) -> None:
        """``item_reference`` items naming an item this router keeps (of the caller's stored
        responses or conversations) become that item; the others stay as they are, for an
        OpenAI route whose upstream keeps them (elsewhere the dialect refuses them)."""
        owner = owner_of(ctx.principal)
        await self.caught_up(owner)  # an item answered a moment ago can be referenced at once
        items = ctx.doc["input"]
        for i, item in enumerate(items):
            if _is_reference(item) and isinstance(item.get("id"), str):
                found = await self._item(owner, item["id"])
                if found is not None:
                    items[i] = _as_input(found)

    async def _item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        """The kept item ``item_id`` of ``owner``'s conversations or stored responses."""
        now = int(time.time())
        row = await self.store.fetchone(
            "SELECT i.item FROM conversation_items i JOIN conversations c "
            "ON c.id = i.conversation_id WHERE i.id = ? AND c.owner = ? AND c.expires_at > ?",
            (item_id, owner, now),
        )
        if row is not None:
            return dict(orjson.loads(row[0]))
        # Ids are random and unique: a text match finds the few rows worth reading.
        rows = await self.store.fetchall(
            "SELECT input, response FROM stored_responses WHERE owner = ? AND expires_at > ? "
            "AND upstream = 0 AND (input LIKE ? OR response LIKE ?)",
            (owner, now, f'%"{item_id}"%', f'%"{item_id}"%'),
        )
        for kept_input, kept_response in rows:
            candidates = orjson.loads(kept_input or b"[]")
            candidates += orjson.loads(kept_response or b"{}").get("output") or []
            for candidate in candidates:
                if isinstance(candidate, dict) and candidate.get("id") == item_id:
                    return candidate
        return None

    async def _join(self, ctx: RequestContext, conversation: Any) -> None:
        """A conversation's items become the start of ``input``; the request's own input and
        the answer are appended to it when the request ends (see record)."""
        cid = conversation.get("id") if isinstance(conversation, dict) else conversation
        if not isinstance(cid, str) or not cid:
            raise invalid_request(
                "`conversation` must be a conversation id or an object with its `id`.",
                "conversation",
            )
        owner = owner_of(ctx.principal)
        await self.caught_up(owner)  # answers already sent belong in the conversation
        if await self.conversations.find(owner, cid) is None:
            raise RouterError(
                404,
                f"Conversation with id '{cid}' not found.",
                param="conversation",
                code="not_found",
            )
        own = as_items(ctx.doc.get("input"))
        ctx.state["responses.input"] = own
        ctx.state["responses.conversation"] = cid
        history = await self.conversations.items(cid)
        ctx.doc["input"] = [_as_input(item) for item in history + own]
        del ctx.doc["conversation"]

    def _detach(self, ctx: RequestContext) -> None:
        """Answer with a queued response now; run the request on as a stream (see
        lmrouter_responses.background) whose result this router keeps under that id."""
        doc = ctx.doc
        streaming = doc.get("stream") is True
        response_id = new_response_id()
        queued = shell(response_id, doc, "queued")
        if ctx.state.get("responses.conversation"):
            queued["conversation"] = {"id": ctx.state["responses.conversation"]}
        job = Job(response_id, owner_of(ctx.principal), queued)
        job.on_start = lambda: self._save(job, {**queued, "status": "in_progress"})
        ctx.state["responses.job"] = job
        ctx.state.setdefault("responses.input", as_items(doc.get("input")))
        self.jobs[response_id] = job
        del doc["background"]
        doc["stream"] = True  # so that a cancel can cut it (and pay for what was made)
        doc["store"] = False  # this router keeps the result; the provider need not
        ctx.stream = True
        ctx.state["wants_usage"] = True
        job.detached = ctx.detached = Detached(orjson.dumps(queued), job.send)
        if streaming:
            job.streaming = True
            self.streams[response_id] = job
            while len(self.streams) > _STREAMS_KEPT:
                del self.streams[next(iter(self.streams))]  # the oldest
            ctx.detached.events = job.follow()
        self._save(job, queued, ctx)

    def _forget(self, response_id: str) -> None:
        async def delete(tx: Tx) -> None:
            await tx.execute("DELETE FROM stored_responses WHERE id = ?", (response_id,))

        self.writer.add(delete)

    def _save(self, job: Job, response: dict[str, Any], ctx: RequestContext | None = None) -> None:
        """Keep (or replace) a background response's row; ``ctx`` the first time."""
        now = int(time.time())
        kept = orjson.dumps(response).decode()
        if ctx is not None:
            own = orjson.dumps(ctx.state.get("responses.input") or []).decode()
            values: tuple[Any, ...] = (
                job.response_id,
                job.owner,
                ctx.principal.user_id,
                ctx.model.id,
                ctx.model.routes[0].provider,
                0,
                int(not ctx.billable),
                ctx.state.get("responses.previous"),
                own,
                kept,
                now,
                now + self.days * 86_400,
            )

            async def insert(tx: Tx) -> None:
                await tx.execute(_INSERT + " ON CONFLICT (id) DO NOTHING", values)

            self.writer.add(insert)
            return

        async def update(tx: Tx) -> None:
            await tx.execute(
                "UPDATE stored_responses SET response = ? WHERE id = ?", (kept, job.response_id)
            )

        self.writer.add(update)

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
        state = ctx.state
        job: Job | None = state.get("responses.job")
        conversation = state.get("responses.conversation")
        if not (state.get("responses.keep") or job or conversation):
            return
        owner = owner_of(ctx.principal)
        running = self.inflight.get(owner)
        if running is not None:
            running.pop(id(ctx), None)
            if not running:
                del self.inflight[owner]
        if state.get("responses.kept"):
            return
        if job is not None:
            state["responses.kept"] = True
            self.jobs.pop(job.response_id, None)
            if outcome.status == "refused":  # by a later admission hook: the caller got that
                self.streams.pop(job.response_id, None)
                self._forget(job.response_id)
                job.finished.set()
                return
            final = job.final(ctx)
            self._save(job, final)
            job.end(final)
            if conversation and final["status"] in ("completed", "incomplete"):
                self._append(conversation, state.get("responses.input"), final)
            return
        if outcome.status != "ok" or outcome.route is None:
            return
        state["responses.kept"] = True
        answer = ctx.final_answer()
        if answer is None or not isinstance(answer.get("id"), str):
            return
        if conversation:
            self._append(conversation, state.get("responses.input"), answer)
        if state.get("responses.keep"):
            self._keep(ctx, outcome.route.provider, answer)

    def _append(self, conversation: str, own: Any, answer: dict[str, Any]) -> None:
        items = list(own or []) + list(answer.get("output") or [])

        async def append(tx: Tx) -> None:
            await self.conversations.append(tx, conversation, items)

        self.writer.add(append)

    def _keep(self, ctx: RequestContext, provider_name: str, answer: dict[str, Any]) -> None:
        provider = self.gateway.providers[provider_name]
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
            await tx.execute(_INSERT + " ON CONFLICT (id) DO NOTHING", values)

        self.writer.add(insert)

    def _settle(self, owner: str) -> None:
        """Record the answers already sent to ``owner`` whose ``request_end`` has not run yet:
        the caller may use them the moment they arrive."""
        for ctx in list(self.inflight.get(owner, {}).values()):
            if ctx.final_answer() is not None and ctx.route is not None:
                self.record(ctx, Outcome("ok", 200, route=ctx.route))

    # -- lookups ------------------------------------------------------------------------------

    async def caught_up(self, owner: str) -> None:
        """Everything ``owner`` was answered so far is in the database (conversations
        included): a caller may use an answer the moment it arrives."""
        self._settle(owner)
        await self.writer.flush()

    async def find(self, owner: str, response_id: str) -> Row | None:
        await self.caught_up(owner)  # a response made a moment ago is found at once
        return await self._fetch(owner, response_id)

    async def _fetch(self, owner: str, response_id: str) -> Row | None:
        return await self.store.fetchone(
            f"SELECT {_ROW} FROM stored_responses WHERE id = ? AND owner = ? AND expires_at > ?",
            (response_id, owner, int(time.time())),
        )

    async def delete(self, response_id: str) -> None:
        await self.store.execute("DELETE FROM stored_responses WHERE id = ?", (response_id,))
