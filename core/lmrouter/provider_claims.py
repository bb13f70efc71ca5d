"""What installed plugins claim, for ``lmrouter plugins``: the hook API range each supports
(its ``api_version``) and, for each provider type it adds, the caller dialects that type
serves — as they are (its ``native_dialects``) or through the IR (a dialect whose kind is in
its ``converts``). Read from the adapter classes themselves, the declarations the router acts
on, so the listing cannot drift from what requests get."""

from __future__ import annotations

from typing import Any

from lmrouter.app import DIALECT_ROUTES
from lmrouter.dialects import gemini

DIALECTS = (*(dialect for _, dialect in DIALECT_ROUTES), *gemini.METHODS.values())


def dialects_of(adapter: type) -> list[str]:
    """Every dialect a provider type serves, by name, sorted."""
    native = set(getattr(adapter, "native_dialects", ()) or ())
    kinds = set(getattr(adapter, "converts", ()) or ())
    return sorted(native | {d.name for d in DIALECTS if d.kind in kinds})


def provider_types(pm: Any) -> dict[str, dict[str, type]]:
    """Plugin name → the provider types its ``lmrouter_provider_types`` returns."""
    found: dict[str, dict[str, type]] = {}
    for impl in pm.hook.lmrouter_provider_types.get_hookimpls():
        try:
            types = impl.function() or {}
        except Exception:  # a broken plugin must not break the listing; `check` reports it
            continue
        found.setdefault(impl.plugin_name, {}).update(types)
    return found


def api_range(pm: Any, name: str) -> str:
    """The plugin's declared hook API range, or a note that it declares none."""
    supported = getattr(pm.get_plugin(name), "api_version", None)
    return supported if isinstance(supported, str) else "any (not declared)"
