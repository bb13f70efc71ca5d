"""The dashboard under abuse, against the real router: guesses sent all at once get no more
password checks than the throttle allows (sign-in and account deletion), sign-ups are limited
per client address, and an operator's session row tells a database thief nothing about the key.

Each test speaks from its own client address (``X-Forwarded-For``, trusted in this config), so
one test's counts never throttle another's."""

from __future__ import annotations

import hashlib
import select
import socket
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_dashboard.testing import DashboardClient

GUESSES = 60
EMAIL_LIMIT = 5  # EMAIL_FAILURES in the plugin
SIGNUPS = 3


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, kit
) -> Iterator[RouterServer]:
    from_conftest = kit.start.__globals__["config"]  # the shared config, with our own limits
    text = from_conftest(
        fake.base_url,
        dashboard={"trust_forwarded": True, "signups_per_hour": SIGNUPS},
        server={"body_timeout": 1},
    )
    workdir = tmp_path_factory.mktemp("dashboard-abuse")
    (workdir / "terms.txt").write_text(kit.TERMS)
    with RouterServer(text, workdir=workdir) as server:
        yield server


def client_from(router: RouterServer, address: str) -> DashboardClient:
    client = DashboardClient(router.url)
    client.http.headers["x-forwarded-for"] = address
    return client


def at_once(router: RouterServer, action: str, page: str, address: str, forms: list[dict]):
    """POST every form to ``action`` at the same time, each from its own fresh visitor (own
    cookies and CSRF token); the statuses, counted."""
    clients = [client_from(router, address) for _ in forms]
    tokens = [c.csrf(page) for c in clients]

    def post(i: int) -> int:
        return clients[i].post(action, forms[i], csrf=tokens[i]).status_code

    try:
        with ThreadPoolExecutor(max_workers=len(forms)) as pool:
            return Counter(pool.map(post, range(len(forms))))
    finally:
        for c in clients:
            c.close()


def test_wrong_passwords_sent_at_once_get_at_most_the_limit_of_checks(kit, router) -> None:
    with client_from(router, "10.0.1.1") as owner:
        assert owner.signup("many@example.com", kit.PASSWORD, terms="v1").status_code == 303
    wrong = [{"email": "many@example.com", "password": f"wrong guess {i}"} for i in range(GUESSES)]
    statuses = at_once(router, "/dashboard/login", "/dashboard/login", "10.0.1.2", wrong)
    # 400 is a password that was checked and found wrong; 429 was refused unchecked
    assert statuses[400] <= EMAIL_LIMIT
    assert statuses[400] + statuses[429] == GUESSES, statuses


def test_delete_account_guesses_at_once_get_at_most_the_limit_of_checks(kit, router) -> None:
    owner = client_from(router, "10.0.2.1")
    assert owner.signup("stolen@example.com", kit.PASSWORD, terms="v1").status_code == 303
    token = owner.csrf("/dashboard/account")
    cookies = dict(owner.http.cookies)

    def guess(i: int) -> int:
        answer = httpx.post(
            f"{router.url}/dashboard/account/delete",
            data={"password": f"wrong guess {i}", "confirm": "yes", "csrf": token},
            cookies=cookies,
            headers={"origin": router.url, "x-forwarded-for": "10.0.2.1"},
            timeout=60,
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=GUESSES) as pool:
        statuses = Counter(pool.map(guess, range(GUESSES)))
    assert statuses[400] <= EMAIL_LIMIT
    assert statuses[400] + statuses[429] == GUESSES, statuses
    # and the account is still there
    assert kit.query(router, "SELECT status FROM users WHERE email = 'stolen@example.com'") == [
        ("active",)
    ]
    owner.close()


def test_sign_ups_are_limited_per_client_address(kit, router) -> None:
    for i in range(SIGNUPS):
        with client_from(router, "10.0.3.1") as visitor:
            answer = visitor.signup(f"bulk{i}@example.com", kit.PASSWORD, terms="v1")
            assert answer.status_code == 303, answer.text
    with client_from(router, "10.0.3.1") as visitor:
        refused = visitor.signup("bulk-more@example.com", kit.PASSWORD, terms="v1")
    assert refused.status_code == 429
    assert "Too many sign-ups" in refused.text
    assert 3500 <= int(refused.headers["retry-after"]) <= 3600
    assert kit.query(router, "SELECT id FROM users WHERE email = 'bulk-more@example.com'") == []
    with client_from(router, "10.0.3.2") as elsewhere:  # another address is not affected
        assert elsewhere.signup("bulk-ok@example.com", kit.PASSWORD, terms="v1").status_code == 303


def test_an_operator_session_does_not_store_a_plain_hash_of_the_key(kit, router) -> None:
    with client_from(router, "10.0.4.1") as operator:
        assert operator.post("/dashboard/operator", {"key": kit.OPERATOR}).status_code == 303
        assert operator.get("/dashboard/admin").status_code == 200
        stored = kit.query(
            router, "SELECT operator FROM dashboard_sessions WHERE operator IS NOT NULL"
        )
    assert len(stored) == 1
    assert stored[0][0] != hashlib.sha256(kit.OPERATOR.encode()).hexdigest()
    assert kit.OPERATOR not in stored[0][0]


def test_a_form_trickled_slower_than_the_body_deadline_is_cut_off(router) -> None:
    # The dashboard reads its forms through Starlette: the same deadline holds there.
    form = b"email=slow%40example.com&password=" + b"p" * 200
    with socket.create_connection(("127.0.0.1", router.port), timeout=20) as sock:
        head = (
            "POST /dashboard/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\nX-Forwarded-For: 10.0.5.1\r\n\r\n"
        )
        sock.sendall(head.encode())
        for byte in form[:-1]:  # a byte every 0.2 s: 1 s passes long before the end
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], 0.2)[0]:
                break
        else:
            pytest.fail("the router waited for the whole trickled form")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer
