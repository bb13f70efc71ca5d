"""An out-of-tree plugin, installed by the tests the way a user installs any plugin.

- provider type ``probe``: an OpenAI-compatible upstream reached with an extra ``x-probe`` header
  and a key sent as ``x-probe-key`` — a different wire detail the core knows nothing about;
- a ``[probe]`` config section, validated by the core like any plugin's;
- every ``lmrouter_request_end`` call appended as a JSON line to the section's ``record`` file;
- with ``late_start`` seconds and a ``late_claim`` path, the one worker that creates that file
  first starts serving that much later than the others (a worker slow to start, on demand).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import msgspec

from lmrouter import Provider, ProviderConfig, UpstreamRequest, hookimpl


class ProbeProviderConfig(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    tag: str = "probe"


class ProbeProvider(Provider):
    type = "probe"
    Config = ProbeProviderConfig
    native_dialects = frozenset({"openai.chat"})

    def prepare(self, ctx: Any, route: Any, key: str) -> UpstreamRequest:
        body = json.dumps({**ctx.doc, "model": route.model}).encode()
        headers = {
            "content-type": "application/json",
            "x-probe": self.config.tag,
            "x-probe-key": key,
        }
        return UpstreamRequest(self.base_url + "/chat/completions", headers, body)


class ProbeSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    record: str = ""
    late_start: float = 0.0
    late_claim: str = ""


class ProbePlugin:
    def __init__(self) -> None:
        self.record = ""

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return "probe", ProbeSection

    @hookimpl
    def lmrouter_provider_types(self) -> dict[str, type[Provider]]:
        return {"probe": ProbeProvider}

    @hookimpl
    async def lmrouter_startup(self, gateway: Any) -> None:
        section = gateway.config.section("probe")
        self.record = section.record
        if section.late_start and _claim(section.late_claim):
            # granian starts serving in a worker once its startup is over: this one is late
            await asyncio.sleep(section.late_start)

    @hookimpl
    def lmrouter_request_end(self, ctx: Any, outcome: Any) -> None:
        if not self.record:
            return
        usage = outcome.usage
        line = {
            "request_id": ctx.request_id,
            "status": outcome.status,
            "http_status": outcome.http_status,
            "model": ctx.model.id,
            "route": outcome.route.provider if outcome.route else None,
            "attempts": [[a.provider, a.status] for a in ctx.attempts],
            "usage": msgspec.to_builtins(usage) if usage else None,
            "cost_pico": outcome.cost_pico,
        }
        with open(self.record, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def _claim(path: str) -> bool:
    """True in the one process that creates ``path`` first."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
