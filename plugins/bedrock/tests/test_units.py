"""Bedrock's parts on their own: Converse bodies and answers, the event-stream parser at any
chunk boundary, SigV4 signing (checked by the fake's botocore verifier) and the credential
chain."""

from __future__ import annotations

import asyncio
import base64
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter import UpstreamFailure, ir
from lmrouter_bedrock import BedrockConfig, BedrockProvider
from lmrouter_bedrock.auth import Signer
from lmrouter_bedrock.converse import chat_response, converse_request, decode_response
from lmrouter_bedrock.fake import FakeBedrock, _Block, _Plan, _stream_events, exception_frame
from lmrouter_bedrock.stream import ConverseStreamParser

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def chat(*messages: ir.Message, **fields: Any) -> ir.ChatRequest:
    return ir.ChatRequest(model="m", messages=list(messages), **fields)


def user(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="user", parts=list(parts))


def assistant(*parts: ir.Part) -> ir.Message:
    return ir.Message(role="assistant", parts=list(parts))


WEATHER = ir.Tool(name="get_weather", description="The weather", parameters={"type": "object"})


# -- IR → Converse ------------------------------------------------------------------------------


def test_converse_body_maps_every_part() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    request = chat(
        user(ir.Text(text="Look", cache=True), ir.Image(url=f"data:image/png;base64,{png}")),
        assistant(ir.ToolCall(id="t1", name="get_weather", arguments='{"city": "Paris"}')),
        user(ir.Text(text="and?"), ir.ToolResult(id="t1", content=[ir.Text(text="sunny")])),
        system=[ir.Text(text="Be brief.")],
        tools=[WEATHER],
        tool_choice=ir.ToolChoice(mode="tool", name="get_weather"),
        max_tokens=300,
        temperature=0.2,
        top_p=0.9,
        stop=["END", " "],
    )
    body = converse_request(request, "anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert body["system"] == [{"text": "Be brief."}]
    first, second, third = body["messages"]
    assert first["content"] == [
        {"text": "Look"},
        {"cachePoint": {"type": "default"}},
        {"image": {"format": "png", "source": {"bytes": png}}},
    ]
    use = {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}
    assert second == {"role": "assistant", "content": [{"toolUse": use}]}
    # tool results open the user turn
    assert third["content"][0] == {
        "toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}
    }
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}
    assert body["inferenceConfig"] == {
        "maxTokens": 300,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }


def test_family_quirks() -> None:
    request = chat(
        user(ir.Text(text="Hi")),
        system=[ir.Text(text="Be brief.")],
        tools=[WEATHER],
        tool_choice=ir.ToolChoice(mode="required"),
    )
    # Mixtral has no system prompt: its text opens the first user turn.
    mixtral = converse_request(
        ir.ChatRequest(model="m", messages=request.messages, system=request.system),
        "mistral.mixtral-8x7b-instruct-v0:1",
    )
    assert "system" not in mixtral
    assert mixtral["messages"][0]["content"] == [{"text": "Be brief."}, {"text": "Hi"}]
    # Llama takes no forced tool choice: auto. Claude and Nova do.
    llama = converse_request(request, "us.meta.llama3-3-70b-instruct-v1:0")
    assert llama["toolConfig"]["toolChoice"] == {"auto": {}}
    nova = converse_request(request, "us.amazon.nova-pro-v1:0")
    assert nova["toolConfig"]["toolChoice"] == {"any": {}}


def test_tool_choice_none_and_first_turn() -> None:
    none = ir.ToolChoice(mode="none")
    plain = converse_request(chat(user(ir.Text(text="Hi")), tools=[WEATHER], tool_choice=none), "x")
    assert "toolConfig" not in plain
    history = chat(
        assistant(ir.ToolCall(id="t1", name="get_weather")),
        user(ir.ToolResult(id="t1")),
        tools=[WEATHER],
        tool_choice=none,
    )
    body = converse_request(history, "x")
    # the history holds tool blocks: Bedrock wants the tools declared, offered with auto
    assert "toolChoice" not in body["toolConfig"] and body["toolConfig"]["tools"]
    assert body["messages"][0] == {"role": "user", "content": [{"text": "."}]}
    result = body["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"json": {}}]


def test_thinking_for_claude_only() -> None:
    request = chat(user(ir.Text(text="Hi")), reasoning_effort="medium", max_tokens=8000)
    claude = converse_request(request, "us.anthropic.claude-sonnet-4-20250514-v1:0")
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 4096}}
    assert claude["additionalModelRequestFields"] == thinking
    assert "additionalModelRequestFields" not in converse_request(request, "amazon.nova-pro-v1:0")


