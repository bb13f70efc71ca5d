"""What the Bedrock adapter adds per request on top of the router's own path, measured in
process: SigV4 signing through botocore, building a Converse body, and decoding a
ConverseStream (binary event-stream frames, CRCs checked by botocore).

    .venv/bin/python -m benchmarks.bedrock_path

Each figure is the best of several rounds (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import asyncio
import timeit

import orjson

from lmrouter import ir
from lmrouter_bedrock import BedrockConfig, BedrockProvider
from lmrouter_bedrock.converse import converse_request
from lmrouter_bedrock.fake import _Block, _Plan, _stream_events
from lmrouter_bedrock.stream import ConverseStreamParser

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def best(run: object, number: int) -> float:
    """Seconds per call, the best of seven rounds."""
    return min(timeit.repeat(run, number=number, repeat=7)) / number  # type: ignore[arg-type]


def main() -> None:
    config = BedrockConfig(
        type="bedrock",
        region="us-east-1",
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        secret_access_key="x" * 40,
    )
    provider = BedrockProvider("bedrock", config)
    request = ir.ChatRequest(
        model="m",
        messages=[ir.Message(role="user", parts=[ir.Text(text="Hello there " * 50)])],
        max_tokens=1024,
    )
    body = orjson.dumps(converse_request(request, MODEL))
    url = provider.url(MODEL, "converse")
    headers = {"Content-Type": "application/json"}
    loop = asyncio.new_event_loop()

    async def signed(count: int) -> None:
        for _ in range(count):
            await provider.signer.sign(url, headers, body)

    sign = best(lambda: loop.run_until_complete(signed(500)), 1) / 500
    build = best(lambda: orjson.dumps(converse_request(request, MODEL)), 5000)
    usage = {"inputTokens": 150, "outputTokens": 200}
    plan = _Plan([_Block("text", ["abcd"] * 200)], "end_turn", usage)
    stream = b"".join(data for data, _ in _stream_events(plan))
    reads = [stream[i : i + 1024] for i in range(0, len(stream), 1024)]

    def decode() -> None:
        parser = ConverseStreamParser("id", MODEL)
        for read in reads:
            parser.feed(read)

    frames = len(_stream_events(plan))
    parse = best(decode, 20)
    print(f"SigV4 signing ({len(body)} B body): {sign * 1e6:.1f} µs per request")
    print(f"Converse body from the IR: {build * 1e6:.1f} µs per request")
    print(
        f"ConverseStream decoding: {parse / frames * 1e6:.1f} µs per frame "
        f"({frames} frames, {len(stream)} B, 1 KiB reads)"
    )
    loop.close()


if __name__ == "__main__":
    main()
