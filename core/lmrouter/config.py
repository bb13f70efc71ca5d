"""TOML config: load, interpolate ``${VAR}``, validate strictly, and point at the line of a mistake.

The core owns ``server``, ``storage``, ``plugins``, ``auth``, ``routing``, ``providers`` and
``models``. Plugins claim further tables through ``lmrouter_config_section``; a table nobody claims
is an error, so a typo never silently disables a setting.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec

from lmrouter.errors import validation_detail
from lmrouter.money import Price, Rates


class ConfigError(Exception):
    """A config mistake, with the file, the key path and (when found) the line."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None) -> None:
        self.message, self.path, self.key = message, path, key
        self.line = _locate(path, key) if path and key else None
        where = str(path) if path else "config"
        if self.line:
            where += f":{self.line}"
        super().__init__(f"{where}: {'`' + key + '`: ' if key else ''}{message}")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_mb: float = 32.0
    body_timeout: float = 30.0  # seconds a request body may take to arrive (then 408); 0 = none
    auth_failures_per_minute: int = 60  # bad API keys per client address, then 429; 0 = no limit
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"  # auto: console on a TTY, else JSON
    log_requests: bool = True  # one line per request: ids, model, status, tokens, timings
    shutdown_timeout: float = 30.0  # seconds running streams get to finish on stop


class StorageConfig(_Strict):
    url: str = "sqlite:///lmrouter.db"


class PluginsConfig(_Strict):
    disabled: list[str] = []


class AuthConfig(_Strict):
    keys: list[str] = []


class RoutingConfig(_Strict):
    deadline: float = 600.0  # seconds a request may take to reach its first byte, over all routes
    backoff: float = 0.05  # seconds before retrying a provider already tried; doubles each time
    backoff_max: float = 2.0
    # A hosted tool a converted request's provider cannot run (OpenAI's web_search on a Claude
    # model): "drop" it (named in x-lmrouter-dropped-tools) or "reject" the request (400).
    unsupported_tools: Literal["drop", "reject"] = "drop"
    # After a streaming client leaves, the upstream is read on (not relayed) for at most this
    # long and this much, to learn the usage the provider reports at the end; without it the
    # request is charged its hold. 0 seconds: hang up at once (and charge the hold).
    drain_seconds: float = 30.0
    drain_mb: float = 16.0

    def __post_init__(self) -> None:
        if not (self.drain_seconds >= 0 and self.drain_mb >= 0):  # nan fails too
            raise ValueError("`drain_seconds` and `drain_mb` must be 0 or more")


class Route(_Strict, dict=True):
    provider: str
    model: str
    price: Price = msgspec.field(default_factory=Price)

    def __post_init__(self) -> None:
        try:
            self.rates: Rates = Rates.from_price(self.price)  # integer pico-USD, compiled once
        except ArithmeticError:  # e.g. 1e-999999: msgspec reports ValueErrors with their path
            raise ValueError("price out of range") from None


class Model(_Strict):
    id: str
    routes: list[Route]
    max_output_tokens: int | None = None  # also a cap on converted requests (capabilities.py)
    reasoning: bool | None = None  # send reasoning settings; unset: as the provider knows
    owned_by: str | None = None
    context_window: int | None = None


class CoreConfig(_Strict):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    providers: dict[str, dict[str, Any]] = {}
    models: list[Model] = []


@dataclass
class Config:
    """A validated config: core tables, provider tables typed by their adapter, plugin sections."""

    path: Path | None
    core: CoreConfig
    providers: dict[str, Any]  # name -> the adapter's Config struct
    sections: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    # Whether the configured store may serve several processes (``Store.multiprocess``): set
    # when the config is loaded, for plugins that refuse ``workers > 1`` without one.
    store_multiprocess: bool = False

    def section(self, name: str) -> Any:
        return self.sections[name]

    @property
    def server(self) -> ServerConfig:
        return self.core.server

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


# -- loading ---------------------------------------------------------------------------------

DEFAULT_LOCATIONS = (Path("lmrouter.toml"), Path("config/lmrouter.toml"))


def find_config(explicit: str | None = None) -> Path:
    """``--config``, else ``$LMROUTER_CONFIG``, else ``./lmrouter.toml``, else
    ``config/lmrouter.toml``."""
    chosen = explicit or os.environ.get("LMROUTER_CONFIG")
    if chosen:
        return Path(chosen)
    for candidate in DEFAULT_LOCATIONS:
        if candidate.is_file():
            return candidate
    return DEFAULT_LOCATIONS[0]


