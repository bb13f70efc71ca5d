"""The Stripe tests that use ``make_store`` run on SQLite and again on PostgreSQL."""

from __future__ import annotations

import pytest

from lmrouter.testing.pytest_plugin import parametrize_stores


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc)
