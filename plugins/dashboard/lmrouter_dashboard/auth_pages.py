"""Signing up, in and out (with an account or an operator key), and the operator's terms."""

from __future__ import annotations

from starlette.responses import Response

from lmrouter import parse_usd
from lmrouter_accounts import service as accounts
from lmrouter_credits import clock
from lmrouter_credits import service as credits
from lmrouter_dashboard import policy
from lmrouter_dashboard.web import BASE, Site, Visit

_WRONG = "That e-mail address and password do not match an account."


def _next(visit: Visit) -> str:
    """Where to go after signing in: a dashboard path from ``?next=``, never another site."""
    target = visit.form.get("next") or visit.request.query_params.get("next") or BASE
    if target.startswith(BASE) and not target.startswith("//") and "\\" not in target:
        return target
    return BASE


def _too_many(
    visit: Visit, template: str, seconds: int, what: str = "failed attempts", **context: object
) -> Response:
    wait = f"{seconds} seconds" if seconds < 90 else f"{round(seconds / 60)} minutes"
    response = visit.render(
        template, status=429, error=f"Too many {what}. Try again in {wait}.", **context
    )
    response.headers["Retry-After"] = str(seconds)
    return response


async def _signed_in(visit: Visit, target: str, **session: str | None) -> Response:
    token = await visit.site.sessions.start(**session)
    response = visit.redirect(target)
    visit.sign_in(response, token)
    return response


async def _accept(site: Site, user_id: str) -> None:
    await site.store.execute(
        "INSERT INTO dashboard_terms (user_id, version, accepted_at) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id, version) DO NOTHING",
        (user_id, site.settings.terms_version, clock.to_iso(clock.now_us())),
    )


# -- sign-up ---------------------------------------------------------------------------------


_CLOSED = "Sign-up is closed on this router: ask its operator for an account."


async def signup_form(site: Site, visit: Visit) -> Response:
    if visit.session is not None:
        return visit.redirect(BASE)
    if not site.settings.allow_signup:
        return visit.render("error.html", status=403, message=_CLOSED)
    return visit.render("signup.html", email="", error=None, min_chars=_min(site))


def _min(site: Site) -> int:
    return site.settings.min_password_chars


async def signup(site: Site, visit: Visit) -> Response:
    if not site.settings.allow_signup:
        return visit.render("error.html", status=403, message=_CLOSED)
    email = visit.form.get("email", "").strip()
    password = visit.form.get("password", "")

    def again(error: str) -> Response:
        return visit.render(
            "signup.html", status=400, email=email, error=error, min_chars=_min(site)
        )

    try:
        email = accounts.normalize_email(email)
    except accounts.AccountsError:
        return again("Enter an e-mail address, like name@example.com.")
    problem = policy.problem(password, email, min_chars=_min(site))
    if problem:
        return again(problem)
    if password != visit.form.get("password2", ""):
        return again("The two passwords differ.")
    if site.settings.terms_version and visit.form.get("terms") != site.settings.terms_version:
        return again("Accepting the terms is needed to sign up.")
    # Every account costs a password hash and a row: a client address gets a few an hour.
    wait = await site.signup_throttle.attempt(f"signup:{visit.client_ip}")
    if wait:
        what = "sign-ups from your address"
        return _too_many(visit, "signup.html", wait, what, email=email, min_chars=_min(site))
    try:
        user = await accounts.create_user(site.store, email, password=password)
    except accounts.AccountsError:
        return again("An account with this e-mail address exists already: sign in instead.")
    if site.settings.terms_version:
        await _accept(site, user.id)
    await _signup_grant(site, user.id)
    return await _signed_in(visit, f"{BASE}/keys", user_id=user.id)


