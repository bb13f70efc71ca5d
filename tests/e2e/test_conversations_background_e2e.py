"""Conversations and background Responses end to end (plugin ``responses``), with the official
openai SDK against the real router, fake OpenAI, Anthropic and Gemini upstreams, the accounts
and credits plugins, and users made by the real CLI.

The router keeps conversations for every route, so one conversation can go from an OpenAI route
(pass-through) to Anthropic and Gemini ones (converted): what reached each fake upstream shows the
conversation expanded into the request. Background responses run in the router as detached
requests: queued at once, polled to the end, cancelled, and charged exactly as the same request
made in the foreground."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import openai
import pytest

from lmrouter.testing.fake_anthropic import Behavior as AntBehavior
from lmrouter.testing.fake_anthropic import FakeAnthropic
from lmrouter.testing.fake_gemini import Behavior as GemBehavior
from lmrouter.testing.fake_gemini import FakeGemini
from lmrouter.testing.fake_openai import Behavior as OaiBehavior
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer

ADMIN = "sk-admin-convo"
KEY_LINE = re.compile(r"sk-lmr-[A-Za-z0-9_-]{32}")
# An OpenAI route (pass-through), an Anthropic and a Gemini route (converted).
MODELS = ["gpt", "claude", "gemini"]
SLOW = "A long answer that takes a while to arrive, one small piece at a time. " * 4


def config(oai: str, ant: str, gem: str) -> str:
    models = ""
    for model, provider in (("gpt", "oai"), ("claude", "ant"), ("gemini", "gem")):
        for suffix in ("", "-slow"):
            models += f"""
[[models]]
id = "{model}{suffix}"
max_output_tokens = 1000
  [[models.routes]]
  provider = "{provider}"
  model = "{model}-x{suffix}"
  price = {{ input = 1, output = 2 }}
"""
    return f"""
[plugins]
disabled = ["ratelimit"]
[auth]
keys = ["{ADMIN}"]
[storage]
url = "sqlite:///router.db"
[accounts]
secret = "a-test-secret-of-enough-length"
[credits]
flush_interval = 0.02
[routing]
drain_seconds = 0
[providers.oai]
type = "openai"
base_url = "{oai}"
api_key = "sk-upstream-oai"
[providers.ant]
type = "anthropic"
base_url = "{ant}"
api_key = "sk-upstream-ant"
[providers.gem]
type = "google"
base_url = "{gem}"
api_key = "AIza-upstream-gem"
{models}"""


class Site:
    def __init__(self, workdir: Path, text: str) -> None:
        self.workdir = workdir
        self.config_path = workdir / "lmrouter.toml"
        self.config_path.write_text(text)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            cwd=self.workdir,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def user_key(self, email: str, usd: str | None = "10") -> str:
        self.cli("users", "add", email)
        if usd is not None:
            self.cli("credits", "grant", email, usd)
        key = self.cli("keys", "create", email).strip().splitlines()[-1]
        assert KEY_LINE.fullmatch(key)
        return key

    def count(self, table: str) -> int:
        with sqlite3.connect(self.workdir / "router.db") as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


class Fakes(NamedTuple):
    oai: FakeOpenAI
    ant: FakeAnthropic
    gem: FakeGemini
    urls: tuple[str, str, str]

    def of(self, model: str) -> FakeOpenAI | FakeAnthropic | FakeGemini:
        return {"gpt": self.oai, "claude": self.ant, "gemini": self.gem}[model.split("-")[0]]


Setup = tuple[Site, RouterServer, str, str]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    oai, ant, gem = FakeOpenAI(), FakeAnthropic(), FakeGemini()
    oai.script("gpt-x-slow", OaiBehavior(text=SLOW, chunk_delay=0.05))
    ant.script("claude-x-slow", AntBehavior(text=SLOW, chunk_delay=0.05))
    gem.script("gemini-x-slow", GemBehavior(text=SLOW, chunk_delay=0.05))
    with oai.run_in_thread() as o, ant.run_in_thread() as a, gem.run_in_thread() as g:
        yield Fakes(oai, ant, gem, (o, a, g))


@pytest.fixture(scope="module")
def site(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("convo")
    site = Site(workdir, config(*fakes.urls))
    alice, bob = site.user_key("alice@example.com"), site.user_key("bob@example.com")
    with RouterServer(site.config_path.read_text(), workdir=workdir) as router:
        yield site, router, alice, bob


def client(router: RouterServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)


def within(seconds: float, attempt: Callable[[], Any]) -> Any:
    """Wait for a condition, bounded: its first true answer."""
    deadline = time.monotonic() + seconds
    while not (answer := attempt()):
        assert time.monotonic() < deadline, f"not within {seconds}s"
        time.sleep(0.02)
    return answer


def balance(router: RouterServer, key: str) -> Decimal:
    answer = httpx.get(
        router.openai_url + "/credits", headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    return Decimal(answer.json()["balance_usd"])


def texts_sent(fakes: Fakes, model: str) -> list[str]:
    """The texts of every message of the last request that reached the model's upstream."""
    sent = fakes.of(model).requests[-1].json
    if model.startswith("gpt"):
        assert "conversation" not in sent and "background" not in sent
        return [json.dumps(item.get("content")) for item in sent["input"]]
    if model.startswith("gemini"):
        return [json.dumps(turn["parts"]) for turn in sent["contents"]]
    return [json.dumps(m["content"]) for m in sent["messages"]]


