"""A form-filling HTTP client for the dashboard, for tests and benchmarks: it keeps cookies,
reads each form's CSRF token from the page it is on, and sends ``Origin`` as a browser does."""

from __future__ import annotations

import re
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_SECRET = re.compile(r'id="new-key" type="text" readonly value="(sk-lmr-[^"]+)"')


class DashboardClient:
    def __init__(self, base_url: str, *, origin: str | None = None) -> None:
        self.base_url = base_url
        self.origin = origin or base_url
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DashboardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params or None)

    def csrf(self, page: str) -> str:
        found = _CSRF.search(self.get(page).text)
        assert found, f"no form on {page}"
        return found.group(1)

    def post(
        self, action: str, data: dict[str, str], *, page: str | None = None, csrf: str | None = None
    ) -> httpx.Response:
        """Submit ``data`` to ``action`` with the CSRF token of the form on ``page`` (default: the
        page the action lives on)."""
        token = csrf if csrf is not None else self.csrf(page or action)
        return self.http.post(action, data={**data, "csrf": token}, headers={"origin": self.origin})

    def signup(self, email: str, password: str, *, terms: str | None = None) -> httpx.Response:
        data = {"email": email, "password": password, "password2": password}
        if terms:
            data["terms"] = terms
        return self.post("/dashboard/signup", data)

    def login(self, email: str, password: str) -> httpx.Response:
        return self.post("/dashboard/login", {"email": email, "password": password})

    def create_key(self, name: str = "") -> str:
        answer = self.post("/dashboard/keys", {"name": name})
        found = _SECRET.search(answer.text)
        assert answer.status_code == 200 and found, answer.text
        return found.group(1)
