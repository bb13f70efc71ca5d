"""A fake OpenAI, Anthropic and Gemini run together, for tests that send one request through
every provider type: the three fakes, the ``[providers.*]`` config that names them, and the
body of what each one got last."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lmrouter.testing.fake_anthropic import FakeAnthropic
from lmrouter.testing.fake_gemini import FakeGemini
from lmrouter.testing.fake_openai import FakeOpenAI

# The providers' names in the config :meth:`Upstreams.running` yields, and their types.
PROVIDERS = {"oai": "openai", "ant": "anthropic", "gem": "google"}


class Upstreams:
    def __init__(self) -> None:
        self.oai = FakeOpenAI()
        self.ant = FakeAnthropic()
        self.gem = FakeGemini()

    def reset(self) -> None:
        for fake in (self.oai, self.ant, self.gem):
            fake.reset()

    def body(self, provider: str) -> dict[str, Any]:
        """The JSON body of the last request provider ``oai``, ``ant`` or ``gem`` got."""
        fake = getattr(self, provider)
        assert fake.requests, f"nothing reached {provider}"
        return fake.requests[-1].json  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """The three fakes serving, and the config text of their ``[providers.*]`` tables."""
        with (
            self.oai.run_in_thread() as oai,
            self.ant.run_in_thread() as ant,
            self.gem.run_in_thread() as gem,
        ):
            urls = {"oai": oai, "ant": ant, "gem": gem}
            yield "".join(
                f'[providers.{name}]\ntype = "{kind}"\nbase_url = "{urls[name]}"\n'
                for name, kind in PROVIDERS.items()
            )