def test_image_urls_are_refused() -> None:
    request = chat(user(ir.Image(url="https://example.com/cat.png")))
    with pytest.raises(Exception, match="inline only"):
        converse_request(request, "x")


def test_documents_become_document_blocks_and_audio_skips_the_route() -> None:
    from lmrouter import CannotServe

    pdf = base64.b64encode(b"%PDF-1.4").decode()
    request = chat(
        user(
            ir.File(media_type="application/pdf", data=pdf, name="Q3 report.pdf"),
            ir.File(media_type="text/plain", text="plain words"),
        )
    )
    content = converse_request(request, "x")["messages"][0]["content"]
    assert content[0] == {
        "document": {"format": "pdf", "name": "Q3 report pdf", "source": {"bytes": pdf}}
    }
    assert content[1] == {"text": "plain words"}
    audio = ir.File(media_type="audio/wav", data="UklGRg==", param="messages[0].content[0]")
    with pytest.raises(
        CannotServe, match=r"messages\[0\]\.content\[0\]: a file of type 'audio/wav'"
    ):
        converse_request(chat(user(audio)), "x")


# -- Converse answer → IR -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_answer_stop_reasons_and_usage(stop: str, finish: str) -> None:
    body = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s1"}}},
                    {"text": "Hi"},
                    {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}},
                ],
            }
        },
        "stopReason": stop,
        "usage": {
            "inputTokens": 10,
            "outputTokens": 5,
            "totalTokens": 22,
            "cacheReadInputTokens": 4,
            "cacheWriteInputTokens": 3,
        },
    }
    answer = chat_response(decode_response(orjson.dumps(body)), "id1", "m")
    assert answer.finish_reason == finish
    assert answer.parts == [
        ir.Thinking(text="hmm", signature="s1"),
        ir.Text(text="Hi"),
        ir.ToolCall(id="t", name="f", arguments='{"a":1}'),
    ]
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (17, 5)
    assert (answer.usage.cached_tokens, answer.usage.cache_write_tokens) == (4, 3)


# -- the event stream ---------------------------------------------------------------------------

PLAN = _Plan(
    [
        _Block("text", ["I'll ", "look ", "ü€ "]),
        _Block("toolUse", ['{"ci', 'ty": ', '"Paris"}'], "tooluse_1", "get_weather"),
    ],
    "tool_use",
    {"inputTokens": 7, "outputTokens": 6, "cacheReadInputTokens": 2, "cacheWriteInputTokens": 0},
)
STREAM = b"".join(data for data, _ in _stream_events(PLAN))


def parse(chunks: list[bytes]) -> list[ir.Event]:
    parser = ConverseStreamParser("id", "m")
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_stream_events() -> None:
    events = parse([STREAM])
    assert events[0] == ir.StreamStart(id="id", model="m")
    text = "".join(e.text for e in events if isinstance(e, ir.TextDelta))
    assert text == "I'll look ü€ "
    assert ir.ToolCallStart(index=0, id="tooluse_1", name="get_weather") in events
    arguments = "".join(e.arguments for e in events if isinstance(e, ir.ToolCallDelta))
    assert orjson.loads(arguments) == {"city": "Paris"}
    finish, usage = events[-2:]
    assert finish == ir.Finish(finish_reason="tool_calls")
    assert isinstance(usage, ir.UsageUpdate) and usage.usage.prompt_tokens == 9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_stream_at_any_chunk_boundary(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(edges)]
    assert parse(chunks) == parse([STREAM])


def test_stream_exception_and_corrupt_frame() -> None:
    secret_frame = exception_frame("modelStreamErrorException", f"failed for {SECRET}")
    parser = ConverseStreamParser("id", "m", redact=(SECRET,))
    first_frames = b"".join(data for data, _ in _stream_events(PLAN)[:3])
    events = parser.feed(first_frames)
    tail = parser.feed(secret_frame)
    assert isinstance(tail[-1], ir.StreamError) and tail[-1].status == 502
    assert SECRET not in tail[-1].message and "modelStreamErrorException" in tail[-1].message
    assert ir.TextDelta(text="I'll ") in events  # what came before the exception counts
    assert parser.feed(STREAM) == []  # nothing after it does
    invalid = ConverseStreamParser("id", "m").feed(exception_frame("validationException"))
    assert isinstance(invalid[-1], ir.StreamError) and invalid[-1].status == 400
    corrupt = bytearray(STREAM)
    corrupt[20] ^= 0xFF  # inside the first frame's headers: its message CRC no longer matches
    broken = ConverseStreamParser("id", "m").feed(bytes(corrupt))
    assert broken == [ir.StreamError(message="unreadable event stream (ChecksumMismatch)")]


