"""The real router app in the test's own event loop: no server process, no port. For pipeline
and hook tests that want the whole request path (dialects, plugins, store) but not granian.

::

    async with in_process(config(...), tmp_path) as router:
        response = await router.client.post("/v1/chat/completions", json=..., headers=...)
        router.gateway.pm  # the plugin manager, the store, the providers: all inspectable

The ``lmrouter_app`` pytest fixture is :func:`in_process` bound to the test's ``tmp_path``:
``lmrouter_app(text, plugins={"mine": MyPlugin()})``.
What only a real server shows (the listener, workers, signals, a client that disconnects)
belongs in a test with :class:`lmrouter.testing.server.RouterServer`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from lmrouter.app import RouterApp
    from lmrouter.gateway import Gateway

__all__ = ["InProcess", "in_process"]


@dataclass
class InProcess:
    app: RouterApp
    gateway: Gateway
    client: httpx.AsyncClient  # base URL http://lmrouter; answers are read whole


@contextlib.asynccontextmanager
async def in_process(
    config_text: str, directory: Path, plugins: Mapping[str, object] | None = None
) -> AsyncIterator[InProcess]:
    """The app for ``config_text`` (written to ``directory/lmrouter.toml``, so relative paths
    such as ``sqlite:///router.db`` land there), started and stopped as a worker does.
    ``plugins``: more plugin objects by name, registered after the installed ones (a test's
    hook implementations)."""
    from lmrouter.app import create_app
    from lmrouter.gateway import Gateway, load

    path = directory / "lmrouter.toml"
    path.write_text(config_text, encoding="utf-8")
    cfg, pm = load(path)
    for name, plugin in (plugins or {}).items():
        pm.register(plugin, name=name)
    gateway = Gateway(cfg, pm)
    await gateway.start()
    try:
        app = create_app(gateway)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lmrouter") as client:
            yield InProcess(app, gateway, client)
    finally:
        await gateway.stop()
