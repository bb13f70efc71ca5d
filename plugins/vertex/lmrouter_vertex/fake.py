"""Fake Vertex AI endpoints for tests, each built on LMRouter's fake of the publisher's API:

- :class:`FakeVertexGemini`: ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/
  {model}:{generateContent|streamGenerateContent|countTokens}`` answered by
  :class:`~lmrouter.testing.fake_gemini.FakeGemini`;
- :class:`FakeVertexAnthropic`: ``…/publishers/anthropic/models/{model}:{rawPredict|
  streamRawPredict}`` answered by :class:`~lmrouter.testing.fake_anthropic.FakeAnthropic`;
  the body must carry ``anthropic_version: "vertex-2023-10-16"`` and no ``model``, as on Vertex.

Both want ``Authorization: Bearer`` with ``token`` or one they issued at ``POST /token``: a
Google OAuth token endpoint for service accounts (the JWT-bearer grant; the assertion's
signature is checked against the service account's public key, its ``aud`` is
``https://oauth2.googleapis.com/token`` as Google wants it, its ``scope`` must be
cloud-platform). Anything else is Google's 401 ``UNAUTHENTICATED``; a wrong project or
location is a 404, an unknown method a 404.
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from google.auth import jwt
from multidict import CIMultiDict

from lmrouter.testing.fake_anthropic import FakeAnthropic
from lmrouter.testing.fake_gemini import FakeGemini

__all__ = ["FakeVertexAnthropic", "FakeVertexGemini", "ServiceAccount"]

_PATH = re.compile(
    r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/([^/:]+):(\w+)$"
)
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie"
    " or other valid authentication credential. See"
    " https://developers.google.com/identity/sign-in/web/devconsole-project."
)
AUDIENCE = "https://oauth2.googleapis.com/token"
"""What a service account's assertion is addressed to, whatever the token_uri."""
_ANTHROPIC_METHODS = {"rawPredict": False, "streamRawPredict": True}


class _Seen:
    """The request as the publisher's own API would have received it: another path and
    headers, the same connection (aiohttp cannot clone a request whose body was read)."""

    def __init__(self, request: web.BaseRequest, path: str, headers: Any) -> None:
        self._request = request
        self.path = path
        self.headers = headers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class ServiceAccount:
    """A service account the fake knows: its email and public key (PEM)."""

    def __init__(self, email: str, public_key_pem: str) -> None:
        self.email = email
        self.public_key_pem = public_key_pem


def _google_error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": code}}
    return web.json_response(body, status=status)


class _Vertex:
    """Auth, the token endpoint and path checks shared by the two fakes."""

    publisher: str
    base_url: str

    def _vertex_init(
        self, token: str | None, project: str, location: str, account: ServiceAccount | None
    ) -> None:
        self.token = token
        self.project = project
        self.location = location
        self.account = account
        self.token_lifetime = 3599
        self.issued: list[str] = []
        """Every access token handed out at ``/token``, oldest first."""
        self._counter = itertools.count(1)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    async def _vertex_answer(self, request: web.BaseRequest) -> web.Response | re.Match[str]:
        """An answer of the fake's own (token endpoint, errors), or the matched model path."""
        if request.method == "POST" and request.path == "/token":
            return self._issue(parse_qs((await request.read()).decode()))
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None or match.group(3) != self.publisher:
            return _google_error(
                404, "NOT_FOUND", f"The requested URL {request.path} was not found."
            )
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        allowed = token == self.token or token in self.issued
        if scheme.lower() != "bearer" or not token or not allowed:
            return _google_error(401, "UNAUTHENTICATED", _UNAUTHENTICATED)
        project, location = match.group(1), match.group(2)
        if (project, location) != (self.project, self.location):
            message = f"Project `{project}` is not allowed to use Publisher Model in `{location}`"
            return _google_error(404, "NOT_FOUND", message)
        return match

    def _issue(self, form: dict[str, list[str]]) -> web.Response:
        grant = (form.get("grant_type") or [""])[0]
        assertion = (form.get("assertion") or [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not assertion:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.account is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        try:
            claims = jwt.decode(assertion, certs=self.account.public_key_pem, audience=AUDIENCE)
        except ValueError:
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return web.json_response(body, status=400)
        if claims.get("iss") != self.account.email or "cloud-platform" not in claims.get(
            "scope", ""
        ):
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = f"ya29.fake-{next(self._counter)}"
        self.issued.append(token)
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )


class FakeVertexGemini(_Vertex, FakeGemini):
    publisher = "google"
    _thread_name = "fake-vertex-gemini"

    def __init__(
        self,
        token: str | None = None,
        *,
        project: str = "my-project",
        location: str = "us-central1",
        account: ServiceAccount | None = None,
    ) -> None:
        FakeGemini.__init__(self, None)
        self._vertex_init(token, project, location, account)

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        found = await self._vertex_answer(request)
        if isinstance(found, web.Response):
            return found
        model, method = found.group(4), found.group(5)
        if method not in ("generateContent", "streamGenerateContent", "countTokens"):
            return _google_error(404, "NOT_FOUND", f"Method not found: {method}")
        inner = _Seen(request, f"/v1beta/models/{model}:{method}", request.headers)
        return await super()._answer(inner, parsed, bad_json, at)  # type: ignore[arg-type]


class FakeVertexAnthropic(_Vertex, FakeAnthropic):
    publisher = "anthropic"
    _thread_name = "fake-vertex-anthropic"

    def __init__(
        self,
        token: str | None = None,
        *,
        project: str = "my-project",
        location: str = "us-east5",
        account: ServiceAccount | None = None,
    ) -> None:
        FakeAnthropic.__init__(self, None)
        self._vertex_init(token, project, location, account)

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        found = await self._vertex_answer(request)
        if isinstance(found, web.Response):
            return found
        model, method = found.group(4), found.group(5)
        if method not in _ANTHROPIC_METHODS:
            return _google_error(404, "NOT_FOUND", f"Method not found: {method}")
        if isinstance(parsed, dict):
            if parsed.get("anthropic_version") != "vertex-2023-10-16":
                body = {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "anthropic_version: vertex-2023-10-16 is required",
                    },
                }
                return web.json_response(body, status=400)
            if "model" in parsed:
                body = {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "model: Extra inputs are not permitted",
                    },
                }
                return web.json_response(body, status=400)
            parsed = {k: v for k, v in parsed.items() if k != "anthropic_version"}
            parsed["model"] = model
        headers = CIMultiDict(
            {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        )
        inner = _Seen(request, "/v1/messages", headers)
        return await super()._answer(inner, parsed, bad_json, at)  # type: ignore[arg-type]
