"""The dashboard over HTTP, against the real router: sign-up rules, sessions, CSRF, throttling,
one user never reaching another's things, suspension and deletion taking effect at once, terms,
BYOK and the admin pages. (The browser journey is in test_journey.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.testing.server import RouterServer
from lmrouter_dashboard.testing import DashboardClient


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc, scope="module")  # the pages on SQLite and on PostgreSQL


@pytest.fixture(scope="module")
def router(
    kit, tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, module_postgres_url: str | None
) -> Iterator[RouterServer]:
    """The shared dashboard router, on each store (the conftest's is on SQLite alone)."""
    options = {"store": module_postgres_url} if module_postgres_url else {}
    server = kit.start(tmp_path_factory.mktemp("dashboard"), fake.base_url, **options)
    try:
        yield server
    finally:
        server.stop()


def signed_up(kit, router: RouterServer, email: str):
    client = kit.client(router)
    answer = client.signup(email, kit.PASSWORD, terms="v1")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard/keys"
    return client


def test_sign_up_asks_for_a_sane_password_and_the_terms(kit, router: RouterServer) -> None:
    client = kit.client(router)
    refused = {
        "short pass": "at least 12 characters",
        "password1234": "most common",
        "zed@example.com": "not be your e-mail",
        "aaaaaaaaaaaaaaaa": "one character repeated",
        "x" * 257: "at most 256",
    }
    for password, why in refused.items():
        answer = client.signup("zed@example.com", password, terms="v1")
        assert answer.status_code == 400 and why in answer.text, (password, answer.text)
    # no composition rules: a long lower-case phrase is fine, but the terms must be accepted
    answer = client.signup("zed@example.com", "just some lower case words")
    assert answer.status_code == 400 and "Accepting the terms" in answer.text
    mismatch = client.post(
        "/dashboard/signup",
        {"email": "zed@example.com", "password": kit.PASSWORD, "password2": "other", "terms": "v1"},
    )
    assert mismatch.status_code == 400 and "differ" in mismatch.text
    assert kit.query(router, "SELECT COUNT(*) FROM users WHERE email = 'zed@example.com'") == [(0,)]

    answer = client.signup("Zed@Example.com", "just some lower case words", terms="v1")
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "lmr_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/dashboard" in cookie and "Secure" not in cookie  # plain http here
    [(version, accepted_at)] = kit.query(
        router,
        "SELECT t.version, t.accepted_at FROM dashboard_terms t JOIN users u ON u.id = t.user_id "
        "WHERE u.email = 'zed@example.com'",
    )
    assert version == "v1" and accepted_at.startswith("20")
    again = kit.client(router).signup("zed@example.com", kit.PASSWORD, terms="v1")
    assert again.status_code == 400 and "exists already" in again.text
    # only a hash of the session token is stored
    token = cookie.split("lmr_session=")[1].split(";")[0].split(".")[0]
    stored = [row[0] for row in kit.query(router, "SELECT token_hash FROM dashboard_sessions")]
    assert token not in stored and len(stored[-1]) == 64


def test_sign_in_and_out_and_a_stale_cookie_is_useless(kit, router: RouterServer) -> None:
    signed_up(kit, router, "walt@example.com").close()
    client = kit.client(router)
    assert client.get("/dashboard/keys").headers["location"].startswith("/dashboard/login")
    wrong = client.login("walt@example.com", "not the password at all")
    assert wrong.status_code == 400 and "do not match" in wrong.text
    answer = client.login("walt@example.com", kit.PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    home = client.get("/dashboard")
    assert home.status_code == 200 and "walt@example.com" in home.text
    assert "help@example.com" in home.text  # the support contact, on every page
    cookie = client.http.cookies["lmr_session"]

    out = client.post("/dashboard/logout", {}, page="/dashboard")
    assert out.status_code == 303 and "signed_out" in out.headers["location"]
    replay = kit.client(router)
    replay.http.cookies.set("lmr_session", cookie, path="/dashboard")
    assert replay.get("/dashboard/keys").status_code == 303  # the session ended server-side
    forged = kit.client(router)
    token, _ = cookie.split(".")
    forged.http.cookies.set("lmr_session", f"{token}.AAAA", path="/dashboard")
    assert forged.get("/dashboard/keys").status_code == 303


def test_a_form_without_the_right_token_or_from_elsewhere_is_refused(
    kit, router: RouterServer
) -> None:
    alice = signed_up(kit, router, "csrf-alice@example.com")
    bob = signed_up(kit, router, "csrf-bob@example.com")
    keys = "SELECT COUNT(*) FROM api_keys k JOIN users u ON u.id = k.user_id WHERE u.email = ?"
    for data in ({"name": "x"}, {"name": "x", "csrf": ""}, {"name": "x", "csrf": "forged"}):
        answer = alice.http.post("/dashboard/keys", data=data, headers={"origin": router.url})
        assert answer.status_code == 403 and "nothing was done" in answer.text
    # another session's token is no good either
    answer = alice.post("/dashboard/keys", {"name": "x"}, csrf=bob.csrf("/dashboard/keys"))
    assert answer.status_code == 403
    # the right token from another site's page
    token = alice.csrf("/dashboard/keys")
    answer = alice.http.post(
        "/dashboard/keys",
        data={"name": "x", "csrf": token},
        headers={"origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert kit.query(router, keys, ("csrf-alice@example.com",)) == [(0,)]
    assert alice.post("/dashboard/keys", {"name": "x"}).status_code == 200
    assert kit.query(router, keys, ("csrf-alice@example.com",)) == [(1,)]
    # the sign-in form has a pre-session token too
    stranger = kit.client(router)
    answer = stranger.http.post(
        "/dashboard/login",
        data={"email": "csrf-alice@example.com", "password": kit.PASSWORD},
        headers={"origin": router.url},
    )
    assert answer.status_code == 403 and "lmr_session" not in answer.headers.get("set-cookie", "")
    # and signing out cannot be forced from another site
    answer = alice.http.post("/dashboard/logout", data={}, headers={"origin": router.url})
    assert answer.status_code == 403
    assert alice.get("/dashboard/keys").status_code == 200


def test_one_user_never_sees_or_touches_anothers_things(kit, router: RouterServer) -> None:
    alice = signed_up(kit, router, "iso-alice@example.com")
    bob = signed_up(kit, router, "iso-bob@example.com")
    alice_key = alice.create_key("alice laptop")
    assert "<td>never</td>" in alice.get("/dashboard/keys").text  # not used yet
    kit.cli(router, "credits", "grant", "iso-alice@example.com", "3.5", "--note", "alice-gift")
    kit.sdk(router, alice_key).chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}]
    )
    [(alice_key_id,)] = kit.query(
        router,
        "SELECT k.id FROM api_keys k JOIN users u ON u.id = k.user_id WHERE u.email = ?",
        ("iso-alice@example.com",),
    )
    kit.within(5, lambda: "1000 / 50" in alice.get("/dashboard/usage").text)
    # last used: written by the accounts plugin's batch writer, about a second later
    kit.within(5, lambda: "<td>never</td>" not in alice.get("/dashboard/keys").text)

    # Bob's pages show nothing of Alice's, whatever he puts in the URL
    for path, params in [
        ("/dashboard/keys", {}),
        ("/dashboard/credits", {"checkout": "success", "session_id": "anything"}),
        ("/dashboard/usage", {"key": alice_key_id}),
        ("/dashboard/usage", {"model": "gpt-x"}),
        ("/dashboard", {}),
    ]:
        page = bob.get(path, **params).text
        for secret in ("alice laptop", alice_key[:12], "alice-gift", "$3.4989", "iso-alice"):
            assert secret not in page, (path, secret)
    usage = bob.get("/dashboard/usage", key=alice_key_id).text
    assert "No requests in this range" in usage
    # he cannot revoke her key: it is "no such key" to him, and it keeps working
    for form in ({}, {"confirm": "yes"}):
        answer = bob.post(
            f"/dashboard/keys/{alice_key_id}/revoke", form, csrf=bob.csrf("/dashboard/keys")
        )
        assert answer.status_code == 404
    kit.sdk(router, alice_key).chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "still mine"}]
    )
    # nor remove her provider key (his own list is what the form acts on)
    alice.post("/dashboard/byok", {"provider": "up", "key": "sk-alice-own-key"})
    removed = bob.post("/dashboard/byok/up/remove", {}, csrf=bob.csrf("/dashboard/keys"))
    assert removed.status_code == 404
    assert '<span class="tag">saved</span>' in alice.get("/dashboard/byok").text
    assert '<span class="tag">none</span>' in bob.get("/dashboard/byok").text
    # nor reach the admin pages
    assert bob.get("/dashboard/admin").status_code == 403
    answer = bob.post(
        "/dashboard/admin/users/x/grant", {"amount": "100"}, csrf=bob.csrf("/dashboard/keys")
    )
    assert answer.status_code == 403
    # 3.5 - 2 x 0.0011, exactly
    kit.within(5, lambda: "$3.4978" in alice.get("/dashboard/credits").text)


