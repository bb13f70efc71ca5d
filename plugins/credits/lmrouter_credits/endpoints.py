"""``GET /v1/credits`` and ``GET /v1/usage``: a caller's own balance, lots and usage records.
Operator (admin) keys may name a user with ``?user=EMAIL``; ``/v1/usage`` without it shows them
everyone's records. A user's key never reaches another user's rows."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.routing import Route

from lmrouter import RouterError, format_usd, invalid_request, require_principal
from lmrouter_credits import clock, ledger, service
from lmrouter_credits.ledger import UsageQuery

if TYPE_CHECKING:
    from starlette.requests import Request

    from lmrouter import Principal
    from lmrouter_credits.meter import Meter

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Endpoints:
    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin  # its meter exists once the server has started

    @property
    def meter(self) -> Meter:
        return self.plugin.meter

    def routes(self) -> list[Route]:
        return [
            Route("/v1/credits", self.credits, methods=["GET"]),
            Route("/v1/usage", self.usage, methods=["GET"]),
        ]

    async def credits(self, request: Request) -> JSONResponse:
        principal = await require_principal(request)
        user_id = await self._subject(principal, request)
        if user_id is None:
            raise invalid_request(
                "Operator keys hold no credits: add ?user=EMAIL to see a user's.", param="user"
            )
        summary = await self.meter.read(lambda tx: service.summary(tx, user_id))
        return JSONResponse(summary.to_json())

    async def usage(self, request: Request) -> JSONResponse:
        principal = await require_principal(request)
        user_id = await self._subject(principal, request)
        params = request.query_params
        query = UsageQuery(
            user_id=user_id,
            start=_time(params.get("start"), "start"),
            end=_time(params.get("end"), "end"),
            model=params.get("model") or None,
            key_id=params.get("key_id") or None,
            after=_cursor(params.get("cursor")),
            limit=_limit(params.get("limit")),
        )
        rows = await self.meter.read(lambda tx: ledger.usage_rows(tx, query))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        next_cursor = _encode_cursor(rows[-1]) if more else None
        return JSONResponse(
            {
                "object": "list",
                "data": [_usage_json(row) for row in rows],
                "has_more": more,
                "next_cursor": next_cursor,
            }
        )

    async def _subject(self, principal: Principal, request: Request) -> str | None:
        """Whose records: the caller's own; for an admin, ``?user=EMAIL``'s, or None (all)."""
        email = request.query_params.get("user")
        if principal.is_admin:
            if not email:
                return principal.user_id
            user_id = await ledger.user_id_for_email(self.meter.store, email)
            if user_id is None:
                raise RouterError(404, f"No user {email!r}.", code="user_not_found", param="user")
            return user_id
        if email:
            raise RouterError(
                403, "Only operator keys may ask for another user's records.", code="forbidden"
            )
        if principal.kind != "user" or principal.user_id is None:
            raise RouterError(403, "This key belongs to no account.", code="forbidden")
        return principal.user_id


def _time(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        return clock.to_iso(clock.from_iso(value))
    except (ValueError, OverflowError):
        raise invalid_request(f"`{name}` must be an ISO-8601 date or time", param=name) from None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise invalid_request(f"`limit` must be a whole number from 1 to {MAX_LIMIT}", "limit")
    return int(value)


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['created_at']}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created_at, usage_id = raw.split("|")
        clock.from_iso(created_at)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_request("`cursor` is not one this server gave out", "cursor") from None
    return created_at, usage_id


def _usage_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not k.endswith("_pico")}
    out["estimated"] = bool(row["estimated"])
    out["billable"] = bool(row["billable"])
    for name in ("cost", "charged", "written_off"):
        out[f"{name}_usd"] = format_usd(row[f"{name}_pico"])
    return out
