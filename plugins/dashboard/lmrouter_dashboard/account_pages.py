"""A user's own things: the overview, API keys, their provider keys (BYOK), deleting the
account. Every query names the signed-in user: another user's key id is "no such key"."""

from __future__ import annotations

from starlette.responses import Response

from lmrouter_accounts import service as accounts
from lmrouter_accounts.plugin import box_for
from lmrouter_credits import service as credits
from lmrouter_dashboard.money_pages import stripe_checkout
from lmrouter_dashboard.web import BASE, Site, Visit


async def home(site: Site, visit: Visit) -> Response:
    if visit.session is not None and visit.session.user_id is None:
        return visit.redirect(f"{BASE}/admin")
    keys = await accounts.list_keys(site.store, visit.user_id)
    balance = await credits.balance(site.store, visit.user_id)
    return visit.render(
        "home.html",
        balance=balance,
        active_keys=sum(1 for k in keys if k.revoked_at is None),
        buying=stripe_checkout(site) is not None,
    )


# -- API keys --------------------------------------------------------------------------------


async def _keys_page(
    site: Site,
    visit: Visit,
    *,
    status: int = 200,
    new: accounts.NewKey | None = None,
    error: str | None = None,
) -> Response:
    keys = await accounts.list_keys(site.store, visit.user_id)
    keys.reverse()  # newest first
    return visit.render("keys.html", status=status, keys=keys, new=new, error=error)


async def keys(site: Site, visit: Visit) -> Response:
    return await _keys_page(site, visit)


async def create_key(site: Site, visit: Visit) -> Response:
    try:
        new = await accounts.create_key(site.store, visit.user_id, name=visit.form.get("name", ""))
    except accounts.AccountsError as exc:
        return await _keys_page(site, visit, status=400, error=str(exc).capitalize() + ".")
    # Shown on this answer only: the secret is not stored anywhere it could be shown from again.
    return await _keys_page(site, visit, new=new)


async def not_found(site: Site, visit: Visit) -> Response:
    if not visit.request.path_params["missing"]:  # /dashboard/
        return visit.redirect(BASE)
    return visit.render(
        "error.html",
        status=404,
        heading="Page not found",
        message="There is no page at this address.",
    )


async def revoke_key(site: Site, visit: Visit) -> Response:
    key_id = visit.request.path_params["key_id"]
    if visit.form.get("confirm") != "yes":  # one click asks; the second revokes
        key = await accounts.get_key(site.store, key_id)
        if key is None or key.user_id != visit.user_id:
            return visit.render("error.html", status=404, message="There is no such key.")
        return visit.render(
            "confirm.html",
            question=f"Revoke the key {key.name or key.prefix + '…'}?",
            consequence="Requests with it get 401 at once. A revoked key cannot be restored.",
            action=f"{BASE}/keys/{key.id}/revoke",
            button="Revoke the key",
            back=f"{BASE}/keys",
        )
    try:
        await accounts.revoke_key(site.store, key_id, user_id=visit.user_id)
    except accounts.AccountsError:
        return visit.render("error.html", status=404, message="There is no such key.")
    return visit.redirect(f"{BASE}/keys?done=revoked")


# -- BYOK ------------------------------------------------------------------------------------


async def _byok_page(
    site: Site, visit: Visit, *, status: int = 200, error: str | None = None
) -> Response:
    stored = set(await accounts.byok_providers(site.store, visit.user_id))
    allowed = accounts.byok_allowed(site.gateway.config.providers)
    return visit.render(
        "byok.html",
        status=status,
        # a key stored for a provider that no longer accepts them is listed, to be removed
        providers=sorted(stored.union(allowed)),
        allowed=set(allowed),
        stored=stored,
        enabled=box_for(site.gateway.config) is not None,
        error=error,
    )


async def byok(site: Site, visit: Visit) -> Response:
    return await _byok_page(site, visit)


async def set_byok(site: Site, visit: Visit) -> Response:
    provider = visit.form.get("provider", "")
    try:
        await accounts.set_byok(
            site.store,
            box_for(site.gateway.config),
            visit.user_id,
            provider,
            visit.form.get("key", ""),
            providers=site.gateway.config.providers,
        )
    except accounts.AccountsError as exc:
        # The message names the problem, never the key.
        return await _byok_page(site, visit, status=400, error=str(exc).capitalize() + ".")
    return visit.redirect(f"{BASE}/byok?done=byok_saved")


async def remove_byok(site: Site, visit: Visit) -> Response:
    try:
        await accounts.remove_byok(site.store, visit.user_id, visit.request.path_params["provider"])
    except accounts.AccountsError as exc:
        return await _byok_page(site, visit, status=404, error=str(exc).capitalize() + ".")
    return visit.redirect(f"{BASE}/byok?done=byok_removed")


# -- the account -----------------------------------------------------------------------------


async def account(site: Site, visit: Visit) -> Response:
    user = await accounts.get_user(site.store, visit.user_id)
    return visit.render("account.html", user=user, error=None)


async def delete_account(site: Site, visit: Visit) -> Response:
    assert visit.session is not None and visit.session.email is not None
    # the password check counts towards the sign-in throttle: a stolen session cannot guess
    throttled = f"email:{visit.session.email}"
    async with site.checking.hold(throttled):  # counted before the check, as a sign-in is
        if await site.email_throttle.attempt(throttled):
            return visit.render(
                "account.html",
                status=429,
                user=await accounts.get_user(site.store, visit.user_id),
                error="Too many wrong passwords. Try again later.",
            )
        user = await accounts.verify_password(
            site.store, visit.session.email, visit.form.get("password", "")
        )
        if user is not None:
            await site.email_throttle.succeeded(throttled)
    error = (
        "The password is wrong: the account is not deleted."
        if user is None or user.id != visit.user_id
        else "Tick the box to confirm: the account is not deleted."
        if visit.form.get("confirm") != "yes"
        else None
    )
    if error:
        return visit.render(
            "account.html",
            status=400,
            user=await accounts.get_user(site.store, visit.user_id),
            error=error,
        )
    # every key revoked at once; other plugins' data for the user erased
    await accounts.delete_user(site.store, visit.user_id, site.gateway.pm)
    await site.sessions.end_user(visit.user_id)
    response = visit.redirect(f"{BASE}/login?done=deleted")
    visit.sign_out(response)
    return response
