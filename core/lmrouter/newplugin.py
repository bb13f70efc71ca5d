"""``lmrouter new-plugin NAME [--dir PATH]``: a ready provider-plugin distribution.

What it writes passes its own tests as generated: an adapter for an OpenAI-compatible API
(the commonest case, and the smallest), a fake of that upstream, the conformance test and a
README that says what to change for a provider of another shape.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lmrouter import __version__
from lmrouter.hookspecs import API_VERSION

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def api_range() -> str:
    """The hook API versions a plugin written today works with: this minor version onwards,
    up to the next major (which changes a hook incompatibly)."""
    major = int(API_VERSION.split(".")[0])
    return f">={API_VERSION},<{major + 1}"


def lmrouter_range() -> str:
    """The lmrouter releases with this plugin API: before 1.0 a minor release may break it."""
    major, minor = (int(part) for part in __version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f">={major}.{minor},<{upper}"


def files(name: str) -> dict[str, str]:
    """Relative path → text of the distribution for provider type ``name``."""
    package = "lmrouter_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    values = {
        "name": name,
        "package": package,
        "cls": cls,
        "env": name.upper().replace("-", "_"),
        "api": API_VERSION,
        "api_range": api_range(),
        "lmrouter_range": lmrouter_range(),
    }
    return {
        path.format(**values): text.replace("{{", "\0")
        .replace("}}", "\1")
        .format(**values)
        # literal braces in the templates are doubled; restore them after formatting
        .replace("\0", "{")
        .replace("\1", "}")
        for path, text in TEMPLATES.items()
    }


def write(name: str, directory: Path) -> Path:
    """Write the distribution into ``directory/lmrouter-NAME``; refuses to overwrite."""
    if not NAME.match(name):
        raise ValueError(
            f"{name!r} is not a plugin name: lower-case letters, digits and single dashes, "
            "starting with a letter (e.g. 'acme' or 'acme-cloud')"
        )
    root = directory / f"lmrouter-{name}"
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    for relative, text in files(name).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def cmd_new_plugin(args: argparse.Namespace) -> int:
    try:
        root = write(args.name, Path(args.dir))
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}")
        return 1
    print(f"wrote {root}")
    print(f"next: cd {root} && pip install -e '.[test]' && pytest")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "new-plugin", help="write a provider-plugin distribution with its conformance test"
    )
    parser.add_argument("name", help="the provider type, e.g. 'acme' (package lmrouter-acme)")
    parser.add_argument("--dir", default=".", help="where to create it (default: here)")
    parser.set_defaults(func=cmd_new_plugin)


TEMPLATES: dict[str, str] = {
    "pyproject.toml": """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "lmrouter-{name}"
version = "0.1.0"
description = "LMRouter provider plugin: {name}."
readme = "README.md"
requires-python = ">=3.11"
# The plugin API ({api_range}) ships in these lmrouter releases.
dependencies = ["lmrouter{lmrouter_range}"]

[project.optional-dependencies]
test = ["pytest>=8", "openai>=1.0", "anthropic>=0.40"]

[project.entry-points."lmrouter.plugins"]
{name} = "{package}"

[tool.lmrouter]
plugin-api = "{api_range}"
dialects = ["openai.chat", "openai.embeddings"]

