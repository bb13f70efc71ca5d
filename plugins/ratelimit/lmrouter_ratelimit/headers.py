"""Rate-limit response headers, as OpenAI and Anthropic send them.

OpenAI (on every response)::

    x-ratelimit-limit-requests: 60          x-ratelimit-limit-tokens: 150000
    x-ratelimit-remaining-requests: 59      x-ratelimit-remaining-tokens: 149984
    x-ratelimit-reset-requests: 1s          x-ratelimit-reset-tokens: 6m0s

Anthropic (``/v1/messages``, in addition): ``anthropic-ratelimit-requests-limit``,
``-remaining`` and ``-reset`` (an RFC 3339 time), and the same for ``tokens``. A refusal adds
``retry-after`` (whole seconds, rounded up) and ``retry-after-ms`` (which the official SDKs
prefer).
"""

from __future__ import annotations

import datetime as dt

from lmrouter_ratelimit.backend import Decision

_MS = 1_000_000


def duration(ns: int) -> str:
    """A wait as OpenAI writes it (Go's duration format at millisecond resolution, rounded up so
    that waiting it is always enough): ``0s``, ``20ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h0m0s``."""
    ms = -(-ns // _MS)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    sec = f"{seconds}.{millis:03d}".rstrip("0") if millis else str(seconds)
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


Header = tuple[bytes, bytes]  # what the core sends; names lower-case

_OPENAI = {
    kind: tuple(f"x-ratelimit-{part}-{kind}".encode() for part in ("limit", "remaining", "reset"))
    for kind in ("requests", "tokens")
}
_ANTHROPIC = {
    kind: tuple(
        f"anthropic-ratelimit-{kind}-{part}".encode() for part in ("limit", "remaining", "reset")
    )
    for kind in ("requests", "tokens")
}


def _anthropic_time(reset_ns: int) -> bytes:
    seconds = -(-reset_ns // 1_000_000_000)
    full_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return full_at.strftime("%Y-%m-%dT%H:%M:%SZ").encode()


# Encoded once: a limit's header (a key's limits rarely change) and a reset rounded to the
# millisecond (a handful of values recur: a bucket far from empty resets within 1 ms).
_limits: dict[str, dict[int, Header]] = {"requests": {}, "tokens": {}}
_resets: dict[int, bytes] = {}
_CACHE_MAX = 4096


def _limit_header(kind: str, limit: int) -> Header:
    known = _limits[kind]
    header = known.get(limit)
    if header is None:
        if len(known) >= _CACHE_MAX:
            known.clear()
        header = known[limit] = (_OPENAI[kind][0], b"%d" % limit)
    return header


def _reset(reset_ns: int) -> bytes:
    ms = -(-reset_ns // _MS)
    text = _resets.get(ms)
    if text is None:
        if len(_resets) >= _CACHE_MAX:
            _resets.clear()
        text = _resets[ms] = duration(ms * _MS).encode()
    return text


_REQUESTS, _TOKENS = _OPENAI["requests"], _OPENAI["tokens"]


def quota_headers(decision: Decision, anthropic: bool = False) -> list[Header]:
    """OpenAI's three headers per limit that applies (and Anthropic's when asked). The usual
    case is written out rather than looped: it runs on every response."""
    requests, tokens = decision.requests, decision.tokens
    if requests is not None and tokens is not None and not anthropic:  # the usual case
        return [
            _limit_header("requests", requests[0]),
            (_REQUESTS[1], b"%d" % requests[1]),
            (_REQUESTS[2], _reset(requests[2])),
            _limit_header("tokens", tokens[0]),
            (_TOKENS[1], b"%d" % tokens[1]),
            (_TOKENS[2], _reset(tokens[2])),
        ]
    out: list[Header] = []
    for kind, quota in (("requests", requests), ("tokens", tokens)):
        if quota is None:
            continue
        limit, remaining, reset_ns = quota
        names = _OPENAI[kind]
        out += (
            _limit_header(kind, limit),
            (names[1], b"%d" % remaining),
            (names[2], _reset(reset_ns)),
        )
        if anthropic:
            names = _ANTHROPIC[kind]
            out += (
                (names[0], b"%d" % limit),
                (names[1], b"%d" % remaining),
                (names[2], _anthropic_time(reset_ns)),
            )
    return out


def retry_headers(wait_ns: int) -> list[Header]:
    return [
        (b"retry-after", b"%d" % max(1, -(-wait_ns // 1_000_000_000))),
        (b"retry-after-ms", b"%d" % max(1, -(-wait_ns // _MS))),
    ]
