"""pytest fixtures for LMRouter and its plugins; loaded automatically once lmrouter is installed.

- ``fake_openai``, ``fake_anthropic``, ``fake_gemini``: a faithful fake of that provider's API
  running in a background thread (``.base_url``, ``.script(model, Behavior)``, ``.requests``).
- ``lmrouter_server``: ``lmrouter_server(config_text, **kwargs)`` starts the real router
  (:class:`RouterServer`) and stops it when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lmrouter.testing.server import RouterServer


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    from lmrouter.testing.fake_openai import FakeOpenAI

    fake = FakeOpenAI()
    with fake.run_in_thread():
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[Any]:
    from lmrouter.testing.fake_anthropic import FakeAnthropic

    fake = FakeAnthropic()
    with fake.run_in_thread():
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[Any]:
    from lmrouter.testing.fake_gemini import FakeGemini

    fake = FakeGemini()
    with fake.run_in_thread():
        yield fake


@pytest.fixture
def lmrouter_server() -> Iterator[Callable[..., RouterServer]]:
    started: list[RouterServer] = []

    def start(config_text: str, **kwargs: Any) -> RouterServer:
        server = RouterServer(config_text, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.__exit__(None, None, None)