def test_failed_sign_ins_are_throttled(kit, router: RouterServer) -> None:
    signed_up(kit, router, "throttled@example.com").close()
    client = kit.client(router)
    for _ in range(5):
        assert client.login("throttled@example.com", "wrong wrong wrong").status_code == 400
    answer = client.login("throttled@example.com", kit.PASSWORD)  # even the right one, now
    assert answer.status_code == 429 and "Too many failed attempts" in answer.text
    assert 25 <= int(answer.headers["retry-after"]) <= 30
    assert "Try again in 30 seconds" in answer.text or "Try again in 29 seconds" in answer.text
    # another address from the same client is not locked out by this one's failures
    signed_up(kit, router, "unthrottled@example.com").close()
    assert client.login("unthrottled@example.com", kit.PASSWORD).status_code == 303


def test_suspension_and_deletion_end_sessions_and_keys_at_once(kit, router: RouterServer) -> None:
    user = signed_up(kit, router, "sus@example.com")
    key = user.create_key()
    sdk = kit.sdk(router, key)
    hello = [{"role": "user", "content": "hi"}]
    kit.cli(router, "credits", "grant", "sus@example.com", "1")
    sdk.chat.completions.create(model="gpt-x", messages=hello)

    admin = kit.client(router)
    assert admin.post("/dashboard/operator", {"key": "wrong"}).status_code == 400
    assert admin.post("/dashboard/operator", {"key": kit.OPERATOR}).status_code == 303
    listing = admin.get("/dashboard/admin").text
    [(user_id,)] = kit.query(router, "SELECT id FROM users WHERE email = 'sus@example.com'")
    assert "sus@example.com" in listing
    asked = admin.post(f"/dashboard/admin/users/{user_id}/suspend", {}, page="/dashboard/admin")
    assert asked.status_code == 200 and "Suspend sus@example.com?" in asked.text
    sdk.chat.completions.create(model="gpt-x", messages=hello)  # not suspended yet
    answer = admin.post(
        f"/dashboard/admin/users/{user_id}/suspend", {"confirm": "yes"}, page="/dashboard/admin"
    )
    assert answer.status_code == 303
    assert user.get("/dashboard/keys").status_code == 303  # signed out on the next click
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="gpt-x", messages=hello)
    refused = kit.client(router).login("sus@example.com", kit.PASSWORD)
    assert refused.status_code == 403 and "suspended" in refused.text

    admin.post(f"/dashboard/admin/users/{user_id}/resume", {}, page="/dashboard/admin")
    assert user.login("sus@example.com", kit.PASSWORD).status_code == 303
    sdk.chat.completions.create(model="gpt-x", messages=hello)
    # a suspension made with the CLI (another process) ends the session too
    kit.cli(router, "users", "suspend", "sus@example.com")
    assert user.get("/dashboard/keys").status_code == 303
    kit.cli(router, "users", "resume", "sus@example.com")
    assert user.login("sus@example.com", kit.PASSWORD).status_code == 303

    # deleting: the password and the tick are asked for
    wrong = user.post(
        "/dashboard/account/delete",
        {"confirm": "yes", "password": "nope"},
        page="/dashboard/account",
    )
    assert wrong.status_code == 400 and "The password is wrong" in wrong.text
    unticked = user.post(
        "/dashboard/account/delete", {"password": kit.PASSWORD}, page="/dashboard/account"
    )
    assert unticked.status_code == 400
    other_session = kit.client(router)
    assert other_session.login("sus@example.com", kit.PASSWORD).status_code == 303
    gone = user.post(
        "/dashboard/account/delete",
        {"confirm": "yes", "password": kit.PASSWORD},
        page="/dashboard/account",
    )
    assert gone.status_code == 303 and "deleted" in gone.headers["location"]
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-x", messages=hello)
    assert other_session.get("/dashboard/keys").status_code == 303  # every session ended
    answer = kit.client(router).login("sus@example.com", kit.PASSWORD)
    assert answer.status_code == 400
    assert kit.query(
        router, "SELECT COUNT(*) FROM dashboard_sessions WHERE user_id = ?", (user_id,)
    ) == [(0,)]