async def _signup_grant(site: Site, user_id: str) -> None:
    """``[credits] signup_grant_usd``: a lot like any other grant, with its expiry, so a new
    user can try the router before buying (or when buying is off)."""
    settings = site.gateway.config.section("credits")
    if settings.signup_grant_usd > 0:
        await credits.grant(
            site.store,
            user_id,
            parse_usd(f"{settings.signup_grant_usd:f}"),
            note="sign-up grant",
            expire_after_days=settings.expire_after_days,
        )


# -- sign-in and out -------------------------------------------------------------------------


async def login_form(site: Site, visit: Visit) -> Response:
    if visit.session is not None:
        return visit.redirect(BASE)
    return visit.render("login.html", email="", error=None, next=_next(visit))


async def login(site: Site, visit: Visit) -> Response:
    email = visit.form.get("email", "").strip().lower()
    password = visit.form.get("password", "")
    by_email, by_ip = f"email:{email}", f"ip:{visit.client_ip}"
    context = {"email": email, "next": _next(visit)}
    async with site.checking.hold(by_email):  # one password check per account at a time
        wait = max(
            await site.email_throttle.retry_after(by_email),
            await site.ip_throttle.retry_after(by_ip),
        )
        if not wait:
            # Counted before the check, forgiven if it passes: guesses sent at once (to any
            # host) cannot all slip past the throttle while the first hashes are computed. An
            # attempt refused here lost a race with another process that locked the key.
            wait = max(
                await site.email_throttle.attempt(by_email),
                await site.ip_throttle.attempt(by_ip),
            )
        if wait:
            return _too_many(visit, "login.html", wait, **context)
        user = await accounts.verify_password(site.store, email, password)
        if user is None:
            return visit.render("login.html", status=400, error=_WRONG, **context)
        await site.email_throttle.succeeded(by_email)
        await site.ip_throttle.forgive(by_ip)
    if user.status != "active":
        return visit.render(
            "login.html",
            status=403,
            error="This account is suspended. Contact the operator of this router.",
            **context,
        )
    return await _signed_in(visit, _next(visit), user_id=user.id)


async def operator_form(site: Site, visit: Visit) -> Response:
    return visit.render("operator.html", error=None)


async def operator_login(site: Site, visit: Visit) -> Response:
    by_ip = f"operator:{visit.client_ip}"
    wait = await site.ip_throttle.retry_after(by_ip)
    if wait:
        return _too_many(visit, "operator.html", wait)
    key = visit.form.get("key", "").strip()
    operator = site.sessions.operator_id(key)
    if not key or operator not in site.sessions.operator_digests:
        await site.ip_throttle.failed(by_ip)
        return visit.render("operator.html", status=400, error="That is not an operator key.")
    return await _signed_in(visit, f"{BASE}/admin", operator=operator)


async def logout(site: Site, visit: Visit) -> Response:
    if visit.session is not None:
        await site.sessions.end(visit.session.token)
    response = visit.redirect(f"{BASE}/login?done=signed_out")
    visit.sign_out(response)
    return response


# -- terms -----------------------------------------------------------------------------------


async def terms(site: Site, visit: Visit) -> Response:
    settings = site.settings
    if not settings.terms_version:
        return visit.render("error.html", status=404, message="This router publishes no terms.")
    pending = visit.session is not None and not visit.session.terms_ok
    return visit.render(
        "terms.html", text=site.terms_text, pending=pending, kept_days=_responses_days(site)
    )


def _responses_days(site: Site) -> int | None:
    """How long stored Responses are kept (``[responses] store_days``), when a plugin keeps
    them: the terms page says so."""
    sections = site.gateway.config.sections
    section = sections.get("responses")
    days = getattr(section, "store_days", None)
    return days if isinstance(days, int) else None


async def accept_terms(site: Site, visit: Visit) -> Response:
    if site.settings.terms_version and visit.form.get("version") == site.settings.terms_version:
        await _accept(site, visit.user_id)
        return visit.redirect(f"{BASE}?done=terms")
    return visit.redirect(f"{BASE}/terms")  # a newer version was published meanwhile
