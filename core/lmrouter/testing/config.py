"""A router config for tests, built from Python values instead of a hand-written TOML block.

::

    from lmrouter.testing.config import config, provider, route

    text = config(
        providers={"up": provider("openai", fake.base_url)},
        models={"gpt": route("up", "gpt-x", price={"input": 1, "output": 2})},
        disabled=["credits", "ratelimit"],
        routing={"drain_seconds": 0},
    )
    server = RouterServer(text)          # or config_file(tmp_path, ...) for a file

``models`` maps a model id to its route, a list of routes (tried in order), or a
:func:`model` with settings of its own (``max_output_tokens``). Any other keyword is a config
section (``server={...}``, ``storage={...}``, a plugin's ``ratelimit={...}``); ``extra`` is TOML
text appended as it is, for what the builder has no word for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "ADMIN_KEY",
    "STATEFUL",
    "STATEFUL_EXCEPT_ACCOUNTS",
    "config",
    "config_file",
    "model",
    "provider",
    "route",
    "toml",
]

ADMIN_KEY = "sk-test-admin"
# The plugins a test of the bare proxy turns off (everything that keeps state or answers pages).
STATEFUL = ("accounts", "credits", "ratelimit", "dashboard", "stripe", "metrics")
# The same but accounts: user keys and BYOK without money, limits or pages.
STATEFUL_EXCEPT_ACCOUNTS = tuple(name for name in STATEFUL if name != "accounts")


def provider(
    type: str, base_url: str, api_key: str | None = "sk-up", **settings: Any
) -> dict[str, Any]:
    """A ``[providers.<name>]`` table: a provider of ``type`` at ``base_url`` (``api_key=None``:
    none, as for a keyless local server)."""
    table = {"type": type, "base_url": base_url, "api_key": api_key, **settings}
    return {key: value for key, value in table.items() if value is not None}


def route(provider: str, model: str, **settings: Any) -> dict[str, Any]:
    """One ``[[models.routes]]`` entry (``price={...}`` and the like as keywords)."""
    return {"provider": provider, "model": model, **settings}


def model(*routes: Mapping[str, Any], **settings: Any) -> dict[str, Any]:
    """A model with settings of its own besides its routes (``max_output_tokens=…``)."""
    return {**settings, "routes": list(routes)}


def config(
    *,
    admin: str | Sequence[str] | None = ADMIN_KEY,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    models: Mapping[str, Any] | None = None,
    disabled: Sequence[str] | None = None,
    extra: str = "",
    **sections: Any,
) -> str:
    """The config's TOML text. ``admin``: the operator key(s) in ``[auth] keys`` (``None``: no
    ``[auth]`` table); ``disabled``: ``[plugins] disabled``."""
    doc: dict[str, Any] = {}
    if disabled is not None:
        doc["plugins"] = {"disabled": list(disabled)}
    if admin is not None:
        keys = [admin] if isinstance(admin, str) else list(admin)
        doc["auth"] = {"keys": keys}
    for name, table in sections.items():
        merged = {**doc.get(name, {}), **table}  # auth={"...": ...} adds to the keys
        doc[name] = merged
    if providers:
        doc["providers"] = {name: dict(table) for name, table in providers.items()}
    if models:
        doc["models"] = [_model(model_id, spec) for model_id, spec in models.items()]
    text = toml(doc)
    return f"{text}\n{extra.strip()}\n" if extra.strip() else text


def config_file(directory: Path, name: str = "lmrouter.toml", **kwargs: Any) -> Path:
    """:func:`config` written to ``directory/name``; returns the path."""
    path = directory / name
    path.write_text(config(**kwargs), encoding="utf-8")
    return path


def _model(model_id: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, Mapping) and "routes" in spec:
        return {"id": model_id, **spec}
    routes = [spec] if isinstance(spec, Mapping) else list(spec)
    return {"id": model_id, "routes": routes}


# -- a small TOML writer: tables, arrays of tables, and inline values ---------------------------


def toml(doc: Mapping[str, Any]) -> str:
    """``doc`` as TOML: nested mappings become tables, lists of mappings arrays of tables, and
    everything else (including a mapping inside a list or a route's ``price``) inline values."""
    lines: list[str] = []
    _table(lines, [], doc)
    return "\n".join(lines).strip() + "\n"


def _table(lines: list[str], path: list[str], doc: Mapping[str, Any]) -> None:
    nested = []
    for key, value in doc.items():
        if isinstance(value, Mapping) and not _inline(path, key):
            nested.append((key, value, False))
        elif _tables(value):
            nested.append((key, value, True))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value, array in nested:
        sub = [*path, key]
        if array:
            for item in value:
                lines += ["", f"[[{'.'.join(map(_key, sub))}]]"]
                _table(lines, sub, item)
        else:
            lines += ["", f"[{'.'.join(map(_key, sub))}]"]
            _table(lines, sub, value)


def _inline(path: list[str], key: str) -> bool:
    # A route's price is written inline, as people write it.
    return path[-1:] == ["routes"] and key == "price"


def _tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _value(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return orjson.dumps(str(value)).decode()  # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")