def test_byok_keys_are_saved_replaced_removed_and_never_shown(kit, router: RouterServer) -> None:
    user = signed_up(kit, router, "byok@example.com")
    provider_key = "sk-my-own-provider-key-123"
    answer = user.post("/dashboard/byok", {"provider": "up", "key": provider_key})
    assert answer.status_code == 303
    page = user.get("/dashboard/byok").text
    assert "Your provider key is saved" not in page  # the notice is on the redirect target
    assert provider_key not in page and '<span class="tag">saved</span>' in page
    assert provider_key not in user.get(answer.headers["location"]).text
    replaced = user.post("/dashboard/byok", {"provider": "up", "key": "sk-another-key-456"})
    assert replaced.status_code == 303
    [(ciphertext,)] = kit.query(
        router,
        "SELECT b.ciphertext FROM byok_keys b JOIN users u ON u.id = b.user_id WHERE u.email = ?",
        ("byok@example.com",),
    )
    assert "sk-another" not in ciphertext
    unknown = user.post("/dashboard/byok", {"provider": "nope", "key": "sk-x"})
    assert unknown.status_code == 400 and "unknown provider" in unknown.text.lower()
    assert user.post("/dashboard/byok/up/remove", {}, page="/dashboard/byok").status_code == 303
    again = user.post("/dashboard/byok/up/remove", {}, page="/dashboard/byok")
    assert again.status_code == 404
    mine = "SELECT COUNT(*) FROM byok_keys b JOIN users u ON u.id = b.user_id WHERE u.email = ?"
    assert kit.query(router, mine, ("byok@example.com",)) == [(0,)]


