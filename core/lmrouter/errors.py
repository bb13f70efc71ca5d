"""Typed errors. A RouterError carries what every dialect needs to render it (see ``dialects``)."""

from __future__ import annotations

import re
from collections.abc import Mapping

# status → (OpenAI error type, Anthropic error type); the code is chosen per error.
ERROR_TYPES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    402: ("insufficient_quota", "billing_error"),
    403: ("permission_error", "permission_error"),
    404: ("invalid_request_error", "not_found_error"),
    405: ("invalid_request_error", "invalid_request_error"),
    408: ("invalid_request_error", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_error"),
    500: ("server_error", "api_error"),
    502: ("upstream_error", "api_error"),
    503: ("server_error", "overloaded_error"),
    504: ("timeout_error", "timeout_error"),
    529: ("server_error", "overloaded_error"),
}


class RouterError(Exception):
    """An error for the caller: HTTP status, machine code, human message, offending field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    @property
    def openai_type(self) -> str:
        return ERROR_TYPES.get(self.status, ERROR_TYPES[500 if self.status >= 500 else 400])[0]

    @property
    def anthropic_type(self) -> str:
        return ERROR_TYPES.get(self.status, ERROR_TYPES[500 if self.status >= 500 else 400])[1]

    def __repr__(self) -> str:
        return f"RouterError({self.status}, {self.code!r}, {self.message!r})"


class CannotServe(RouterError):
    """A converted request this route's provider has no form for (audio to Anthropic, ``n > 1``
    to a provider without choices): raised by :meth:`Provider.build`, it sends the request on
    to the next route, and when no route can take it the caller gets this 400, naming the
    field and why, rather than an answer that silently left something out."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(400, message, code="invalid_request", param=param)


def invalid_request(message: str, param: str | None = None) -> RouterError:
    return RouterError(400, message, code="invalid_request", param=param)


def invalid_api_key(message: str = "Invalid API key.") -> RouterError:
    return RouterError(401, message, code="invalid_api_key")


def model_not_found(model: str) -> RouterError:
    return RouterError(
        404, f"The model `{model}` does not exist.", code="model_not_found", param="model"
    )


def body_too_large(limit: int) -> RouterError:
    return RouterError(413, f"Request body exceeds {limit} bytes.", code="request_too_large")


class CommandError(Exception):
    """For ``lmrouter`` commands: a mistake in the arguments or in what they name (not in the
    config file). The CLI prints ``error: …`` and exits with 1."""


_AT = re.compile(r" - at `\$\.?(.*)`$")
_NAMED = re.compile(r"^Object (missing required|contains unknown) field `(.+)`$")


def validation_detail(message: str) -> tuple[str, str, str]:
    """msgspec's ``ValidationError`` text (``Object missing required field `x` - at `$.a[0]```)
    as ``(problem, path, kind)``: ``path`` names the field (``""`` at the top level); ``kind`` is
    ``"missing"`` or ``"unknown"`` when the problem is a field by name, which then ends the path
    (``a[0].x``), else ``""``. One reading for the dialects' 400s and the config's errors."""
    at = _AT.search(message)
    path = at.group(1) if at else ""
    problem = message[: at.start()] if at else message
    named = _NAMED.match(problem)
    if named is None:
        return problem, path, ""
    path = f"{path}.{named.group(2)}" if path else named.group(2)
    return problem, path, "missing" if named.group(1).startswith("missing") else "unknown"
