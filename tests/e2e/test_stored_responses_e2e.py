"""Stored Responses end to end (plugin ``responses``): the official openai SDK's
``responses.create(store=True)``, ``previous_response_id``, ``retrieve``, ``delete`` and
``input_items.list`` against the real router, with two users' keys made by the real CLI.

On an OpenAI route the upstream (the fake, which keeps responses as OpenAI does) holds them and
the router forwards lookups there; on an Anthropic route the request is converted and the
router keeps the conversation itself, rebuilding it for ``previous_response_id``. Another
user's key gets 404; expired rows are gone; deleting the account deletes them;
``store_days = 0`` keeps nothing and refuses ``previous_response_id``."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_anthropic import FakeAnthropic
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer

ADMIN = "sk-admin-stored"
KEY_LINE = re.compile(r"sk-lmr-[A-Za-z0-9_-]{32}")
MODELS = ["gpt", "claude"]  # an OpenAI route (pass-through), an Anthropic route (converted)


def config(oai: str, ant: str, store_days: int = 30) -> str:
    return kit.config(
        admin=ADMIN,
        disabled=["credits", "ratelimit"],
        storage={"url": "sqlite:///router.db"},
        accounts={"secret": "a-test-secret-of-enough-length"},
        responses={"store_days": store_days},
        providers={
            "oai": kit.provider("openai", oai, "sk-upstream-oai", byok=True),
            "ant": kit.provider("anthropic", ant, "sk-upstream-ant"),
        },
        models={"gpt": kit.route("oai", "gpt-x"), "claude": kit.route("ant", "claude-x")},
    )


class Site:
    def __init__(self, workdir: Path, text: str) -> None:
        self.workdir = workdir
        self.config_path = workdir / "lmrouter.toml"
        self.config_path.write_text(text)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(self.config_path)],
            input=stdin,
            capture_output=True,
            text=True,
            env=dict(os.environ),
            cwd=self.workdir,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def user_key(self, email: str) -> str:
        self.cli("users", "add", email)
        key = self.cli("keys", "create", email).strip().splitlines()[-1]
        assert KEY_LINE.fullmatch(key)
        return key

    def rows(self) -> list[tuple[str, int]]:
        with sqlite3.connect(self.workdir / "router.db") as db:
            return db.execute("SELECT id, upstream FROM stored_responses ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, str, str]]:
    oai, ant = FakeOpenAI(), FakeAnthropic()
    with oai.run_in_thread() as oai_url, ant.run_in_thread() as ant_url:
        yield oai, ant, oai_url, ant_url


@pytest.fixture(scope="module")
def site(
    fakes: tuple[FakeOpenAI, FakeAnthropic, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Site, RouterServer, str, str]]:
    workdir = tmp_path_factory.mktemp("stored")
    site = Site(workdir, config(fakes[2], fakes[3]))
    alice, bob = site.user_key("alice@example.com"), site.user_key("bob@example.com")
    with RouterServer(site.config_path.read_text(), workdir=workdir) as router:
        yield site, router, alice, bob


def client(router: RouterServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_store_continue_retrieve_list_delete(
    site: tuple[Site, RouterServer, str, str],
    fakes: tuple[FakeOpenAI, FakeAnthropic, str, str],
    model: str,
    stream: bool,
) -> None:
    _site, router, alice, bob = site
    oai, ant = fakes[0], fakes[1]
    mine = client(router, alice)
    if stream:
        with mine.responses.stream(model=model, input="My name is Ada.", store=True) as events:
            first = events.get_final_response()
    else:
        first = mine.responses.create(model=model, input="My name is Ada.", store=True)
    assert first.store is True
    first_text = first.output_text
    assert first_text

    second = mine.responses.create(
        model=model, input="What is my name?", previous_response_id=first.id
    )
    if model == "gpt":  # the upstream keeps it: the id went there as it was
        sent = oai.requests[-1].json
        assert sent["previous_response_id"] == first.id and sent["input"] == "What is my name?"
    else:  # converted: the router rebuilt the conversation from its store
        messages = ant.requests[-1].json["messages"]
        texts = [str(m["content"]) for m in messages]
        assert "My name is Ada." in texts[0]
        assert messages[1]["role"] == "assistant" and first_text in texts[1]
        assert "What is my name?" in texts[2]

    got = mine.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text
    items = mine.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].content[0].text == "What is my name?"  # type: ignore[union-attr]

    other = client(router, bob)  # another user's key: as if the id did not exist
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(second.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(second.id)
    with pytest.raises(openai.BadRequestError) as info:
        other.responses.create(model=model, input="Hi", previous_response_id=second.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]

    mine.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(second.id)
    if model == "gpt":
        assert second.id not in oai.stored  # deleted where it was kept


def test_store_false_keeps_nothing(site: tuple[Site, RouterServer, str, str]) -> None:
    _site, router, alice, _bob = site
    mine = client(router, alice)
    for model in MODELS:
        answer = mine.responses.create(model=model, input="Hello", store=False)
        assert answer.store is False
        with pytest.raises(openai.NotFoundError):
            mine.responses.retrieve(answer.id)


def test_expired_responses_are_gone(site: tuple[Site, RouterServer, str, str]) -> None:
    st, router, alice, _bob = site
    mine = client(router, alice)
    answer = mine.responses.create(model="claude", input="Remember me", store=True)
    assert mine.responses.retrieve(answer.id).id == answer.id
    with sqlite3.connect(st.workdir / "router.db") as db:  # as if store_days had passed
        db.execute("UPDATE stored_responses SET expires_at = 1 WHERE id = ?", (answer.id,))
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(answer.id)
    with pytest.raises(openai.BadRequestError):
        mine.responses.create(model="claude", input="And now?", previous_response_id=answer.id)


def test_deleting_the_account_deletes_its_responses(
    site: tuple[Site, RouterServer, str, str],
) -> None:
    st, router, _alice, _bob = site
    carol = st.user_key("carol@example.com")
    mine = client(router, carol)
    kept = [mine.responses.create(model=m, input="Hello", store=True).id for m in MODELS]
    assert mine.responses.retrieve(kept[1]).id == kept[1]  # written (the lookup flushes)
    assert set(kept) <= {row[0] for row in st.rows()}
    st.cli("users", "delete", "carol@example.com", "--yes")
    assert not set(kept) & {row[0] for row in st.rows()}


def test_store_days_zero_stores_nothing_and_refuses_previous_response_id(
    fakes: tuple[FakeOpenAI, FakeAnthropic, str, str], tmp_path: Path
) -> None:
    oai = fakes[0]
    with RouterServer(config(fakes[2], fakes[3], store_days=0), workdir=tmp_path) as router:
        admin = client(router, ADMIN)
        for model in MODELS:
            answer = admin.responses.create(model=model, input="Hello")
            assert answer.store is False
            with pytest.raises(openai.NotFoundError):
                admin.responses.retrieve(answer.id)
            with pytest.raises(openai.BadRequestError) as info:
                admin.responses.create(model=model, input="Hi", previous_response_id=answer.id)
            body = info.value.body
            assert isinstance(body, dict) and body["param"] == "previous_response_id"
            assert "store_days = 0" in body["message"]
        assert oai.requests[-1].json["store"] is False  # nor does the provider keep it


def test_a_response_made_with_the_users_own_key_is_read_back_with_it(
    site: tuple[Site, RouterServer, str, str], fakes: tuple[FakeOpenAI, FakeAnthropic, str, str]
) -> None:
    st, router, _alice, _bob = site
    oai = fakes[0]
    dave = st.user_key("dave@example.com")
    st.cli("byok", "set", "dave@example.com", "oai", "--key-stdin", stdin="sk-daves-own-key\n")
    mine = client(router, dave)
    answer = mine.responses.create(model="gpt", input="Hello", store=True)
    assert oai.stored[answer.id][0] == "sk-daves-own-key"  # OpenAI keeps it under dave's key
    # The fake finds it only for the key that made it: the router forwards with dave's key.
    assert mine.responses.retrieve(answer.id).id == answer.id
    assert oai.requests[-1].headers["authorization"] == "Bearer sk-daves-own-key"
    assert [i.type for i in mine.responses.input_items.list(answer.id).data] == ["message"]


def test_item_references_name_kept_items_of_their_owner_only(
    site: tuple[Site, RouterServer, str, str],
    fakes: tuple[FakeOpenAI, FakeAnthropic, str, str],
) -> None:
    """On a converted route, an ``item_reference`` to an item of the caller's stored responses
    or conversations becomes that item; another user's reference names nothing."""
    _site, router, alice, bob = site
    ant = fakes[1]
    mine = client(router, alice)
    first = mine.responses.create(model="claude", input="My name is Ada.", store=True)
    asked = mine.responses.input_items.list(first.id).data[0].id
    said = next(item for item in first.output if item.type == "message").id
    kept = mine.conversations.create(
        items=[{"type": "message", "role": "user", "content": "I like tea."}]
    )
    liked = mine.conversations.items.list(kept.id).data[0].id
    references = [{"type": "item_reference", "id": i} for i in (asked, said, liked)]
    mine.responses.create(
        model="claude",
        input=[*references, {"role": "user", "content": "What is my name?"}],  # type: ignore[list-item]
    )
    texts = [str(m["content"]) for m in ant.requests[-1].json["messages"]]
    assert "My name is Ada." in texts[0] and first.output_text in texts[1]
    assert "I like tea." in texts[2] and "What is my name?" in texts[2]

    other = client(router, bob)
    with pytest.raises(openai.BadRequestError) as refused:
        other.responses.create(
            model="claude",
            input=[references[0], {"role": "user", "content": "Hi"}],  # type: ignore[list-item]
        )
    assert "item_reference" in refused.value.message
