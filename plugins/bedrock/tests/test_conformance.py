"""Bedrock against the conformance kit: Converse signed with SigV4 (the kit's key is the secret
access key: never sent, never shown), and with a Bedrock API key as a bearer token."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter_bedrock import BedrockProvider
from lmrouter_bedrock.fake import FakeBedrock, bedrock_behavior

ACCESS_KEY_ID = "AKIAIOSFODNN7CONFORM"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYconformance"

TestSigV4 = conformance.suite(
    conformance.Spec(
        adapter=BedrockProvider,
        fake=lambda secret: FakeBedrock({ACCESS_KEY_ID: secret}),
        behavior=bedrock_behavior,
        dialects=conformance.CHAT_DIALECTS,
        features={"tools", "usage", "cached_tokens"},
        key=SECRET,
        # No api_key: every request is signed with the access key and its secret.
        config={
            "api_key": "",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET,
            "region": "us-east-1",
        },
    ),
    name="TestSigV4",
)

TestApiKey = conformance.suite(
    conformance.Spec(
        adapter=BedrockProvider,
        fake=lambda api_key: FakeBedrock(api_keys={api_key}),
        behavior=bedrock_behavior,
        dialects=conformance.CHAT_DIALECTS,
        features={"tools", "usage", "cached_tokens"},
        config={"region": "us-east-1"},  # the kit's key is the api_key: a bearer token
    ),
    name="TestApiKey",
)
