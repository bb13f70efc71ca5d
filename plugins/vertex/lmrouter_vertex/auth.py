"""Google credentials for Vertex AI, through google-auth.

A service-account key file (``credentials_file``), or Application Default Credentials
(workload identity on GKE/Cloud Run, the metadata server, ``gcloud auth
application-default login``) when neither it nor ``api_key`` is set; ``api_key`` alone is taken
as an access token obtained elsewhere. Tokens are refreshed when google-auth no longer finds
them valid, which is 3 min 45 s before they expire, so no request leaves with a token about to
lapse; one refresh at a time, in a thread (google-auth's transport is synchronous).
"""

from __future__ import annotations

import asyncio
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import service_account

from lmrouter import UpstreamFailure

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class GoogleToken:
    def __init__(self, credentials_file: str, static: str) -> None:
        self.credentials_file = credentials_file
        self.static = static
        self.credentials: Any = None
        self.lock = asyncio.Lock()
        self.transport: Any = None

    @property
    def dynamic(self) -> bool:
        return bool(self.credentials_file or not self.static)

    async def get(self) -> str:
        if not self.dynamic:
            return self.static
        credentials = self.credentials
        if credentials is not None and credentials.valid:
            return str(credentials.token)
        async with self.lock:
            try:
                return await asyncio.to_thread(self._refresh)
            except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
                # The exception's type only: its text may quote a token endpoint's answer.
                raise UpstreamFailure(
                    f"could not get a Google access token ({type(exc).__name__})",
                    status=502,
                    retryable=True,
                    upstream_status=None,
                ) from None

    def _refresh(self) -> str:
        if self.credentials is None:
            if self.credentials_file:
                self.credentials = service_account.Credentials.from_service_account_file(
                    self.credentials_file, scopes=SCOPES
                )
            else:
                self.credentials, _ = google.auth.default(scopes=SCOPES)
            self.transport = google.auth.transport.requests.Request()
        if not self.credentials.valid:
            self.credentials.refresh(self.transport)
        return str(self.credentials.token)
