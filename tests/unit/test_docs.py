"""The plugin docs cannot drift from the code (Datasette's ``test_docs.py`` idea): every hook and
each of its arguments is documented, every public name is described, and ``docs/plugins.md`` and
the README's hook table are what ``python -m lmrouter.hookdocs`` writes today."""

from __future__ import annotations

import inspect
import re

import pytest

import lmrouter
from lmrouter import hookdocs

REFERENCE = hookdocs.REFERENCE.read_text(encoding="utf-8")
README = hookdocs.README.read_text(encoding="utf-8")
HOOKS = hookdocs.hooks()
STALE = "out of date: run `python -m lmrouter.hookdocs` and commit the result"


def test_every_hook_is_found() -> None:
    names = [name for name, _ in HOOKS]
    assert {"lmrouter_authenticate", "lmrouter_request_end", "lmrouter_addhooks"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("name", "function"), HOOKS, ids=[name for name, _ in HOOKS])
def test_each_hook_and_argument_is_documented(name: str, function: object) -> None:
    doc = inspect.getdoc(function) or ""
    assert len(doc.split()) >= 8, f"{name} needs a docstring saying when it runs and what to do"
    for argument in inspect.signature(function).parameters:  # type: ignore[arg-type]
        assert re.search(rf"``{argument}\b", doc), f"{name}: say what ``{argument}`` is"
    assert f"### `{hookdocs.signature(name, function)}`" in REFERENCE, f"docs/plugins.md {STALE}"
    assert f"| `{hookdocs.signature(name, function)}` |" in README, f"README.md {STALE}"


@pytest.mark.parametrize("name", lmrouter.__all__)
def test_each_public_name_is_described(name: str) -> None:
    assert hookdocs.summary(name), f"lmrouter.{name}: add a docstring or a line in hookdocs.NOTES"
    assert f"| `lmrouter.{name}` |" in REFERENCE, f"docs/plugins.md {STALE}"


def test_notes_name_only_public_names() -> None:
    assert set(hookdocs.NOTES) <= set(lmrouter.__all__)


def test_the_generated_files_are_up_to_date() -> None:
    assert hookdocs.reference() == REFERENCE, f"docs/plugins.md {STALE}"
    assert hookdocs.readme_with_table(README) == README, f"the README hook table is {STALE}"