# -- signing ------------------------------------------------------------------------------------


def converse(fake: FakeBedrock, headers: dict[str, str], body: bytes, path: str) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(fake.base_url + path, data=body, headers=headers) as response,
        ):
            return response.status, (
                response.headers.get("x-amzn-ErrorType"),
                await response.json(),
            )

    return asyncio.run(go())


PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0"
)


@pytest.mark.parametrize("model", ["anthropic.claude-3-haiku-20240307-v1:0", PROFILE_ARN])
def test_sigv4_is_verified_by_botocore(model: str) -> None:
    config = BedrockConfig(
        type="bedrock",
        base_url="http://x",
        region="us-east-1",
        access_key_id=AKID,
        secret_access_key=SECRET,
    )
    provider = BedrockProvider("b", config)
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]})
    with (fake := FakeBedrock({AKID: SECRET})).run_in_thread():
        url = provider.url(model, "converse").replace("http://x", fake.base_url)
        path = url.removeprefix(fake.base_url)
        signed = asyncio.run(provider.signer.sign(url, {"Content-Type": "application/json"}, body))
        assert signed["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
        assert "/us-east-1/bedrock/aws4_request" in signed["Authorization"]
        assert SECRET not in str(signed)
        status, (_, answer) = converse(fake, signed, body, path)
        assert status == 200 and answer["output"]["message"]["content"][0]["text"]
        # A body changed after signing, or the wrong secret: Bedrock's 403 with its error type.
        status, (kind, answer) = converse(fake, signed, body.replace(b"Hi", b"Yo"), path)
        assert status == 403 and kind.startswith("InvalidSignatureException:")
        assert answer["message"].startswith("The request signature we calculated does not match")
        wrong = Signer("us-east-1", _static(AKID, "not-the-secret"))
        bad = asyncio.run(wrong.sign(url, {"Content-Type": "application/json"}, body))
        assert converse(fake, bad, body, path)[0] == 403
        elsewhere = Signer("eu-west-1", _static(AKID, SECRET))
        status, (kind, answer) = converse(
            fake, asyncio.run(elsewhere.sign(url, {}, body)), body, path
        )
        assert status == 403 and "valid region" in answer["message"]
        status, (kind, _) = converse(fake, {}, body, path)
        assert status == 403 and kind.startswith("MissingAuthenticationTokenException:")


def _static(akid: str, secret: str, token: str | None = None) -> Any:
    from botocore.credentials import Credentials

    return Credentials(akid, secret, token)


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials from this machine: empty config files, no metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)


def test_credentials_from_the_environment_and_a_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token")
    headers = asyncio.run(Signer("us-east-1", None).sign("https://h/model/m/converse", {}, b"{}"))
    assert "Credential=AKIAENVIRONMENT00001/" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == "env-session-token"
    assert "x-amz-security-token" in headers["Authorization"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    (tmp_path / "credentials").write_text(
        "[work]\naws_access_key_id = AKIAPROFILE000000001\naws_secret_access_key = p-secret\n"
    )
    signer = Signer("us-east-1", None, profile="work")
    headers = asyncio.run(signer.sign("https://h/model/m/converse", {}, b"{}"))
    assert "Credential=AKIAPROFILE000000001/" in headers["Authorization"]
    assert signer.secrets == ("p-secret",)  # redacted from any error message


def test_no_credentials_fail_the_attempt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)
    with pytest.raises(UpstreamFailure) as failed:
        asyncio.run(Signer("us-east-1", None).sign("https://h/model/m/converse", {}, b"{}"))
    assert failed.value.retryable and "no AWS credentials" in failed.value.message


def test_default_endpoint_and_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    provider = BedrockProvider("b", BedrockConfig(type="bedrock"))
    assert provider.url("anthropic.claude-3-haiku-20240307-v1:0", "converse-stream") == (
        "https://bedrock-runtime.eu-central-1.amazonaws.com/model/"
        "anthropic.claude-3-haiku-20240307-v1:0/converse-stream"
    )
    arn = "arn:aws:bedrock:us-east-1:1:inference-profile/us.amazon.nova-pro-v1:0"
    assert "/model/arn:aws:bedrock:us-east-1:1:inference-profile%2Fus.amazon.nova" in (
        provider.url(arn, "converse")
    )


