"""A fake Azure OpenAI resource for tests: OpenAI's wire format (it is built on
:class:`~lmrouter.testing.fake_openai.FakeOpenAI`) behind Azure's URLs, auth and additions.

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=…`` and
  ``…/embeddings``: the deployment names the model (scripts are per deployment) and the body's
  ``model`` is ignored, as on Azure; a missing ``api-version`` is Azure's 404, an unknown one
  its 400. ``POST /openai/v1/chat/completions`` and ``/openai/v1/embeddings``: the body's
  ``model`` is the deployment.
- Auth: the ``api-key`` header, or ``Authorization: Bearer`` with a token this fake issued at
  ``POST /{tenant}/oauth2/v2.0/token`` (client credentials; the Entra ID token endpoint, for
  ``authority = base_url``). Anything else gets Azure's 401.
- Azure's content-filter annotations: ``prompt_filter_results`` on answers (in a stream, a
  first chunk with ``choices: []``), ``content_filter_results`` on each choice. A scripted
  ``Behavior(status=400, error_code="content_filter")`` answers with Azure's content-filter
  error (``innererror.code: ResponsibleAIPolicyViolation`` and the filter's verdicts).
- Gateway errors (401, 403, 404, 408, 429, 5xx) in Azure's ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from lmrouter.testing.fake_openai import Behavior, FakeOpenAI, _ApiError, _error_response
from lmrouter.testing.fakeserver import Event

__all__ = ["API_VERSIONS", "Behavior", "FakeAzure"]

API_VERSIONS = frozenset({"2024-06-01", "2024-10-21", "2025-01-01-preview", "2025-04-01-preview"})
_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_V1 = re.compile(r"^/openai/v1/(chat/completions|embeddings)$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": _FILTERS}]
_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a"
    " valid key for an active subscription and use a correct regional API endpoint for your"
    " resource."
)
_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management"
    " policy. Please modify your prompt and retry. To learn more about our content filtering"
    " policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


class FakeAzure(FakeOpenAI):
    """Accepts ``api_key`` in ``api-key``, or bearer tokens it issued to ``client_id`` with
    ``client_secret``; ``token_lifetime`` is each token's ``expires_in``."""

    _base_path = ""
    _thread_name = "fake-azure"
    _record_query = True

    def __init__(
        self,
        api_key: str | None = None,
        *,
        client_id: str = "",
        client_secret: str = "",
        token_lifetime: int = 3599,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(api_key, host=host, port=port)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.issued: list[str] = []
        """Every bearer token handed out, oldest first."""
        self._tokens = itertools.count(1)

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        path = request.path
        try:
            token = _TOKEN.match(path)
            if token and request.method == "POST":
                return self._issue(parse_qs((await request.read()).decode()))
            deployment = _DEPLOYMENT.match(path)
            v1 = _V1.match(path)
            if request.method != "POST" or not (deployment or v1):
                raise _azure(404, "404", "Resource not found")
            self._authorize(request)
            if deployment:
                version = request.query.get("api-version")
                if not version:
                    raise _azure(404, "404", "Resource not found")
                if version not in API_VERSIONS:
                    raise _azure(400, "BadRequest", "API version not supported")
            if bad_json or not isinstance(parsed, dict):
                raise _ApiError(400, "We could not parse the JSON body of your request.")
            operation = deployment.group(2) if deployment else v1.group(1)  # type: ignore[union-attr]
            body = dict(parsed)
            if deployment:
                body["model"] = deployment.group(1)  # Azure ignores the body's model
            if operation == "embeddings":
                return await self._embeddings(request, body, at)
            response = await self._chat(request, body, at)
        except _ApiError as err:
            return _azure_error(err, at, parsed)
        if isinstance(response, web.Response) and response.status == 200 and response.body:
            doc = orjson.loads(response.body)  # type: ignore[arg-type]
            doc["prompt_filter_results"] = _PROMPT_FILTER
            for choice in doc.get("choices") or ():
                choice["content_filter_results"] = _FILTERS
            response.body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        return response

    def _authorize(self, request: web.BaseRequest) -> None:
        key = request.headers.get("api-key")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if self.api_key is not None and key == self.api_key:
            return
        if scheme.lower() == "bearer" and token in self.issued:
            return
        if self.api_key is None and not self.client_id:
            return
        raise _azure(401, "401", _DENIED)

    def _issue(self, form: dict[str, list[str]]) -> web.Response:
        def one(name: str) -> str:
            return (form.get(name) or [""])[0]

        if one("grant_type") != "client_credentials" or not one("scope"):
            body = {"error": "invalid_request", "error_description": "AADSTS900144"}
            return web.json_response(body, status=400)
        if one("client_id") != self.client_id or one("client_secret") != self.client_secret:
            body = {"error": "invalid_client", "error_description": "AADSTS7000215"}
            return web.json_response(body, status=401)
        token = f"eyJ0eXAiOiJKV1Qi.fake-entra-{next(self._tokens)}"
        self.issued.append(token)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            }
        )

    async def _write_stream(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        events: Sequence[Event],
        **kwargs: Any,
    ) -> web.StreamResponse:
        if request.path.endswith("/chat/completions"):
            # Azure's first chunk: the prompt's filter verdicts, no choices yet.
            first = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
            first["prompt_filter_results"] = _PROMPT_FILTER
            events = [(b"data: " + orjson.dumps(first) + b"\n\n", False), *events]
        return await super()._write_stream(request, response, events, **kwargs)


def _azure(status: int, code: str, message: str) -> _ApiError:
    return _ApiError(status, message, code=code)


def _azure_error(err: _ApiError, at: float, parsed: Any) -> web.Response:
    """Gateway errors in Azure's shape; a content-filter refusal with its verdicts; the rest
    as the OpenAI service behind Azure words them."""
    if err.code == "content_filter":
        filters = {**_FILTERS, "violence": {"filtered": True, "severity": "high"}}
        error = {
            "message": _FILTERED,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": filters,
            },
        }
        return web.json_response({"error": error}, status=400)
    if err.status in (401, 403, 404, 408, 429) or err.status >= 500:
        headers = err.headers or {}
        body = {"error": {"code": err.code or str(err.status), "message": err.message}}
        return web.json_response(body, status=err.status, headers=headers)
    return _error_response(err, at)
