"""The conformance kit catches real mistakes: adapters broken on purpose each fail the claim
they break, with a message that names it and shows the exchange."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lmrouter.testing import conformance
from lmrouter.testing.fake_openai import FakeOpenAI

sys.path.insert(0, str(Path(__file__).parent / "conformance_mutants"))

import ck_mutants


def spec(adapter: type) -> conformance.Spec:
    return conformance.Spec(
        adapter=adapter,
        fake=lambda key: FakeOpenAI(api_key=key),
        behavior=conformance.openai_behavior,
        dialects={"openai.chat", "anthropic.messages"},
    )


def claim(adapter: type, claim_id: str) -> conformance.Claim:
    [found] = [c for c in conformance.claims(spec(adapter)) if c.id == claim_id]
    return found


@pytest.mark.parametrize(
    ("mutant", "claim_id", "says"),
    [
        (ck_mutants.DropsStreamUsage, "anthropic.messages:usage:stream", "request_end got"),
        (ck_mutants.BlamesCallerFor429, "errors:failover:429", "a 429 from the first route"),
        (ck_mutants.LeaksKey, "secrets:key-never-shown", "the provider key appears"),
        (ck_mutants.IgnoresIdleTimeout, "timeouts:idle", "longer than idle_timeout"),
    ],
)
def test_the_kit_fails_a_broken_adapter_naming_the_claim(
    mutant: type, claim_id: str, says: str
) -> None:
    broken = claim(mutant, claim_id)
    with (
        conformance.Harness(spec(mutant)) as harness,
        pytest.raises(conformance.ClaimFailed) as failure,
    ):
        broken.check(harness)
    message = str(failure.value)
    assert message.startswith(f"conformance claim {claim_id!r} failed:"), message
    assert says in message
    assert "--- what broke it ---\nrequest ck-" in message and "\nresponse: HTTP " in message