[tool.hatch.build.targets.wheel]
packages = ["{package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
""",
    "{package}/__init__.py": '''\
"""LMRouter provider plugin for {name}: ``type = "{name}"`` in ``[providers.NAME]``.

The upstream speaks OpenAI's Chat Completions and embeddings wire format, so requests in those
dialects pass through (``native_dialects``) with the route's model name, and the router reads
usage, finish reasons and errors itself. To serve callers in other dialects (Anthropic
Messages, Responses), list ``"chat"`` in ``converts`` and implement ``build``, ``parse`` and
``stream_parser`` with :mod:`lmrouter.ir` (see "Writing a provider plugin" in LMRouter's docs).
"""

from __future__ import annotations

import json
from typing import Any

from lmrouter import hookimpl
from lmrouter.providers import Provider, ProviderConfig, UpstreamRequest

PLUGIN_API = "{api}"  # the lmrouter hook API this adapter is written against

PATHS = {{"openai.chat": "/chat/completions", "openai.embeddings": "/embeddings"}}


class {cls}Config(ProviderConfig, kw_only=True, forbid_unknown_fields=True):
    """``[providers.NAME]`` keys beyond the common ones (base_url, api_key, timeouts…)."""

    organization: str = ""  # an example of a setting of your own: sent as a header when set


class {cls}Provider(Provider):
    type = "{name}"
    Config = {cls}Config
    native_dialects = frozenset(PATHS)

    def prepare(self, ctx: Any, route: Any, key: str) -> UpstreamRequest:
        doc = {{**ctx.doc, "model": route.model}}
        if ctx.stream:  # usage arrives in the last chunk only when asked for
            doc["stream_options"] = {{**(doc.get("stream_options") or {{}}), "include_usage": True}}
        headers = {{"Content-Type": "application/json"}}
        if key:
            headers["Authorization"] = f"Bearer {{key}}"
        if self.config.organization:
            headers["X-Organization"] = self.config.organization
        url = self.base_url + PATHS[ctx.dialect]
        return UpstreamRequest(url, headers, json.dumps(doc).encode())


@hookimpl
def lmrouter_provider_types() -> dict[str, type[Provider]]:
    return {{"{name}": {cls}Provider}}
''',
    "{package}/fake.py": '''\
"""A fake {name} upstream for tests: a loopback server that answers like the real API.

It starts as OpenAI's wire format (:class:`lmrouter.testing.fake_openai.FakeOpenAI`: streams,
tool calls, usage with cached and reasoning tokens, OpenAI's error bodies, scripted failures and
delays). When your provider differs, build your own on :class:`lmrouter.testing.fakeserver.
FakeServer` and copy what the real API sends, byte for byte: a fake is only as good as it is
faithful.
"""

from __future__ import annotations

from lmrouter.testing.fake_openai import Behavior, FakeOpenAI

__all__ = ["Behavior", "Fake{cls}"]


class Fake{cls}(FakeOpenAI):
    _thread_name = "fake-{name}"
''',
    "tests/test_conformance.py": '''\
"""The adapter against LMRouter's conformance kit: every claim below is a test, run through the
real router with the official SDKs against the fake upstream."""

from __future__ import annotations

from lmrouter.testing import conformance
from {package} import {cls}Provider
from {package}.fake import Fake{cls}

SPEC = conformance.Spec(
    adapter={cls}Provider,
    fake=lambda key: Fake{cls}(api_key=key),
    behavior=conformance.openai_behavior,
    dialects={{"openai.chat", "openai.embeddings"}},
    features={{"tools", "usage", "cached_tokens", "reasoning_tokens"}},
)

TestConformance = conformance.suite(SPEC)
''',
    "README.md": """\
# lmrouter-{name}

An [LMRouter](https://github.com/lmrouter/lmrouter) provider plugin: `type = "{name}"`.

## Use

```sh
pip install lmrouter-{name}
lmrouter plugins          # lists "{name}"
```

```toml
[providers.{name}]
type = "{name}"
base_url = "https://api.{name}.example/v1"
api_key = "${{{env}_API_KEY:-}}"
# organization = "…"     # sent as X-Organization

[[models]]
id = "{name}/some-model"
  [[models.routes]]
  provider = "{name}"
  model = "some-model"
  price = {{ input = 0.50, output = 1.50 }}
```

## What converts to what

| Caller's dialect            | Upstream                      |
|-----------------------------|-------------------------------|
| OpenAI Chat Completions     | `/chat/completions`, as sent  |
| OpenAI embeddings           | `/embeddings`, as sent        |

Plugin API: `{api_range}` (lmrouter `{lmrouter_range}`).

## Develop

```sh
pip install -e '.[test]'
pytest                    # the conformance kit, against the fake in {package}/fake.py
```

Change `{package}/__init__.py` for your provider's URLs, headers and auth, and
`{package}/fake.py` so that it answers exactly like the real API. The conformance test
(`tests/test_conformance.py`) says which dialects and features the adapter claims; every claim
is checked through a real router. Import only from `lmrouter` and `lmrouter.testing` (and
`lmrouter.ir`/`lmrouter.sse`): that is the plugin API.

## Publish

```sh
python -m build && twine upload dist/*
```
""",
}
