"""Azure OpenAI against the conformance kit, on deployment URLs and on the v1 path."""

from __future__ import annotations

from lmrouter.testing import conformance
from lmrouter_azure import AzureProvider
from lmrouter_azure.fake import FakeAzure

TestDeployments = conformance.suite(
    conformance.Spec(
        adapter=AzureProvider,
        fake=lambda key: FakeAzure(api_key=key),
        behavior=conformance.openai_behavior,
        config={"api_version": "2024-10-21"},
    ),
    name="TestDeployments",
)

TestV1 = conformance.suite(
    conformance.Spec(
        adapter=AzureProvider,
        fake=lambda key: FakeAzure(api_key=key),
        behavior=conformance.openai_behavior,
        dialects={"openai.chat", "anthropic.messages", "openai.embeddings"},
        config={"v1": True},
    ),
    name="TestV1",
)
