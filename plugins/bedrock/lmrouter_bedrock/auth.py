"""AWS credentials and SigV4 signing, through botocore (no hand-written crypto here).

Credentials come from the config (``access_key_id``, ``secret_access_key``, ``session_token``)
or else from botocore's usual chain: the environment (``AWS_ACCESS_KEY_ID`` …), the shared
config and credentials files (``profile``, or ``AWS_PROFILE``), SSO, web identity (EKS),
the container and instance metadata services. The chain is resolved once, off the request
path (in a thread: some of its sources are network calls); temporary credentials are refreshed
by botocore when they near their expiry, also in a thread, one refresh at a time.

Each request is signed on its own headers with :class:`botocore.auth.SigV4Auth` (no botocore
client, no per-request session): a handful of HMACs and one SHA-256 of the body.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError

from lmrouter import UpstreamFailure

SERVICE = "bedrock"  # the signing name of bedrock-runtime


def default_region(profile: str = "") -> str:
    """The region of the AWS chain (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's)."""
    if os.environ.get("AWS_REGION"):  # what the newer AWS SDKs read; botocore does not
        return os.environ["AWS_REGION"]
    session = botocore.session.Session(profile=profile or None)
    return str(session.get_config_variable("region") or "us-east-1")


class Signer:
    """SigV4 with fixed credentials, or those of the AWS chain (``static=None``)."""

    def __init__(self, region: str, static: Credentials | None, profile: str = "") -> None:
        self.region = region
        self.profile = profile
        self.credentials: Any = static
        self.lock = asyncio.Lock()
        self.secrets: tuple[str, ...] = ()
        if static is not None:
            self._remember(static.get_frozen_credentials())

    def _remember(self, frozen: ReadOnlyCredentials) -> None:
        self.secrets = tuple(s for s in (frozen.secret_key, frozen.token) if s)

    async def frozen(self) -> ReadOnlyCredentials:
        credentials = self.credentials
        if credentials is not None and not _refresh_needed(credentials):
            return credentials.get_frozen_credentials()  # type: ignore[no-any-return]
        async with self.lock:
            try:
                frozen = await asyncio.to_thread(self._resolve)
            except (BotoCoreError, OSError, ValueError) as exc:
                # The exception's type only: its text may quote a credential source's answer.
                raise _failure(f"could not get AWS credentials ({type(exc).__name__})") from None
            if frozen is None:
                raise _failure(
                    "no AWS credentials: set access_key_id and secret_access_key, or api_key "
                    "(a Bedrock API key), or provide them the usual AWS ways (environment, "
                    "profile, instance role)"
                )
            self._remember(frozen)
            return frozen

    def _resolve(self) -> ReadOnlyCredentials | None:
        if self.credentials is None:
            session = botocore.session.Session(profile=self.profile or None)
            self.credentials = session.get_credentials()
            if self.credentials is None:
                return None
        return self.credentials.get_frozen_credentials()  # type: ignore[no-any-return]

    async def sign(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """``headers`` plus ``X-Amz-Date``, ``Authorization`` (and the session token)."""
        frozen = await self.frozen()
        request = AWSRequest(method="POST", url=url, headers=headers, data=body)
        SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())


def _refresh_needed(credentials: Any) -> bool:
    check = getattr(credentials, "refresh_needed", None)  # RefreshableCredentials only
    return bool(check()) if check is not None else False


def _failure(message: str) -> UpstreamFailure:
    return UpstreamFailure(message, status=502, retryable=True, upstream_status=None)