def test_admin_grants_credits_and_sees_recent_errors(kit, router: RouterServer) -> None:
    user = signed_up(kit, router, "granted@example.com")
    key = user.create_key()
    [(user_id,)] = kit.query(router, "SELECT id FROM users WHERE email = 'granted@example.com'")
    # an admin user (not only an operator key) reaches the admin pages
    kit.cli(
        router,
        "users",
        "add",
        "boss@example.com",
        "--admin",
        "--password-stdin",
        stdin=kit.PASSWORD,
    )
    boss = kit.client(router)
    assert boss.login("boss@example.com", kit.PASSWORD).status_code == 303
    assert 'href="/dashboard/admin"' in boss.get("/dashboard").text
    with pytest.raises(openai.APIStatusError) as refused:
        kit.sdk(router, key).chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "no credits"}]
        )
    assert refused.value.status_code == 402
    operator = kit.client(router)
    operator.post("/dashboard/operator", {"key": kit.OPERATOR})
    bad = operator.post(
        f"/dashboard/admin/users/{user_id}/grant", {"amount": "-3"}, page="/dashboard/admin"
    )
    assert bad.status_code == 400 and "positive" in bad.text
    answer = operator.post(
        f"/dashboard/admin/users/{user_id}/grant",
        {"amount": "2.25", "note": "welcome"},
        page="/dashboard/admin",
    )
    assert answer.status_code == 303
    assert "$2.25" in user.get("/dashboard/credits").text
    listing = operator.get("/dashboard/admin", q="granted@").text
    assert "granted@example.com" in listing and "$2.25" in listing
    assert "boss@example.com" not in listing  # the search narrows
    with pytest.raises(openai.InternalServerError):
        kit.sdk(router, key).chat.completions.create(
            model="broken", messages=[{"role": "user", "content": "fail"}]
        )
    errors = operator.get("/dashboard/admin/errors").text
    assert "insufficient_credits" in errors and "broken" in errors and "502" in errors
    # an operator-key session has no account pages
    assert operator.get("/dashboard/keys").headers["location"] == "/dashboard/admin"
    assert "granted@example.com" in boss.get("/dashboard/admin").text


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.labels: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.inputs.append(found)
        if tag == "label" and found.get("for"):
            self.labels.add(found["for"])  # type: ignore[arg-type]