# -- conversations ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_a_conversation_carries_a_dialogue(site: Setup, fakes: Fakes, model: str) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    conv = mine.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}],
        metadata={"topic": "names"},
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "names"}

    first = mine.responses.create(model=model, input="What is my name?", conversation=conv.id)
    sent = texts_sent(fakes, model)
    assert "My name is Ada." in sent[0] and "What is my name?" in sent[-1]
    assert first.output_text

    items = mine.conversations.items.list(conv.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert items.data[2].content[0].text == first.output_text  # type: ignore[union-attr]

    # The same conversation on the other route: the router keeps it, so models may mix.
    other = {"gpt": "claude", "claude": "gemini", "gemini": "gpt"}[model]
    mine.responses.create(model=other, input="And again?", conversation={"id": conv.id})
    sent = " ".join(texts_sent(fakes, other))  # Anthropic merges the two user turns
    order = [sent.find(t) for t in ("My name is Ada.", first.output_text, "And again?")]
    assert -1 not in order and order == sorted(order)

    newest = mine.conversations.items.list(conv.id, limit=2)  # newest first by default
    assert len(newest.data) == 2 and newest.has_more
    assert newest.data[0].role == "assistant"  # type: ignore[union-attr]
    assert newest.data[1].content[0].text == "And again?"  # type: ignore[union-attr]
    rest = mine.conversations.items.list(conv.id, limit=10, after=newest.last_id)
    assert len(rest.data) == 3 and not rest.has_more
    assert [i.id for i in mine.conversations.items.list(conv.id).data] == [
        i.id for i in [*newest.data, *rest.data]
    ]


def test_conversation_crud(site: Setup) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    conv = mine.conversations.create()
    assert mine.conversations.retrieve(conv.id).metadata == {}
    updated = mine.conversations.update(conv.id, metadata={"k": "v"})
    assert updated.metadata == {"k": "v"} and mine.conversations.retrieve(conv.id).metadata == {
        "k": "v"
    }
    added = mine.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "user", "content": "one"},
            {"type": "message", "role": "user", "content": "two"},
        ],
    )
    assert [i.content[0].text for i in added.data] == ["one", "two"]  # type: ignore[union-attr]
    one = added.data[0].id  # type: ignore[union-attr]
    got = mine.conversations.items.retrieve(one, conversation_id=conv.id)
    assert got.id == one and got.content[0].text == "one"  # type: ignore[union-attr]
    after = mine.conversations.items.delete(one, conversation_id=conv.id)
    assert after.id == conv.id and after.object == "conversation"
    assert [i.id for i in mine.conversations.items.list(conv.id).data] == [added.data[1].id]  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        mine.conversations.items.retrieve(one, conversation_id=conv.id)
    deleted = mine.conversations.delete(conv.id)
    assert deleted.deleted and deleted.id == conv.id
    with pytest.raises(openai.NotFoundError):
        mine.conversations.retrieve(conv.id)


