"""What the router reads off a request's headers: the headers themselves, the caller's API key,
and the request id. Used by the app, the pipeline (:mod:`lmrouter.proxy`) and
:mod:`lmrouter.auth`; depends on nothing else in the package."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from starlette.types import Scope

__all__ = ["MISSING_KEY", "Headers", "api_key_from", "new_request_id", "request_id_of"]


class Headers(dict[str, str]):
    """Request headers, lower-case names, last value wins: all the pipeline and hooks need."""

    @classmethod
    def from_scope(cls, scope: Scope) -> Headers:
        return cls((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])


def api_key_from(headers: Headers, query_string: bytes = b"") -> str | None:
    """The caller's key: ``Authorization: Bearer``, ``x-api-key``, ``x-goog-api-key`` or
    (Gemini's way) ``?key=`` in the query string."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key") or headers.get("x-goog-api-key")
    if key:
        return key
    if query_string and b"key=" in query_string:
        for name, value in parse_qsl(query_string.decode("latin-1")):
            if name == "key" and value:
                return value
    return None


MISSING_KEY = "Missing API key: send it as `Authorization: Bearer …` or `x-api-key`."


_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(scope: Scope) -> bytes:
    """The caller's ``x-request-id`` when it is sane, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SAFE_ID.match(value):
                return bytes(value)
            break
    return new_request_id()


def new_request_id() -> bytes:
    """24 hex digits: the time in milliseconds (12), then 48 random bits. Ids that sort by time
    make an index on them (usage records have one) grow at its end, as a time column's does;
    random ids land all over it, which costs a metered router more than SQLite's every other
    write per request once the table is large."""
    return b"%012x%s" % (time.time_ns() // 1_000_000, os.urandom(6).hex().encode())
