"""The openai adapter's request building, alone: model rename, stream usage, headers."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from lmrouter.config import Route
from lmrouter_openai import OpenAIConfig, OpenAIProvider


class Ctx:
    def __init__(
        self, doc: dict[str, Any], dialect: str = "openai.chat", output_limit: int | None = None
    ) -> None:
        self.doc = doc
        self.body = orjson.dumps(doc)
        self.stream = bool(doc.get("stream"))
        self.dialect = dialect
        self.output_limit = output_limit


def provider(**extra: Any) -> OpenAIProvider:
    config = msgspec.convert(
        {"type": "openai", "base_url": "https://api.example.com/v1/", **extra}, OpenAIConfig
    )
    return OpenAIProvider("example", config)


ROUTE = Route(provider="example", model="upstream-model")


def test_renames_model_and_keeps_everything_else() -> None:
    doc = {"model": "mine", "messages": [{"role": "user", "content": "hi"}], "x_vendor": {"a": 1}}
    request = provider().prepare(Ctx(doc), ROUTE, "sk-key")  # type: ignore[arg-type]
    assert request.url == "https://api.example.com/v1/chat/completions"
    sent = orjson.loads(request.body)
    assert sent == {**doc, "model": "upstream-model"}
    assert request.headers["Authorization"] == "Bearer sk-key"


def test_same_model_name_sends_the_original_bytes() -> None:
    ctx = Ctx({"model": "upstream-model", "messages": []})
    assert provider().prepare(ctx, ROUTE, "k").body is ctx.body  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [None, {}, {"include_usage": False}])
def test_streams_always_ask_for_usage(options: dict[str, Any] | None) -> None:
    doc: dict[str, Any] = {"model": "mine", "messages": [], "stream": True}
    if options is not None:
        doc["stream_options"] = options
    sent = orjson.loads(provider().prepare(Ctx(doc), ROUTE, "k").body)  # type: ignore[arg-type]
    assert sent["stream_options"]["include_usage"] is True


def test_stream_usage_can_be_turned_off_for_servers_that_reject_it() -> None:
    doc = {"model": "mine", "messages": [], "stream": True}
    request = provider(stream_usage=False).prepare(Ctx(doc), ROUTE, "k")  # type: ignore[arg-type]
    assert "stream_options" not in orjson.loads(request.body)


def test_non_stream_never_gets_stream_options() -> None:
    doc = {"model": "mine", "messages": []}
    sent = orjson.loads(provider().prepare(Ctx(doc), ROUTE, "k").body)  # type: ignore[arg-type]
    assert "stream_options" not in sent


def test_no_key_no_authorization_and_org_headers() -> None:
    p = provider(organization="org-1", project="proj-2")
    request = p.prepare(Ctx({"model": "m", "input": "x"}, "openai.embeddings"), ROUTE, "")  # type: ignore[arg-type]
    assert request.url.endswith("/v1/embeddings")
    assert "Authorization" not in request.headers
    assert request.headers["OpenAI-Organization"] == "org-1"
    assert request.headers["OpenAI-Project"] == "proj-2"


def test_unknown_config_key_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `organisation`"):
        msgspec.convert(
            {"type": "openai", "base_url": "https://x/v1", "organisation": "o"}, OpenAIConfig
        )


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens"])
def test_the_held_limit_goes_in_the_servers_own_field(field: str) -> None:
    ctx = Ctx({"model": "upstream-model", "messages": HI}, output_limit=300)
    sent = orjson.loads(provider(max_tokens_field=field).prepare(ctx, ROUTE, "k").body)  # type: ignore[arg-type]
    assert sent == {"model": "upstream-model", "messages": HI, field: 300}


def test_a_limit_under_the_other_name_is_moved_to_the_servers_field() -> None:
    doc = {"model": "upstream-model", "messages": HI, "max_completion_tokens": 20}
    ctx = Ctx(doc, output_limit=20)
    sent = orjson.loads(provider(max_tokens_field="max_tokens").prepare(ctx, ROUTE, "k").body)  # type: ignore[arg-type]
    assert sent == {"model": "upstream-model", "messages": HI, "max_tokens": 20}


def test_a_limit_in_the_servers_field_sends_the_original_bytes() -> None:
    body = b'{"model": "upstream-model", "messages": [], "max_completion_tokens": 5}'
    ctx = Ctx(orjson.loads(body), output_limit=5)
    ctx.body = body
    assert provider().prepare(ctx, ROUTE, "k").body is body  # type: ignore[arg-type]
