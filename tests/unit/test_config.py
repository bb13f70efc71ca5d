"""Config loading: ``${VAR}`` interpolation, strict validation, and errors that point at the file,
the key path and the line."""

from __future__ import annotations

import json
import os
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter.config import (
    ConfigError,
    CoreConfig,
    Model,
    Price,
    Route,
    ServerConfig,
    interpolate,
    read_raw,
    validate,
)
from lmrouter.providers import ProviderConfig


class FakeAdapter:
    Config = ProviderConfig


class CreditsSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    expire_after_days: int = 365
    byok_fee_percent: Decimal = Decimal(0)


class TiersSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    tiers: list[list[int | str]] = []
    name: str = ""


class NeedsSecret(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    secret: str


PROVIDER_TYPES = {"openai": FakeAdapter, "anthropic": FakeAdapter}

BASE = """\
[server]
host = "0.0.0.0"
port = 9000

[providers.openai]
type = "openai"
base_url = "https://api.openai.com/v1"
api_key = "sk-test"

[[models]]
id = "openai/gpt-4o-mini"
max_output_tokens = 16384
  [[models.routes]]
  provider = "openai"
  model = "gpt-4o-mini"
  price = { input = 0.15, output = 0.60, cache_read = 0.075 }

[[models]]
id = "openai/gpt-4o"
  [[models.routes]]
  provider = "openai"
  model = "gpt-4o"
  price = { input = 2.5, output = 10 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lmrouter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(
    path: Path,
    *,
    sections: dict[str, type] | None = None,
    disabled: frozenset[str] = frozenset(),
    provider_types: dict[str, Any] | None = None,
) -> Any:
    return validate(
        read_raw(path),
        path=path,
        sections=sections or {},
        provider_types=PROVIDER_TYPES if provider_types is None else provider_types,
        disabled_sections=disabled,
    )


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def config_error(path: Path, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path, **kwargs)
    return info.value


def assert_points_at(err: ConfigError, path: Path, key: str, line: int | None) -> None:
    assert err.key == key
    assert err.path == path
    assert err.line == line
    where = f"{path}:{line}" if line else str(path)
    assert str(err).startswith(f"{where}: `{key}`: "), str(err)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("LMRT_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- a valid config -------------------------------------------------------------------------


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, BASE))
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9000
    assert config.core.storage.url == "sqlite:///lmrouter.db"  # defaults fill the rest
    assert list(config.models) == ["openai/gpt-4o-mini", "openai/gpt-4o"]
    assert isinstance(config.providers["openai"], ProviderConfig)
    assert config.providers["openai"].api_key == "sk-test"
    route = config.models["openai/gpt-4o-mini"].routes[0]
    assert isinstance(route, Route)
    assert route.rates.input == 150_000  # pico-USD per token
    assert route.rates.cache_read == 75_000


def test_prices_are_exact_decimals(tmp_path: Path) -> None:
    config = load(write(tmp_path, BASE))
    price = config.models["openai/gpt-4o-mini"].routes[0].price
    for value, text in [(price.input, "0.15"), (price.output, "0.60"), (price.cache_read, "0.075")]:
        assert type(value) is Decimal
        assert value == Decimal(text)
        assert str(value) == text  # the digits as written: never a binary float's 0.1499999…
    assert price.input + Decimal("0.15") == Decimal("0.30")  # 0.15 + 0.15, exactly
    assert price.cache_write is None
    other = config.models["openai/gpt-4o"].routes[0].price
    assert (other.input, other.output) == (Decimal("2.5"), Decimal(10))
    assert type(other.output) is Decimal  # a TOML integer becomes a Decimal too


def test_float_settings_accept_toml_floats(tmp_path: Path) -> None:
    text = BASE.replace("port = 9000", "port = 9000\nmax_body_mb = 0.5\nshutdown_timeout = 3")
    config = load(write(tmp_path, text))
    assert config.server.max_body_mb == 0.5
    assert config.server.shutdown_timeout == 3.0


# -- interpolation ----------------------------------------------------------------------------


def test_variables_and_defaults(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    env.setenv("LMRT_KEY", "sk-from-env")
    env.setenv("LMRT_EMPTY", "")
    env.setenv("LMRT_HOST", "10.0.0.1")
    text = BASE.replace('"sk-test"', '"${LMRT_KEY}"').replace('"0.0.0.0"', '"${LMRT_HOST:-x}"')
    text += '\n[storage]\nurl = "${LMRT_UNSET:-sqlite:///a.db}${LMRT_EMPTY:-?x=1}${LMRT_EMPTY}"\n'
    config = load(write(tmp_path, text))
    assert config.providers["openai"].api_key == "sk-from-env"
    assert config.server.host == "10.0.0.1"  # a set variable wins over its default
    # unset → default; empty with a default → the default; empty without → empty
    assert config.core.storage.url == "sqlite:///a.db?x=1"


def test_dollar_escape(env: pytest.MonkeyPatch) -> None:
    env.setenv("LMRT_X", "value")
    assert interpolate({"a": "pa$$word"}) == {"a": "pa$word"}
    assert interpolate({"a": "$${LMRT_X}"}) == {"a": "${LMRT_X}"}
    assert interpolate({"a": "$$$${LMRT_X}"}) == {"a": "$${LMRT_X}"}
    assert interpolate({"a": "$$${LMRT_X}"}) == {"a": "$value"}
    assert interpolate({"a": "cost: $5, $HOME, ${1X}, ${}"}) == {"a": "cost: $5, $HOME, ${1X}, ${}"}


def test_substituted_values_are_not_interpolated_again(env: pytest.MonkeyPatch) -> None:
    env.setenv("LMRT_A", "${LMRT_B}$$")
    assert interpolate({"a": "${LMRT_A}", "b": "${LMRT_NOPE:-${LMRT_A}"}) == {
        "a": "${LMRT_B}$$",
        "b": "${LMRT_A",  # a default ends at the first "}"
    }


def test_default_may_contain_newlines_and_colons(env: pytest.MonkeyPatch) -> None:
    assert interpolate({"a": "${LMRT_NOPE:-line one\nline: two}"}) == {"a": "line one\nline: two"}
    assert interpolate({"a": "${LMRT_NOPE:-}"}) == {"a": ""}


def test_interpolation_inside_arrays_and_nested_tables(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("LMRT_ADMIN", "admin-key")
    env.setenv("LMRT_MODEL", "gpt-4o-2024")
    env.setenv("LMRT_HDR", "h1")
    text = BASE.replace('model = "gpt-4o"', 'model = "${LMRT_MODEL}"')
    text = text.replace(
        'api_key = "sk-test"', 'api_key = "sk-test"\nheaders = { X-Team = "${LMRT_HDR}-x" }'
    )
    text += '\n[auth]\nkeys = ["${LMRT_ADMIN}", "${LMRT_UNSET:-}", "lit$$"]\n'
    config = load(write(tmp_path, text))
    assert config.core.auth.keys == ["admin-key", "", "lit$"]
    assert config.models["openai/gpt-4o"].routes[0].model == "gpt-4o-2024"
    assert config.providers["openai"].headers == {"X-Team": "h1-x"}


def test_only_strings_are_interpolated() -> None:
    raw = {"a": 1, "b": Decimal("0.5"), "c": True, "d": [2, {"e": None}]}
    assert interpolate(raw) == raw


def test_missing_variable_names_the_key_and_the_variable(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    text = BASE.replace('"sk-test"', '"${LMRT_OPENAI_KEY}"')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_raw(path)
    err = info.value
    assert_points_at(err, path, "providers.openai.api_key", line_of(text, "LMRT_OPENAI_KEY"))
    assert "LMRT_OPENAI_KEY" in str(err)
    assert "${LMRT_OPENAI_KEY:-}" in str(err)  # and says how to allow it to be empty


def test_missing_variable_in_an_array(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    text = BASE + '\n[auth]\nkeys = [\n  "fine",\n  "${LMRT_GONE}",\n]\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_raw(path)
    # the array starts on the `keys` line: that is the line to look at
    assert_points_at(info.value, path, "auth.keys[1]", line_of(text, "keys = ["))
    assert "LMRT_GONE" in str(info.value)


def test_missing_variable_in_an_array_of_tables(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    text = BASE.replace('model = "gpt-4o"', 'model = "${LMRT_M}"')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_raw(path)
    assert_points_at(info.value, path, "models[1].routes[0].model", line_of(text, "LMRT_M"))


def test_interpolate_without_a_file() -> None:
    with pytest.raises(ConfigError) as info:
        interpolate({"a": {"b": ["x", "${LMRT_NOPE_AT_ALL}"]}})
    assert info.value.key == "a.b[1]"
    assert info.value.path is None and info.value.line is None
    assert str(info.value).startswith("config: `a.b[1]`: environment variable LMRT_NOPE_AT_ALL")


# a reference for ${…}: a left-to-right scanner written from the contract, not a regex


class Missing(Exception):
    pass


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def reference_substitute(text: str, environ: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        name = NAME.match(text, i + 2) if text.startswith("${", i) else None
        default: str | None = None
        end = -1
        if name:
            after = name.end()
            if text.startswith("}", after):
                end = after + 1
            elif text.startswith(":-", after) and (close := text.find("}", after + 2)) != -1:
                default, end = text[after + 2 : close], close + 1
        if end == -1:
            out.append(text[i])
            i += 1
            continue
        assert name is not None
        value = environ.get(name.group())
        if value is None or (value == "" and default is not None):
            if default is None:
                raise Missing(name.group())
            value = default
        out.append(value)
        i = end
    return "".join(out)


def reference_interpolate(node: Any, environ: dict[str, str], key: str = "") -> Any:
    if isinstance(node, dict):
        return {
            k: reference_interpolate(v, environ, f"{key}.{k}" if key else k)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [reference_interpolate(v, environ, f"{key}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        try:
            return reference_substitute(node, environ)
        except Missing as exc:
            raise Missing(key, exc.args[0]) from None
    return node


VAR_NAMES = ["LMRT_HYP_A", "LMRT_HYP_B", "LMRT_HYP_C1", "_LMRT_HYP"]
pieces = st.sampled_from(
    ["$", "$", "$$", "{", "}", ":", "-", ":-", "${", "x", " ", "\n", "é", "1", "LMRT_HYP_A"]
    + [f"${{{n}}}" for n in VAR_NAMES]
    + [f"${{{n}:-" for n in VAR_NAMES]
    + [f"${{{n}:-dflt}}" for n in VAR_NAMES]
    + ["${1X}", "${LMRT_HYP_A:x}", "${LMRT_HYP_A-x}", "${}"]
)
templates = st.lists(pieces, max_size=10).map("".join)
leaves = templates | st.integers() | st.booleans() | st.just(Decimal("1.50"))
keys_ = st.text("abcxyz_", min_size=1, max_size=3)
trees = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys_, inner, max_size=3),
    max_leaves=12,
)
environs = st.dictionaries(
    st.sampled_from(VAR_NAMES), st.text("ab$}{\n:-", max_size=4), max_size=len(VAR_NAMES)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys_, trees, max_size=4), environs)
def test_interpolate_matches_a_reference_substitution(
    raw: dict[str, Any], environ: dict[str, str]
) -> None:
    patched = {name: environ[name] for name in VAR_NAMES if name in environ}
    with mock.patch.dict(os.environ, patched):
        for name in VAR_NAMES:
            if name not in environ:
                os.environ.pop(name, None)
        try:
            expected = reference_interpolate(raw, environ)
        except Missing as exc:
            key, name = exc.args
            with pytest.raises(ConfigError) as info:
                interpolate(raw)
            assert info.value.key == key
            assert f"environment variable {name} is not set" in info.value.message
        else:
            assert interpolate(raw) == expected


# -- unknown keys, with their line --------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "key", "marker"),
    [
        (("port = 9000", "port = 9000\nhots = 1"), "server.hots", "hots"),
        (('api_key = "sk-test"', 'api_key = "sk-test"\napikey = "x"'), "providers.openai.apikey",
         "apikey"),
        (('model = "gpt-4o"\n', 'model = "gpt-4o"\n  modle = "x"\n'), "models[1].routes[0].modle",
         "modle"),
        (("price = { input = 2.5, output = 10 }", "price = { input = 2.5, outptu = 10 }"),
         "models[1].routes[0].price.outptu", "outptu"),
        (("price = { input = 0.15,", "price = { imput = 0.15,"),
         "models[0].routes[0].price.imput", "imput"),
        (('id = "openai/gpt-4o"', 'id = "openai/gpt-4o"\nmax_tokens = 5'), "models[1].max_tokens",
         "max_tokens"),
    ],
)  # fmt: skip
def test_unknown_key_is_reported_with_path_and_line(
    tmp_path: Path, edit: tuple[str, str], key: str, marker: str
) -> None:
    assert BASE.count(edit[0]) == 1
    text = BASE.replace(*edit)
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, key, line_of(text, marker))
    assert "unknown key" in err.message


def test_unknown_key_in_a_price_subtable(tmp_path: Path) -> None:
    text = BASE + (
        '\n[[models]]\nid = "third"\n[[models.routes]]\nprovider = "openai"\nmodel = "m"\n'
        "[models.routes.price]\ninput = 1\noutput = 2\nreqeust = 0.01\n"
    )
    path = write(tmp_path, text)
    assert_points_at(
        config_error(path), path, "models[2].routes[0].price.reqeust", line_of(text, "reqeust")
    )


def test_unknown_key_written_as_a_dotted_key(tmp_path: Path) -> None:
    text = BASE.replace('model = "gpt-4o"\n', 'model = "gpt-4o"\n  price.cahce_read = 1\n')
    path = write(tmp_path, text)
    # a dotted key redefines the inline price table: TOML refuses it before validation...
    with pytest.raises(ConfigError, match="line"):
        load(path)
    text = BASE.replace(
        "  price = { input = 2.5, output = 10 }", "  price.input = 2.5\n  price.x = 1"
    )
    path = write(tmp_path, text)
    # ...but dotted keys on their own are fine, and the line is found
    assert_points_at(config_error(path), path, "models[1].routes[0].price.x", line_of(text, "x ="))


# -- types, values, references --------------------------------------------------------------


def test_port_as_string(tmp_path: Path) -> None:
    text = BASE.replace("port = 9000", 'port = "9000"')
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "server.port", line_of(text, "port ="))
    assert "Expected `int`, got `str`" in err.message


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    text = BASE.replace("port = 9000", "port = true")
    path = write(tmp_path, text)
    assert_points_at(config_error(path), path, "server.port", line_of(text, "port ="))


def test_price_as_a_word(tmp_path: Path) -> None:
    text = BASE.replace("input = 2.5", 'input = "cheap"')
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "models[1].routes[0].price.input", line_of(text, '"cheap"'))


def test_price_as_a_boolean(tmp_path: Path) -> None:
    text = BASE.replace("input = 2.5", "input = true")
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "models[1].routes[0].price.input", line_of(text, "input = true"))


def test_table_where_a_value_belongs(tmp_path: Path) -> None:
    text = BASE + "\n[server.host]\nname = 1\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError):
        load(path)  # TOML itself refuses a redefined key


def test_log_level_must_be_one_of_the_choices(tmp_path: Path) -> None:
    text = BASE.replace("port = 9000", 'port = 9000\nlog_level = "verbose"')
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "server.log_level", line_of(text, "log_level"))


@pytest.mark.parametrize(("port", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_port_range(tmp_path: Path, port: int, ok: bool) -> None:
    path = write(tmp_path, BASE.replace("port = 9000", f"port = {port}"))
    if ok:
        assert load(path).server.port == port
    else:
        assert config_error(path).key == "server.port"


def test_workers_at_least_one(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("port = 9000", "port = 9000\nworkers = 0"))
    assert config_error(path).key == "server.workers"


def test_unknown_section_lists_known_sections(tmp_path: Path) -> None:
    text = BASE + "\n[credit]\nexpire_after_days = 1\n"
    path = write(tmp_path, text)
    err = config_error(path, sections={"credits": CreditsSection})
    assert_points_at(err, path, "credit", line_of(text, "[credit]"))
    listed = err.message.split("known sections: ")[1].split(", ")
    assert listed == sorted({*CoreConfig.__struct_fields__, "credits"})


def test_unknown_top_level_value(tmp_path: Path) -> None:
    text = "debug = true\n" + BASE
    path = write(tmp_path, text)
    assert_points_at(config_error(path), path, "debug", 1)


def test_plugin_section_is_validated_strictly(tmp_path: Path) -> None:
    sections = {"credits": CreditsSection}
    text = BASE + "\n[credits]\nexpire_after_days = 30\nbyok_fee_percent = 2.5\n"
    config = load(write(tmp_path, text), sections=sections)
    assert config.section("credits") == CreditsSection(
        expire_after_days=30, byok_fee_percent=Decimal("2.5")
    )
    text = BASE + "\n[credits]\nexpire_after_days = 30\nexpire_after_day = 3\n"
    path = write(tmp_path, text)
    err = config_error(path, sections=sections)
    assert_points_at(err, path, "credits.expire_after_day", line_of(text, "expire_after_day ="))
    text = BASE + '\n[credits]\nexpire_after_days = "never"\n'
    path = write(tmp_path, text)
    err = config_error(path, sections=sections)
    assert_points_at(err, path, "credits.expire_after_days", line_of(text, '"never"'))


def test_nested_array_lines_are_not_table_headers(tmp_path: Path) -> None:
    text = BASE + '\n[tiers]\ntiers = [\n  [1, 2],\n  [5],\n  ["6"],\n]  # end\nnmae = "x"\n'
    path = write(tmp_path, text)
    err = config_error(path, sections={"tiers": TiersSection})
    assert_points_at(err, path, "tiers.nmae", line_of(text, "nmae"))


def test_plugin_section_defaults_when_absent(tmp_path: Path) -> None:
    config = load(write(tmp_path, BASE), sections={"credits": CreditsSection})
    assert config.section("credits") == CreditsSection()
    # a plugin whose section has a required key: absent means missing, and says which key
    err = config_error(write(tmp_path, BASE), sections={"vault": NeedsSecret})
    assert err.key == "vault.secret"
    assert "required" in err.message


def test_plugin_section_must_be_a_table(tmp_path: Path) -> None:
    text = "credits = 5\n" + BASE
    path = write(tmp_path, text)
    assert_points_at(config_error(path, sections={"credits": CreditsSection}), path, "credits", 1)


def test_sections_of_disabled_plugins_are_ignored(tmp_path: Path) -> None:
    text = BASE + '\n[stripe]\nsecret_key = "x"\nanything = { goes = 1 }\n'
    config = load(write(tmp_path, text), disabled=frozenset({"stripe"}))
    assert "stripe" not in config.sections
    # without the plugin disabled, the same table is an unknown section
    assert config_error(write(tmp_path, text)).key == "stripe"


def test_duplicate_model_ids(tmp_path: Path) -> None:
    text = BASE.replace('id = "openai/gpt-4o"\n', 'id = "openai/gpt-4o-mini"  # again\n')
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "models[1].id", line_of(text, "# again"))
    assert "duplicate model id 'openai/gpt-4o-mini'" in err.message


def test_route_to_unknown_provider(tmp_path: Path) -> None:
    text = BASE.replace(
        'provider = "openai"\n  model = "gpt-4o"\n', 'provider = "opnai"\n  model = "gpt-4o"\n'
    )
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "models[1].routes[0].provider", line_of(text, '"opnai"'))
    assert "configured providers: openai" in err.message


def test_unknown_provider_type_lists_installed_types(tmp_path: Path) -> None:
    text = BASE.replace('type = "openai"', 'type = "openia"')
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "providers.openai.type", line_of(text, "openia"))
    assert "installed types: anthropic, openai" in err.message
    err = config_error(path, provider_types={})
    assert "no provider plugin is installed" in err.message


def test_provider_without_type_or_base_url(tmp_path: Path) -> None:
    text = BASE.replace('type = "openai"\n', "")
    path = write(tmp_path, text)
    assert_points_at(config_error(path), path, "providers.openai", line_of(text, "[providers"))
    text = BASE.replace('base_url = "https://api.openai.com/v1"\n', "")
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.key == "providers.openai.base_url" and "required" in err.message
    text = BASE.replace("https://api.openai.com/v1", "api.openai.com")
    path = write(tmp_path, text)
    assert_points_at(
        config_error(path), path, "providers.openai.base_url", line_of(text, "base_url")
    )


def test_model_needs_routes(tmp_path: Path) -> None:
    text = BASE + '\n[[models]]\nid = "no-routes"\nroutes = []\n'
    path = write(tmp_path, text)
    assert_points_at(config_error(path), path, "models[2].routes", line_of(text, "routes = []"))
    text = BASE + '\n[[models]]\nid = "no-routes"\n'
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.key == "models[2].routes" and "required" in err.message


@pytest.mark.parametrize("field", ["input", "output", "cache_read", "cache_write", "request"])
def test_negative_price(tmp_path: Path, field: str) -> None:
    text = BASE.replace("price = { input = 2.5, output = 10 }", f"price = {{ {field} = -0.5 }}")
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, f"models[1].routes[0].price.{field}", line_of(text, "-0.5"))
    assert "negative" in err.message


@pytest.mark.parametrize("value", ["0.0000001", "1.1234567", "1.5e-7", "0.00000015"])
def test_price_with_more_than_six_decimals_is_refused(tmp_path: Path, value: str) -> None:
    text = BASE.replace("input = 2.5", f"input = {value}")
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "models[1].routes[0].price.input", line_of(text, value))
    assert "6 decimal places" in err.message


@pytest.mark.parametrize(
    ("value", "rate"),
    [("0.000001", 1), ("1.123456", 1_123_456), ("1.5e-6", None), ("1e-6", 1), ("2E+1", 20_000_000),
     ("0.1000000", 100_000), ("0", 0), ("-0.0", 0)],
)  # fmt: skip
def test_price_with_six_decimals_or_fewer_is_exact(
    tmp_path: Path, value: str, rate: int | None
) -> None:
    text = BASE.replace("input = 2.5", f"input = {value}")
    path = write(tmp_path, text)
    if rate is None:  # 1.5e-6 has seven decimals
        assert config_error(path).key == "models[1].routes[0].price.input"
        return
    route = load(path).models["openai/gpt-4o"].routes[0]
    assert route.price.input == Decimal(value)
    assert route.rates.input == rate


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "+nan"])
def test_price_must_be_finite(tmp_path: Path, value: str) -> None:
    text = BASE.replace("input = 2.5", f"input = {value}")
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.key is not None and err.key.startswith("models[1].routes[0].price")
    assert err.line == line_of(text, value)


def test_absurd_price_exponents_are_config_errors(tmp_path: Path) -> None:
    text = BASE.replace("input = 2.5", "input = 1e-1000000")
    path = write(tmp_path, text)
    err = config_error(path)
    assert_points_at(err, path, "models[1].routes[0].price.input", line_of(text, "1e-1000000"))
    assert "6 decimal places" in err.message
    text = BASE.replace("input = 2.5", "input = 1e999999")
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.key == "models[1].routes[0]"
    assert "out of range" in err.message


# -- the file itself --------------------------------------------------------------------------


def test_invalid_toml_gives_the_line(tmp_path: Path) -> None:
    text = BASE.replace("port = 9000", "port = = 9000")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_raw(path)
    assert str(info.value).startswith(f"{path}: invalid TOML")
    assert f"line {line_of(text, 'port = =')}" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        read_raw(path)
    assert str(info.value).startswith(f"{path}: config file not found. Name one with --config")


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_raw(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[server]\nhost = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        read_raw(path)
    assert str(info.value).startswith(f"{path}")
    assert "UTF-8" in str(info.value)


def test_struct_defaults_are_not_shared() -> None:
    a, b = msgspec.convert({}, CoreConfig), msgspec.convert({}, CoreConfig)
    a.auth.keys.append("x")
    assert b.auth.keys == []
    assert ServerConfig().port == 8080
    assert Price().cache_read is None
    assert Model(id="m", routes=[]).max_output_tokens is None


# -- random unknown keys anywhere are reported with their exact path and line -------------------


def toml_key(name: str, quoted: bool) -> str:
    return json.dumps(name) if quoted else name


@st.composite
def configs_with_one_typo(draw: st.DrawFn) -> tuple[str, str, int]:
    """A valid config with one unknown key; returns (text, key path, line of the key)."""
    model_count = draw(st.integers(1, 3))
    route_counts = [draw(st.integers(1, 3)) for _ in range(model_count)]
    inline_price = [[draw(st.booleans()) for _ in range(n)] for n in route_counts]
    places = ["top", "server", "storage", "routing", "auth", "provider", "credits"]
    places += [f"model:{m}" for m in range(model_count)]
    for m, count in enumerate(route_counts):
        places += [f"route:{m}:{r}" for r in range(count)]
        places += [f"price:{m}:{r}" for r in range(count)]
    place = draw(st.sampled_from(places))
    known = {
        "top": {*CoreConfig.__struct_fields__, "credits"},
        "server": set(ServerConfig.__struct_fields__),
        "storage": {"url"},
        "routing": {"deadline", "backoff", "backoff_max"},
        "auth": {"keys"},
        "provider": set(ProviderConfig.__struct_fields__),
        "credits": set(CreditsSection.__struct_fields__),
        "model": set(Model.__struct_fields__),
        "route": set(Route.__struct_fields__),
        "price": set(Price.__struct_fields__),
    }[place.split(":")[0]]
    typo = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,11}", fullmatch=True).filter(
        lambda name: name not in known))  # fmt: skip
    quoted = draw(st.booleans())
    typo_line = f"{toml_key(typo, quoted)} {draw(st.sampled_from(['=', ' = ', '  =']))} 1"
    pad = draw(st.sampled_from(["", "  ", "\t"]))

    lines: list[str] = []
    found: list[int] = []

    def emit(line: str, *, typo_here: bool = False) -> None:
        lines.append(line)
        if typo_here:
            found.append(len(lines))

    def maybe_typo(at: str) -> None:
        if place == at:
            emit(pad + typo_line, typo_here=True)
        if draw(st.booleans()):
            emit(draw(st.sampled_from(["", "# a comment", "   # x = 1"])))

    maybe_typo("top")
    emit("[server]")
    emit('host = "127.0.0.1"')
    maybe_typo("server")
    emit("[storage]")
    maybe_typo("storage")
    emit("[routing]")
    emit("deadline = 30.0")
    maybe_typo("routing")
    emit("[auth]")
    emit('keys = ["a", "b"]')
    maybe_typo("auth")
    emit("[credits]")
    emit("expire_after_days = 10")
    maybe_typo("credits")
    emit('[providers."openai"]' if draw(st.booleans()) else "[providers.openai]")
    emit('type = "openai"')
    emit('base_url = "http://localhost:1"')
    maybe_typo("provider")
    for m in range(model_count):
        emit("[[models]]")
        emit(f'id = "model-{m}"')
        maybe_typo(f"model:{m}")
        for r in range(route_counts[m]):
            emit(pad + "[[models.routes]]")
            emit(pad + 'provider = "openai"')
            maybe_typo(f"route:{m}:{r}")
            emit(pad + f'model = "upstream-{m}-{r}"')
            if inline_price[m][r]:
                extra = f", {toml_key(typo, quoted)} = 1" if place == f"price:{m}:{r}" else ""
                emit(pad + f"price = {{ input = 0.5, output = 1.25{extra} }}",
                     typo_here=bool(extra))  # fmt: skip
            else:
                emit(pad + "[models.routes.price]")
                emit(pad + "input = 0.5")
                maybe_typo(f"price:{m}:{r}")
    assert len(found) == 1
    kind, *index = place.split(":")
    key = {
        "top": typo,
        "provider": f"providers.openai.{typo}",
        "model": f"models[{index[0]}].{typo}" if index else "",
        "route": f"models[{index[0]}].routes[{index[-1]}].{typo}" if index else "",
        "price": f"models[{index[0]}].routes[{index[-1]}].price.{typo}" if index else "",
    }.get(kind, f"{kind}.{typo}")
    return "\n".join(lines) + "\n", key, found[0]


@settings(max_examples=150, deadline=None)
@given(configs_with_one_typo())
def test_any_unknown_key_is_reported_with_its_path_and_line(case: tuple[str, str, int]) -> None:
    text, key, line = case
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), text)
        err = config_error(path, sections={"credits": CreditsSection})
        assert err.key == key, text
        assert err.line == line, text
        assert str(err).startswith(f"{path}:{line}: `{key}`: ")