def test_every_input_on_every_page_has_a_label(kit, router: RouterServer) -> None:
    user = signed_up(kit, router, "labels@example.com")
    user.create_key("one")
    pages = [
        "/dashboard",
        "/dashboard/keys",
        "/dashboard/credits",
        "/dashboard/usage",
        "/dashboard/byok",
        "/dashboard/account",
        "/dashboard/terms",
    ]
    operator = kit.client(router)
    public = ["/dashboard/login", "/dashboard/signup", "/dashboard/operator"]
    operator.post("/dashboard/operator", {"key": kit.OPERATOR})
    with_inputs = set()
    for client, paths in (
        (user, pages),
        (kit.client(router), public),
        (operator, ["/dashboard/admin", "/dashboard/admin/errors"]),
    ):
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert '<html lang="en">' in answer.text and 'name="viewport"' in answer.text
            parser = _Inputs()
            parser.feed(answer.text)
            for field in parser.inputs:
                assert field.get("id") in parser.labels, (path, field)
                with_inputs.add(path)
    # the pages with a form whatever other tests did before (a total count of inputs grew with
    # the users other tests had made: alone, this test saw too few)
    assert with_inputs >= {
        "/dashboard/keys",
        "/dashboard/usage",
        "/dashboard/byok",
        "/dashboard/account",
        *public,
        "/dashboard/admin",
    }


def test_a_new_terms_version_asks_signed_in_users_to_accept_it(
    kit, tmp_path_factory: pytest.TempPathFactory, fake
) -> None:
    workdir = tmp_path_factory.mktemp("terms")
    first = kit.start(workdir, fake.base_url)
    try:
        user = kit.client(first)
        assert user.signup("terms@example.com", kit.PASSWORD, terms="v1").status_code == 303
        assert "terms of service changed" not in user.get("/dashboard").text
        cookie = user.http.cookies["lmr_session"]
    finally:
        first.stop()
    # the operator publishes version 2, now runs behind a TLS proxy, and closes sign-up
    extra = {"trust_forwarded": True, "allow_signup": False}
    second = kit.start(workdir, fake.base_url, terms_version="v2", dashboard=extra)
    try:
        user = kit.client(second)
        user.http.cookies.set("lmr_session", cookie, path="/dashboard")  # still signed in
        home = user.get("/dashboard").text
        assert "The terms of service changed (version v2)" in home
        terms = user.get("/dashboard/terms").text
        assert "Use the router kindly." in terms and "I accept version v2" in terms
        assert "kept for 30 days" in terms  # what stored Responses keep, [responses] store_days
        stale = user.post("/dashboard/terms", {"version": "v1"}, page="/dashboard/terms")
        assert stale.headers["location"] == "/dashboard/terms"  # not the version shown now
        assert user.post("/dashboard/terms", {"version": "v2"}).status_code == 303
        assert "terms of service changed" not in user.get("/dashboard").text
        accepted = kit.query(
            second,
            "SELECT t.version FROM dashboard_terms t JOIN users u ON u.id = t.user_id "
            "WHERE u.email = 'terms@example.com' ORDER BY t.version",
        )
        assert accepted == [("v1",), ("v2",)]
        # behind the proxy, https requests get a Secure cookie
        proxied = kit.client(second)
        proxied.http.headers["x-forwarded-proto"] = "https"
        form = proxied.get("/dashboard/login")
        assert "Secure" in form.headers["set-cookie"]
        # (httpx keeps Secure cookies from a plain-http server: hand it over as a browser would)
        answer = proxied.http.post(
            "/dashboard/login",
            data={
                "email": "terms@example.com",
                "password": kit.PASSWORD,
                "csrf": re.search(r'name="csrf" value="([^"]+)"', form.text).group(1),
            },
            headers={"origin": second.url, "cookie": f"lmr_pre={form.cookies['lmr_pre']}"},
        )
        assert answer.status_code == 303 and "Secure" in answer.headers["set-cookie"]
        # sign-up is closed: the form says so, and a post is refused
        newcomer = kit.client(second)
        assert "Sign-up is closed" in newcomer.get("/dashboard/signup").text
        assert 'href="/dashboard/signup"' not in newcomer.get("/dashboard/login").text
        closed = newcomer.post(
            "/dashboard/signup",
            {
                "email": "late@example.com",
                "password": kit.PASSWORD,
                "password2": kit.PASSWORD,
                "terms": "v2",
            },
            page="/dashboard/login",
        )
        assert closed.status_code == 403 and "Sign-up is closed" in closed.text
        assert kit.query(second, "SELECT COUNT(*) FROM users WHERE email = 'late@example.com'") == [
            (0,)
        ]
    finally:
        second.stop()


