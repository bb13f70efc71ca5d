"""The conformance kit's own checks that need no router: a spec that claims what the kit does
not know is refused, and the black hole it points connect timeouts at never answers."""

from __future__ import annotations

import pytest

from lmrouter.testing import conformance
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter_openai import OpenAIProvider


def test_spec_refuses_unknown_claims() -> None:
    with pytest.raises(ValueError, match=r"gemini\.stream"):
        conformance.Spec(
            adapter=OpenAIProvider,
            fake=FakeOpenAI,
            behavior=conformance.openai_behavior,
            dialects={"gemini.stream"},
        )


def test_blackhole_never_completes_a_handshake() -> None:
    import socket

    with conformance.blackhole() as port, socket.socket() as sock:
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.connect(("127.0.0.1", port))