def test_another_users_key_gets_404(site: Setup, fakes: Fakes) -> None:
    _site, router, alice, bob = site
    conv = client(router, alice).conversations.create(
        items=[{"type": "message", "role": "user", "content": "secret"}]
    )
    item_id = client(router, alice).conversations.items.list(conv.id).data[0].id  # type: ignore[union-attr]
    other = client(router, bob)
    sent_before = len(fakes.oai.requests)
    for call in (
        lambda: other.conversations.retrieve(conv.id),
        lambda: other.conversations.update(conv.id, metadata={}),
        lambda: other.conversations.delete(conv.id),
        lambda: other.conversations.items.list(conv.id),
        lambda: other.conversations.items.create(
            conv.id, items=[{"type": "message", "role": "user", "content": "mine now"}]
        ),
        lambda: other.conversations.items.retrieve(item_id, conversation_id=conv.id),
        lambda: other.conversations.items.delete(item_id, conversation_id=conv.id),
        lambda: other.responses.create(model="gpt", input="Hi", conversation=conv.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert len(fakes.oai.requests) == sent_before  # refused before anything went upstream
    assert len(client(router, alice).conversations.items.list(conv.id).data) == 1


def test_conversation_and_previous_response_id_are_exclusive(site: Setup) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    conv = mine.conversations.create()
    first = mine.responses.create(model="claude", input="Hi")
    with pytest.raises(openai.BadRequestError) as info:
        mine.responses.create(
            model="claude", input="Hi", conversation=conv.id, previous_response_id=first.id
        )
    assert info.value.body["param"] == "conversation"  # type: ignore[index]


# -- background -------------------------------------------------------------------------------


def finished(mine: openai.OpenAI, response_id: str) -> Any:
    def done() -> Any:
        got = mine.responses.retrieve(response_id)
        return got if got.status not in ("queued", "in_progress") else None

    return within(15, done)


@pytest.mark.parametrize("model", MODELS)
def test_background_runs_and_costs_what_a_foreground_request_costs(
    site: Setup, fakes: Fakes, model: str
) -> None:
    st, router, _alice, _bob = site
    key = st.user_key(f"bg-{model}@example.com")
    mine = client(router, key)
    start = balance(router, key)
    foreground = mine.responses.create(model=model, input="Count the stars.")
    within(5, lambda: balance(router, key) < start)
    after_foreground = balance(router, key)
    cost = start - after_foreground
    assert cost > 0

    queued = mine.responses.create(model=model, input="Count the stars.", background=True)
    assert queued.status in ("queued", "in_progress") and queued.background
    done = finished(mine, queued.id)
    assert done.status == "completed" and done.id == queued.id and done.background
    assert done.output_text == foreground.output_text
    sent = fakes.of(model).requests[-1]  # the router ran it, as a stream
    assert "background" not in sent.json
    assert ":streamGenerateContent" in sent.path if model == "gemini" else sent.json["stream"]
    # Metered exactly as the same request in the foreground.
    within(5, lambda: balance(router, key) == after_foreground - cost)
    items = mine.responses.input_items.list(queued.id)
    assert items.data[0].content[0].text == "Count the stars."  # type: ignore[union-attr]

    bobs = client(router, site[3])
    for call in (bobs.responses.retrieve, bobs.responses.cancel, bobs.responses.delete):
        with pytest.raises(openai.NotFoundError):
            call(queued.id)


@pytest.mark.parametrize("model", MODELS)
def test_background_survives_the_client_and_can_be_cancelled(
    site: Setup, fakes: Fakes, model: str
) -> None:
    st, router, _alice, _bob = site
    key = st.user_key(f"cancel-{model}@example.com")
    mine = client(router, key)
    start = balance(router, key)
    queued = mine.responses.create(model=f"{model}-slow", input="Tell me a story.", background=True)
    # The client that made it is gone (its connection closed); the work goes on.
    mine.close()
    mine = client(router, key)
    within(10, lambda: mine.responses.retrieve(queued.id).status == "in_progress")
    cancelled = mine.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and cancelled.id == queued.id
    within(10, lambda: balance(router, key) < start)  # what was generated is paid
    assert mine.responses.retrieve(queued.id).status == "cancelled"
    assert mine.responses.cancel(queued.id).status == "cancelled"  # cancelling again: the same

    done = mine.responses.create(model=model, input="Quick.", background=True)
    finished(mine, done.id)
    with pytest.raises(openai.BadRequestError):
        mine.responses.cancel(done.id)  # a completed response is not cancelled


@pytest.mark.parametrize("model", MODELS)
def test_background_with_a_conversation(site: Setup, fakes: Fakes, model: str) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    conv = mine.conversations.create(
        items=[{"type": "message", "role": "user", "content": "I live in Lyon."}]
    )
    queued = mine.responses.create(
        model=model, input="Where do I live?", conversation=conv.id, background=True
    )
    done = finished(mine, queued.id)
    assert done.status == "completed" and done.conversation and done.conversation.id == conv.id
    assert "I live in Lyon." in texts_sent(fakes, model)[0]
    items = within(5, lambda: mine.conversations.items.list(conv.id, order="asc").data[2:])
    assert items[-1].content[0].text == done.output_text


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_background_response_survives_its_client_and_resumes(
    site: Setup, fakes: Fakes, model: str
) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    stream = mine.responses.create(
        model=f"{model}-slow", input="Stream a story.", background=True, stream=True
    )
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 4:
            break
    stream.close()  # the client leaves mid-stream: the response goes on without it
    response_id = seen[0].response.id  # type: ignore[union-attr]
    assert seen[0].type == "response.created"
    done = finished(mine, response_id)
    assert done.status == "completed" and done.output_text

    rest = list(mine.responses.retrieve(response_id, stream=True, starting_after=3))
    numbers = [event.sequence_number for event in rest]
    assert numbers[0] == 4 and numbers == sorted(numbers) == list(range(4, 4 + len(rest)))
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.id == response_id  # type: ignore[union-attr]
    assert rest[-1].response.output_text == done.output_text  # type: ignore[union-attr]
    whole = list(mine.responses.retrieve(response_id, stream=True))
    assert [e.sequence_number for e in whole] == list(range(len(whole)))
    assert [e.type for e in whole[:4]] == [e.type for e in seen]
    with pytest.raises(openai.NotFoundError):
        client(router, site[3]).responses.retrieve(response_id, stream=True)  # bob's key


def test_background_refusals(site: Setup) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    with pytest.raises(openai.BadRequestError) as info:
        mine.responses.create(model="claude", input="Hi", background=True, store=False)
    assert info.value.body["param"] == "background"  # type: ignore[index]
    answer = mine.responses.create(model="claude", input="Hi")
    with pytest.raises(openai.BadRequestError) as info:  # not a streamed background response
        mine.responses.retrieve(answer.id, stream=True)
    assert info.value.body["param"] == "stream"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        mine.responses.cancel(answer.id)  # not a background response


def test_a_background_request_without_credits_is_refused_and_not_kept(site: Setup) -> None:
    st, router, _alice, _bob = site
    broke = client(router, st.user_key("broke@example.com", usd=None))
    before = st.count("stored_responses")
    with pytest.raises(openai.APIStatusError) as info:
        broke.responses.create(model="claude", input="Hi", background=True)
    assert info.value.status_code == 402  # the same admission as any request
    within(5, lambda: st.count("stored_responses") == before)  # written every 50 ms


def test_deleting_the_account_deletes_its_conversations(site: Setup) -> None:
    st, router, _alice, _bob = site
    key = st.user_key("carol@example.com")
    mine = client(router, key)
    before = (st.count("conversations"), st.count("conversation_items"))
    conv = mine.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Hello"}]
    )
    mine.responses.create(model="claude", input="Hi", conversation=conv.id)
    background = mine.responses.create(model="gpt", input="Hi", background=True)
    finished(mine, background.id)
    assert len(mine.conversations.items.list(conv.id).data) == 3
    assert st.count("conversations") == before[0] + 1
    st.cli("users", "delete", "carol@example.com", "--yes")
    assert (st.count("conversations"), st.count("conversation_items")) == before
    with sqlite3.connect(st.workdir / "router.db") as db:
        assert not db.execute(
            "SELECT 1 FROM stored_responses WHERE id = ?", (background.id,)
        ).fetchall()


def test_stopping_the_server_ends_a_background_response_and_settles_it(
    fakes: Fakes, tmp_path: Path
) -> None:
    """A job under way when the server stops is cut like a client that left: it is kept as
    ``failed`` and its credit hold is settled (the balance is charged, never left held)."""
    site = Site(tmp_path, config(*fakes.urls))
    key = site.user_key("stop@example.com")
    with RouterServer(site.config_path.read_text(), workdir=tmp_path) as router:
        mine = client(router, key)
        start = balance(router, key)
        queued = mine.responses.create(model="claude-slow", input="Go on.", background=True)
        within(10, lambda: mine.responses.retrieve(queued.id).status == "in_progress")
        assert router.stop() == 0
    with sqlite3.connect(tmp_path / "router.db") as db:
        [(kept,)] = db.execute(
            "SELECT response FROM stored_responses WHERE id = ?", (queued.id,)
        ).fetchall()
    assert json.loads(kept)["status"] == "failed"
    shown = json.loads(site.cli("credits", "show", "stop@example.com", "--json"))
    assert Decimal(shown["balance_usd"]) < start