def read_raw(path: Path) -> dict[str, Any]:
    """Parse and interpolate the file; no validation yet (plugins decide what their tables hold)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found. Name one with --config PATH or $LMROUTER_CONFIG (else "
            "./lmrouter.toml, then config/lmrouter.toml, is read); `lmrouter init` writes one",
            path=path,
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (line {line})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=path) from None
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from None
    return interpolate(raw, path=path)


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, *, path: Path | None = None, key: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(node, dict):
        return {
            k: interpolate(v, path=path, key=f"{key}.{k}" if key else k) for k, v in node.items()
        }
    if isinstance(node, list):
        return [interpolate(v, path=path, key=f"{key}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "$" in node:

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise ConfigError(
                        f"environment variable {name} is not set "
                        f"(write ${{{name}:-}} to allow it to be empty)",
                        path=path,
                        key=key,
                    )
                return default
            return value

        return _VAR.sub(substitute, node)
    return node


def validate(
    raw: dict[str, Any],
    *,
    path: Path | None,
    sections: dict[str, type],
    provider_types: dict[str, Any],
    disabled_sections: frozenset[str] = frozenset(),
) -> Config:
    """Check ``raw`` against the core schema, each provider's adapter schema and plugin sections."""
    core_raw = {k: v for k, v in raw.items() if k in CoreConfig.__struct_fields__}
    core = _convert(core_raw, CoreConfig, path=path)
    plugin_sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name in CoreConfig.__struct_fields__ or name in disabled_sections:
            continue
        schema = sections.get(name)
        if schema is None:
            names = sorted(set(CoreConfig.__struct_fields__) | set(sections))
            raise ConfigError(
                f"unknown section; known sections: {', '.join(names)}", path=path, key=name
            )
        plugin_sections[name] = _convert(value, schema, path=path, prefix=name)
    for name, schema in sections.items():  # a plugin's defaults apply when its table is absent
        if name not in plugin_sections:
            plugin_sections[name] = _convert({}, schema, path=path, prefix=name)

    providers: dict[str, Any] = {}
    for name, table in core.providers.items():
        key = f"providers.{name}"
        if not isinstance(table, dict):
            raise ConfigError("must be a table", path=path, key=key)
        kind = table.get("type")
        if not isinstance(kind, str):
            raise ConfigError('missing `type` (the adapter, e.g. "openai")', path=path, key=key)
        adapter = provider_types.get(kind)
        if adapter is None:
            known = ", ".join(sorted(provider_types)) or "none: no provider plugin is installed"
            raise ConfigError(
                f"unknown provider type {kind!r}; installed types: {known}",
                path=path,
                key=f"{key}.type",
            )
        providers[name] = _convert(table, adapter.Config, path=path, prefix=key)
        _check_url(providers[name].base_url, path=path, key=f"{key}.base_url")
        if getattr(providers[name], "byok", False):
            _check_byok(adapter, providers[name], path=path, key=key)

    models: dict[str, Model] = {}
    for index, model in enumerate(core.models):
        key = f"models[{index}]"
        if model.id in models:
            raise ConfigError(f"duplicate model id {model.id!r}", path=path, key=f"{key}.id")
        if not model.routes:
            raise ConfigError("a model needs at least one route", path=path, key=f"{key}.routes")
        for r_index, route in enumerate(model.routes):
            if route.provider not in providers:
                known = ", ".join(sorted(providers)) or "none configured"
                raise ConfigError(
                    f"unknown provider {route.provider!r}; configured providers: {known}",
                    path=path,
                    key=f"{key}.routes[{r_index}].provider",
                )
            _check_price(route.price, path=path, key=f"{key}.routes[{r_index}].price")
        models[model.id] = model

    server = core.server
    if not 0 < server.port < 65536:
        raise ConfigError("must be between 1 and 65535", path=path, key="server.port")
    if server.workers < 1:
        raise ConfigError("must be at least 1", path=path, key="server.workers")
    return Config(
        path=path, core=core, providers=providers, sections=plugin_sections, models=models
    )


# Header names that carry credentials: sent with a user's own key, they would charge the
# operator's account (or mix two accounts) for a request the user pays for.
_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "cookie", "session", "signature", "password")


