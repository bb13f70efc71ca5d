"""Operators' pages (an admin user, or anyone signed in with an operator key): users with their
balances, suspend / resume, grant credits, and the recent failed requests."""

from __future__ import annotations

from starlette.responses import Response

from lmrouter import parse_usd
from lmrouter_accounts import service as accounts
from lmrouter_credits import service as credits
from lmrouter_dashboard.web import BASE, Site, Visit

MAX_LISTED = 500


async def _users_page(
    site: Site, visit: Visit, *, status: int = 200, error: str | None = None
) -> Response:
    search = visit.request.query_params.get("q", "").strip()
    users = await accounts.list_users(
        site.store, include_deleted=False, email_contains=search or None, limit=MAX_LISTED + 1
    )
    balances = await credits.balances(site.store, [u.id for u in users])
    return visit.render(
        "admin.html",
        status=status,
        users=users[:MAX_LISTED],
        more=len(users) > MAX_LISTED,
        balances=balances,
        search=search,
        error=error,
    )


async def users(site: Site, visit: Visit) -> Response:
    return await _users_page(site, visit)


async def act(site: Site, visit: Visit) -> Response:
    user_id = visit.request.path_params["user_id"]
    action = visit.request.path_params["action"]
    user = await accounts.get_user(site.store, user_id)
    if user is None or user.status == "deleted":
        return visit.render("error.html", status=404, message="There is no such user.")
    if action == "suspend":
        if visit.session is not None and visit.session.user_id == user_id:
            return await _users_page(
                site, visit, status=400, error="You cannot suspend your own account."
            )
        if visit.form.get("confirm") != "yes":  # one click asks; the second suspends
            return visit.render(
                "confirm.html",
                question=f"Suspend {user.email}?",
                consequence="Their keys get 403 at once and they are signed out, until you "
                "resume the account.",
                action=f"{BASE}/admin/users/{user_id}/suspend",
                button="Suspend",
                back=f"{BASE}/admin",
            )
        await accounts.suspend_user(site.store, user_id)
        await site.sessions.end_user(user_id)
        return visit.redirect(f"{BASE}/admin?done=suspended")
    if action == "resume":
        await accounts.resume_user(site.store, user_id)
        return visit.redirect(f"{BASE}/admin?done=resumed")
    if action == "grant":
        try:
            amount = parse_usd(visit.form.get("amount", ""))
            if amount <= 0:
                raise ValueError("a grant must be a positive amount")
        except ValueError as exc:
            return await _users_page(site, visit, status=400, error=f"Amount: {exc}.")
        note = visit.form.get("note", "").strip()[:200] or None
        await credits.grant(
            site.store,
            user_id,
            amount,
            note=note,
            expire_after_days=site.gateway.config.section("credits").expire_after_days,
        )
        return visit.redirect(f"{BASE}/admin?done=granted")
    return visit.render("error.html", status=404, message="There is no such action.")


async def errors(site: Site, visit: Visit) -> Response:
    failures = site.errors.newest_first()
    callers: dict[str, str] = {}  # "user:<id>" → the e-mail address people know them by
    for principal in {f.principal for f in failures if f.principal.startswith("user:")}:
        user = await accounts.get_user(site.store, principal.removeprefix("user:"))
        callers[principal] = (user.email if user else None) or "(deleted user)"
    return visit.render("errors.html", failures=failures, callers=callers)
