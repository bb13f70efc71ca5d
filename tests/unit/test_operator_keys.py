"""Operator keys: a key's check costs the same whatever its length, so timing tells nothing of
the operator key (it used to skip the hash for keys of another length, leaking the length)."""

from __future__ import annotations

import pytest

from lmrouter.builtin import operator_keys

OPERATOR = "sk-operator-key-of-some-length"


def test_every_key_is_hashed_whatever_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    digest = operator_keys._digest

    def counting(key: str) -> bytes:
        hashed.append(key)
        return digest(key)

    plugin = operator_keys.OperatorKeys()
    plugin.configure([OPERATOR, ""])
    monkeypatch.setattr(operator_keys, "_digest", counting)
    tries = ["x", "sk-lmr-" + "a" * 32, OPERATOR[:-1] + "X", "", OPERATOR]
    answers = [plugin.lmrouter_authenticate(None, key, {}) for key in tries]  # type: ignore[arg-type]
    assert hashed == tries
    assert answers[:-1] == [None] * 4
    assert answers[-1] is not None and answers[-1].kind == "operator"
