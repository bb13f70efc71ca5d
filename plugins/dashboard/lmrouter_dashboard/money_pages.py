"""Credits (balance, lots, buying through Stripe Checkout) and usage (table, filters, charts).

Reads go to the database directly, not through the credits plugin's writer: a page never waits
for a batch, and a request's charge shows up within ``[credits] flush_interval``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any

from starlette.responses import Response

from lmrouter_accounts import service as accounts
from lmrouter_credits import clock
from lmrouter_credits import service as credits
from lmrouter_dashboard import chart
from lmrouter_dashboard.web import BASE, Site, Visit

PAGE_ROWS = 50
DEFAULT_DAYS = 30
MAX_DAYS = 366
EXAMPLE_USD = Decimal(20)  # the top-up whose fee the buy form shows as an example


def stripe_checkout(site: Site) -> ModuleType | None:
    """``lmrouter_stripe.checkout`` when the stripe plugin is loaded and has a secret key, else
    None: the dashboard works without it (no buy form)."""
    if site.gateway.pm.get_plugin("stripe") is None:
        return None
    try:
        from lmrouter_stripe import checkout  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not site.gateway.config.section("stripe").checkout_enabled:
        return None
    return checkout


# -- credits ---------------------------------------------------------------------------------


async def _credits_page(
    site: Site, visit: Visit, *, status: int = 200, error: str | None = None, amount: str = ""
) -> Response:
    summary = await credits.summary(site.store, visit.user_id)
    checkout = stripe_checkout(site)
    buy: dict[str, Any] | None = None
    if checkout is not None:
        settings = site.gateway.config.section("stripe")
        example = min(max(EXAMPLE_USD, settings.min_usd), settings.max_usd)
        buy = {
            "min": settings.min_usd,
            "max": settings.max_usd,
            "fee_percent": settings.fee_percent,
            "fee_fixed": settings.fee_fixed_usd,
            "example": checkout.quote(settings, example),
            "expire_days": site.gateway.config.section("credits").expire_after_days,
        }
    outcome = await _checkout_outcome(site, visit, summary.lots)
    return visit.render(
        "credits.html",
        status=status,
        balance=summary.balance_pico,
        lots=summary.lots,
        now_iso=clock.to_iso(summary.at_us),
        buy=buy,
        outcome=outcome,
        error=error,
        amount=amount,
    )


async def _checkout_outcome(site: Site, visit: Visit, lots: list[credits.Lot]) -> str | None:
    """What to say on the way back from Stripe Checkout."""
    params = visit.request.query_params
    if params.get("checkout") != "success" or stripe_checkout(site) is None:
        return None  # nothing is bought here without Stripe, whatever the link says
    session_id = params.get("session_id", "")
    for lot in lots:  # only this user's lots: another user's session id finds nothing
        if session_id and lot.source_ref == session_id:
            return f"Payment received: {chart.usd_label(lot.amount_pico)} of credits added."
    return "Payment received. Your credits appear here once Stripe confirms it: reload shortly."


async def credits_page(site: Site, visit: Visit) -> Response:
    return await _credits_page(site, visit)


async def buy(site: Site, visit: Visit) -> Response:
    checkout = stripe_checkout(site)
    if checkout is None:
        return visit.render("error.html", status=404, message="Buying credits is not offered.")
    text = visit.form.get("amount", "").strip().lstrip("$")
    try:
        amount = Decimal(text)  # the stripe plugin checks the range and the cents
    except InvalidOperation:
        return await _credits_page(
            site,
            visit,
            status=400,
            error="Enter an amount in dollars, like 20 or 12.50.",
            amount=text,
        )
    back = f"{visit.origin}{BASE}/credits"
    try:
        made = await checkout.create_checkout(
            site.gateway,
            visit.user_id,
            amount,
            success_url=f"{back}?checkout=success&session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{back}?done=cancelled",
        )
    except checkout.CheckoutError as exc:
        message = exc.message.replace("`amount_usd`", "the amount")
        return await _credits_page(
            site,
            visit,
            status=exc.status,
            error=message[:1].upper() + message[1:] + ".",
            amount=text,
        )
    return visit.redirect(made.url)


# -- usage -----------------------------------------------------------------------------------


_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(8999, 12, 31)  # the credits clock's range


def _day(text: str | None, default: date) -> tuple[date, bool]:
    if not text:
        return default, True
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return default, False
    return (day, True) if _FIRST_DAY <= day <= _LAST_DAY else (default, False)


def _iso(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000000Z"


def _cursor(text: str | None) -> tuple[str, str] | None:
    if not text or "|" not in text:
        return None
    created_at, _, usage_id = text.partition("|")
    try:
        clock.from_iso(created_at)
    except ValueError:
        return None
    return created_at, usage_id


async def usage(site: Site, visit: Visit) -> Response:
    params = visit.request.query_params
    today = datetime.now(UTC).date()
    end, end_ok = _day(params.get("end"), today)
    start, start_ok = _day(params.get("start"), end - timedelta(days=DEFAULT_DAYS - 1))
    error = None if start_ok and end_ok else "Dates are written YYYY-MM-DD."
    if start > end:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
        error = f"At most {MAX_DAYS} days at once: showing the last {MAX_DAYS} of the range."
    model = params.get("model") or None
    key_id = params.get("key") or None
    query = credits.UsageQuery(
        user_id=visit.user_id,  # every query is the signed-in user's, whatever else is asked
        start=_iso(start),
        end=_iso(end + timedelta(days=1)),
        model=model,
        key_id=key_id,
        after=_cursor(params.get("after")),
        limit=PAGE_ROWS,
    )
    rows = await credits.usage_rows(site.store, query)
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    daily = await credits.daily_usage(site.store, query)
    keys = await accounts.list_keys(site.store, visit.user_id)
    days = chart.days_between(start, end)
    palette, where = chart.series(daily)
    chosen = {model} if model is not None else set()
    models = sorted(set(site.gateway.models) | {d.model for d in daily} | chosen)
    filters = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "model": model or "",
        "key": key_id or "",
    }
    return visit.render(
        "usage.html",
        error=error,
        rows=rows,
        next_after=f"{rows[-1]['created_at']}|{rows[-1]['id']}" if more else None,
        daily=daily,
        totals=_totals(daily),
        spend_svg=chart.svg(
            "Daily spend by model", days, daily, palette, where, measure="charged_pico"
        ),
        tokens_svg=chart.svg(
            "Daily tokens by model", days, daily, palette, where, measure="tokens"
        ),
        palette=palette,
        keys=keys,
        key_names={k.id: k.name or k.prefix for k in keys},
        models=models,
        filters=filters,
        usd=chart.usd_label,
    )


def _totals(daily: list[credits.DailyUsage]) -> dict[str, int]:
    return {
        "requests": sum(d.requests for d in daily),
        "prompt_tokens": sum(d.prompt_tokens for d in daily),
        "completion_tokens": sum(d.completion_tokens for d in daily),
        "charged_pico": sum(d.charged_pico for d in daily),
    }