def test_no_buy_form_while_stripe_has_no_secret_key(kit, router: RouterServer) -> None:
    user = signed_up(kit, router, "nobuy@example.com")
    page = user.get("/dashboard/credits").text
    assert "Buy credits" not in page and "No credits yet" in page
    answer = user.post("/dashboard/credits/buy", {"amount": "20"}, page="/dashboard/credits")
    assert answer.status_code == 404 and "not offered" in answer.text


@pytest.mark.parametrize(
    "params",
    [
        {"start": "0001-01-01", "end": "9999-12-31"},
        {"start": "2025-02-30", "end": "yesterday"},
        {"start": "2030-01-01", "end": "2020-01-01"},
        {"after": "not|a cursor", "key": "' OR 1=1 --", "model": "<script>x</script>"},
        {"after": "2025-01-01T00:00:00.000000Z|zzz", "limit": "5000"},
    ],
)
def test_odd_usage_filters_get_a_page_not_an_error(kit, router: RouterServer, params) -> None:
    user = kit.client(router)
    user.signup(f"odd{abs(hash(str(params)))}@example.com", kit.PASSWORD, terms="v1")
    page = user.get("/dashboard/usage", **params)
    assert page.status_code == 200
    assert "<script>" not in page.text  # escaped, as every value from the URL


FIELDS = ("name", "provider", "key", "amount", "note", "password", "confirm", "version", "next")
POSTS = (
    "/dashboard/keys",
    "/dashboard/byok",
    "/dashboard/byok/up/remove",
    "/dashboard/credits/buy",
    "/dashboard/account/delete",
    "/dashboard/terms",
    "/dashboard/keys/nope/revoke",
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(POSTS),
    form=st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=300), max_size=5),
)
def test_any_form_gets_an_answer_never_a_server_error(
    kit, router: RouterServer, path: str, form: dict[str, str]
) -> None:
    if router.url not in _fuzzing:
        client = signed_up(kit, router, "fuzz@example.com")
        _fuzzing[router.url] = (client, client.csrf("/dashboard/keys"))
    client, token = _fuzzing[router.url]
    answer = client.post(path, form, csrf=token)
    assert answer.status_code in (200, 303, 400, 404, 429), (path, form, answer.text[:300])
    assert client.get("/dashboard/keys").status_code == 200  # still signed in: never deleted


_fuzzing: dict[str, tuple[DashboardClient, str]] = {}  # per server: a signed-in client