def _check_byok(adapter: Any, provider: Any, *, path: Path | None, key: str) -> None:
    """``byok = true`` only where a user's key replaces every credential of the operator's."""
    if not getattr(adapter, "user_keys", False):
        raise ConfigError(
            f"provider type {provider.type!r} does not authenticate with the key it is given, "
            "so users cannot bring their own key for it",
            path=path,
            key=f"{key}.byok",
        )
    for name in provider.headers:
        if any(word in name.lower() for word in _CREDENTIAL_WORDS):
            raise ConfigError(
                f"header {name!r} looks like a credential of the operator's, and with byok = "
                "true it would be sent with users' own keys: authenticate with api_key instead, "
                "or turn byok off",
                path=path,
                key=f"{key}.headers",
            )


def _check_url(url: str, *, path: Path | None, key: str) -> None:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"must be an http:// or https:// URL, got {url!r}", path=path, key=key)


_MAX_PRICE_PLACES = 6  # per 1M tokens: keeps every per-token price a whole number of pico-USD


def _check_price(price: Price, *, path: Path | None, key: str) -> None:
    for name in Price.__struct_fields__:
        value = getattr(price, name)
        if value is None:
            continue
        if value < 0:
            raise ConfigError("must not be negative", path=path, key=f"{key}.{name}")
        if _decimal_places(value) > _MAX_PRICE_PLACES:
            raise ConfigError(
                f"at most {_MAX_PRICE_PLACES} decimal places (USD per 1M tokens)",
                path=path,
                key=f"{key}.{name}",
            )


def _decimal_places(value: Decimal) -> int:
    """Decimals that count: ``0.1000000`` has one, ``1.5e-6`` seven, ``2E+1`` none."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: Price refuses inf and nan
    places = -exponent
    for digit in reversed(digits):
        if places <= 0 or digit:
            break
        places -= 1  # a trailing zero after the point
    return max(places, 0) if any(digits) else 0


def _convert(value: Any, schema: type, *, path: Path | None, prefix: str = "") -> Any:
    try:
        return msgspec.convert(value, schema, strict=True)
    except msgspec.ValidationError as exc:
        text, suffix, kind = validation_detail(str(exc))
        if kind:
            text = (
                "unknown key (check the spelling)"
                if kind == "unknown"
                else "required key is missing"
            )
        key = ".".join(p for p in (prefix, suffix) if p).replace(".[", "[") or None
        raise ConfigError(text, path=path, key=key) from None


_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
# a header line holds nothing else: `["a", "b"],` inside a multi-line array is not a header
_HEADER = re.compile(rf"^\[\[?\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(rf"^({_DOTTED_KEY})\s*=")


def _key_names(dotted: str) -> list[str]:
    return [part[1:-1] if part[:1] in "\"'" else part for part in re.findall(_KEY_PART, dotted)]


def _locate(path: Path, key: str) -> int | None:
    """Best-effort line of ``key`` (``models[1].routes[0].price``) in the TOML file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    parts = re.findall(r"([^.\[\]]+)(?:\[(\d+)\])?", key)
    table: list[str] = []
    counts: dict[str, int] = {}
    wanted_counts: dict[str, int] = {}
    prefix: list[str] = []
    for name, index in parts:
        prefix.append(name)
        if index:
            wanted_counts[".".join(prefix)] = int(index)
    best, best_depth = None, 0
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header:
            table = _key_names(header.group(1))
            name = ".".join(table)
            if stripped.startswith("[["):
                counts[name] = counts.get(name, -1) + 1
                for deeper in [k for k in counts if k.startswith(name + ".")]:
                    counts[deeper] = -1  # a new parent element restarts its children's count
            if _matches(table, parts, counts, wanted_counts) and len(table) > best_depth:
                best, best_depth = number, len(table)
            continue
        assignment = _ASSIGNMENT.match(stripped)
        if assignment:
            full = [*table, *_key_names(assignment.group(1))]  # `price.input = …` too
            if _matches(full, parts, counts, wanted_counts):
                if len(full) == len(parts):
                    return number
                if len(full) > best_depth:  # e.g. `price = { input = … }` for price.input
                    best, best_depth = number, len(full)
    return best


def _matches(
    names: list[str],
    parts: list[tuple[str, str]],
    counts: dict[str, int],
    wanted: dict[str, int],
) -> bool:
    if len(names) > len(parts):
        return False
    for i, name in enumerate(names):
        if name != parts[i][0]:
            return False
        dotted = ".".join(names[: i + 1])
        # an index counts ``[[array]]`` tables; in an inline array (`keys = ["a", "b"]`,
        # count -1: no such header in this element) the element is on the array's own line
        if dotted in wanted and counts.get(dotted, -1) >= 0 and counts[dotted] != wanted[dotted]:
            return False
    return True