def test_lmrouter_plugins_lists_the_bedrock_type_and_its_dialects() -> None:
    import subprocess
    import sys

    listing = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    block = listing.split("\nbedrock ", 1)[1].split("\n")[:4]
    assert "lmrouter-bedrock" in block[0]
    lines = [line.strip() for line in block]
    assert "hook API: >=1.3, <2" in lines
    claim = "provider type 'bedrock': anthropic.messages, gemini.generate, openai.chat"
    assert f"{claim}, openai.responses" in lines


def test_temporary_credentials_are_refreshed_before_they_expire() -> None:
    import datetime

    from botocore.credentials import RefreshableCredentials

    now = datetime.datetime.now(datetime.UTC)
    fetched: list[str] = []

    def fetch() -> dict[str, str]:  # what an STS role or SSO source would answer
        fetched.append(f"ASIAREFRESHED{len(fetched):07d}")
        expiry = now + datetime.timedelta(hours=1)
        return {
            "access_key": fetched[-1],
            "secret_key": f"secret-{len(fetched)}",
            "token": f"token-{len(fetched)}",
            "expiry_time": expiry.isoformat(),
        }

    soon = (now + datetime.timedelta(minutes=5)).isoformat()  # within botocore's refresh window
    metadata = {"access_key": "ASIAOLD", "secret_key": "old", "token": "t", "expiry_time": soon}
    signer = Signer("us-east-1", RefreshableCredentials.create_from_metadata(metadata, fetch, "t"))
    for _ in range(3):
        headers = asyncio.run(signer.sign("https://h/model/m/converse", {}, b"{}"))
        assert f"Credential={fetched[-1]}/" in headers["Authorization"]
    assert len(fetched) == 1, "a fresh credential is reused until it nears its expiry"
    assert headers["X-Amz-Security-Token"] == "token-1"


def test_error_messages_in_the_stream() -> None:
    from lmrouter_bedrock.fake import frame

    headers = {":message-type": "error", ":error-code": "InternalFailure"}
    events = ConverseStreamParser("id", "m").feed(frame({**headers, ":error-message": "boom"}, b""))
    assert events == [ir.StreamError(message="InternalFailure: boom")]
    throttled = ConverseStreamParser("id", "m").feed(exception_frame("throttlingException"))
    assert isinstance(throttled[0], ir.StreamError) and throttled[0].status == 502


def test_expired_signatures_and_wrong_session_tokens_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datetime

    import botocore.auth

    body = b'{"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}'
    path = "/model/amazon.nova-micro-v1:0/converse"
    with (fake := FakeBedrock({AKID: SECRET}, session_token="good-token")).run_in_thread():
        url = fake.base_url + path
        ok = Signer("us-east-1", _static(AKID, SECRET, "good-token"))
        assert converse(fake, asyncio.run(ok.sign(url, {}, body)), body, path)[0] == 200
        other = Signer("us-east-1", _static(AKID, SECRET, "other-token"))
        status, (kind, _) = converse(fake, asyncio.run(other.sign(url, {}, body)), body, path)
        assert status == 403 and kind.startswith("UnrecognizedClientException:")
        past = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        past -= datetime.timedelta(minutes=6)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
        status, (kind, answer) = converse(fake, asyncio.run(ok.sign(url, {}, body)), body, path)
        assert status == 403 and answer["message"].startswith("Signature expired: ")


def test_check_does_not_ask_for_an_api_key_the_aws_chain_replaces(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "lmrouter.toml"
    config.write_text(
        '[auth]\nkeys = ["sk-op"]\n[plugins]\ndisabled = ["accounts", "credits", "dashboard", '
        '"stripe", "ratelimit"]\n[providers.aws]\ntype = "bedrock"\nregion = "eu-west-1"\n'
        '[providers.compat]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[[models]]\nid = "claude"\n  [[models.routes]]\n  provider = "aws"\n'
        '  model = "anthropic.claude-3-haiku"\n  [[models.routes]]\n  provider = "compat"\n'
        '  model = "x"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "provider 'compat' has no api_key" in out  # the warning still works
    assert "provider 'aws'" not in out
    assert "(credentials of its own)" in next(line for line in out.splitlines() if " aws " in line)
