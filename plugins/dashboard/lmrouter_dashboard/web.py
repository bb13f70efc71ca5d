"""What every dashboard page shares: the site's state, the visit (who is signed in, the CSRF
token, the parsed form), rendering, and the checks every request passes through.

Each handler is ``async def handler(site, visit) -> Response``, registered with :func:`route`
and the access it needs. Before a handler runs: the session is looked up (one query), access is
checked (signed-out visitors go to the sign-in page), and every POST is refused with 403 unless
its ``Origin`` (when sent) is this site and its form carries the right CSRF token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
import structlog
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from lmrouter import StorageError, format_usd
from lmrouter_dashboard.throttle import OneAtATime

if TYPE_CHECKING:
    from starlette.requests import Request

    from lmrouter import Gateway
    from lmrouter_dashboard.config import DashboardConfig
    from lmrouter_dashboard.recent import RecentErrors
    from lmrouter_dashboard.sessions import Session, Sessions
    from lmrouter_dashboard.throttle import StoredThrottle

log = structlog.get_logger("lmrouter.dashboard")

BASE = "/dashboard"
SESSION_COOKIE = "lmr_session"
PRE_COOKIE = "lmr_pre"  # the pre-session CSRF secret of the sign-in and sign-up forms
MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"

# What a page says after a redirect (?done=…): fixed texts, so a link cannot put words on it.
NOTICES = {
    "signed_out": "You are signed out.",
    "deleted": "Your account is deleted. Its keys no longer work.",
    "revoked": "The key is revoked: requests with it now get 401.",
    "byok_saved": "Your provider key is saved. It will not be shown again.",
    "byok_removed": "Your provider key is removed.",
    "terms": "Thank you: the terms are accepted.",
    "suspended": "The user is suspended: their keys get 403 and their sessions ended.",
    "resumed": "The user is active again.",
    "granted": "Credits granted.",
    "cancelled": "The payment was cancelled; nothing was charged.",
}

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def when(iso: str | None) -> str:
    """``2025-01-31T09:30:00.000000Z`` (or ``…+00:00``) as ``2025-01-31 09:30 UTC``."""
    if not iso:
        return "never"
    return f"{iso[:10]} {iso[11:16]} UTC"


Access = Literal["public", "user", "admin", "signed_in"]


@dataclass
class Site:
    """The dashboard's state in one worker, made at start-up."""

    gateway: Gateway
    settings: DashboardConfig
    sessions: Sessions
    email_throttle: StoredThrottle
    ip_throttle: StoredThrottle
    signup_throttle: StoredThrottle
    errors: RecentErrors
    terms_text: str | None
    checking: OneAtATime = field(default_factory=OneAtATime)  # password checks per account
    env: jinja2.Environment = field(init=False)
    css: bytes = field(init=False)
    css_version: str = field(init=False)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("lmrouter_dashboard", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["usd"] = lambda pico: "$" + format_usd(pico)
        self.env.filters["when"] = when
        self.env.filters["epoch"] = lambda at: (
            f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
        self.css = resources.files(__package__).joinpath("static/dashboard.css").read_bytes()
        self.css_version = hashlib.sha256(self.css).hexdigest()[:10]

    @property
    def store(self) -> Any:
        return self.gateway.store


@dataclass
class Visit:
    """One request to the dashboard, as the handlers see it."""

    site: Site
    request: Request
    session: Session | None
    pre_token: str  # the pre-session CSRF secret (from its cookie, or new)
    new_pre: bool  # the pre-session cookie must be set on the answer
    form: dict[str, str] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        assert self.session is not None and self.session.user_id is not None
        return self.session.user_id

    @property
    def csrf(self) -> str:
        sessions = self.site.sessions
        if self.session is not None:
            return sessions.csrf(self.session.token)
        return sessions.csrf(self.pre_token)

    @property
    def client_ip(self) -> str:
        if self.site.settings.trust_forwarded:
            forwarded = self.request.headers.get("x-forwarded-for", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        client = self.request.client
        return client.host if client else "unknown"

    @property
    def https(self) -> bool:
        if self.site.settings.trust_forwarded:
            proto = self.request.headers.get("x-forwarded-proto")
            if proto:
                return proto.rsplit(",", 1)[-1].strip() == "https"
        return self.request.url.scheme == "https"

    @property
    def origin(self) -> str:
        """Where users reach the router: ``[dashboard] public_url``, else this request's own."""
        if self.site.settings.public_url:
            return self.site.settings.public_url
        host = self.request.headers.get("host", "localhost")
        return f"{'https' if self.https else 'http'}://{host}"

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        settings = self.site.settings
        page = self.site.env.get_template(template).render(
            visit=self,
            session=self.session,
            csrf=self.csrf,
            support=settings.support_contact,
            support_is_url=settings.support_contact.startswith(("http://", "https://")),
            css=f"{BASE}/static/dashboard.css?v={self.site.css_version}",
            notice=NOTICES.get(self.request.query_params.get("done", "")),
            terms_notice=self.session is not None and not self.session.terms_ok,
            terms_version=settings.terms_version,
            signup_open=settings.allow_signup,
            terms_url=settings.terms_url or (f"{BASE}/terms" if settings.terms_file else ""),
            **context,
        )
        response = HTMLResponse(page, status_code=status, headers=HEADERS)
        self.finish(response)
        return response

    def redirect(self, url: str) -> Response:
        response = RedirectResponse(url, status_code=303, headers=HEADERS)
        self.finish(response)
        return response

    def finish(self, response: Response) -> None:
        if self.new_pre:
            self.set_cookie(response, PRE_COOKIE, self.pre_token, max_age=None)

    def set_cookie(self, response: Response, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=BASE,
            secure=self.https,
            httponly=True,
            samesite="lax",
        )

    def sign_in(self, response: Response, token: str) -> None:
        hours = self.site.settings.session_hours
        cookie = self.site.sessions.cookie(token)
        self.set_cookie(response, SESSION_COOKIE, cookie, max_age=hours * 3600)

    def sign_out(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=BASE, secure=self.https, httponly=True)


Handler = Callable[[Site, Visit], Awaitable[Response]]


def _same_origin(request: Request) -> bool:
    """A POST's ``Origin`` (sent by every current browser) must name this host. Without the
    header (old browsers, non-browser clients) the CSRF token alone decides."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str] | None:
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs)


def route(
    site_of: Callable[[], Site | None],
    path: str,
    handler: Handler,
    *,
    access: Access,
    methods: tuple[str, ...] = ("GET",),
) -> Route:
    """A Starlette route running ``handler`` behind the session, access and CSRF checks."""

    async def endpoint(request: Request) -> Response:
        site = site_of()
        if site is None:
            return HTMLResponse("The dashboard is starting.", status_code=503)
        try:
            return await serve(site, request)
        except StorageError as exc:  # the database is away: say so, not a 500
            log.warning("dashboard page without its database", error=str(exc))
            return HTMLResponse(
                "The dashboard cannot reach its database right now. Try again shortly.",
                status_code=503,
                headers={"Retry-After": "5"},
            )

    async def serve(site: Site, request: Request) -> Response:
        sessions = site.sessions
        session = await sessions.find(sessions.token_of(request.cookies.get(SESSION_COOKIE)))
        pre = request.cookies.get(PRE_COOKIE)
        fresh = pre is None or len(pre) != 43
        seed = secrets.token_urlsafe(32) if fresh or pre is None else pre
        visit = Visit(site, request, session, seed, fresh)
        if session is None and access != "public":
            next_path = request.url.path if request.method == "GET" else BASE
            response = visit.redirect(f"{BASE}/login?next={quote(next_path)}")
            if request.cookies.get(SESSION_COOKIE):
                visit.sign_out(response)  # a session that ended: drop its cookie
            return response
        if session is not None:
            if access == "user" and session.user_id is None:
                return visit.redirect(f"{BASE}/admin")  # operator-key sessions have no account
            if access == "admin" and not session.is_admin:
                return visit.render("error.html", status=403, message=_NOT_ADMIN)
        if request.method == "POST":
            form = await _form(request)
            token = session.token if session is not None else (None if fresh else pre)
            if (
                form is None
                or not _same_origin(request)
                or not sessions.csrf_ok(token, form.get("csrf"))
            ):
                log.info("dashboard form refused", path=request.url.path)
                return visit.render("error.html", status=403, message=_BAD_FORM)
            visit.form = form
        return await handler(site, visit)

    return Route(f"{BASE}{path}", endpoint, methods=list(methods))


_NOT_ADMIN = "This page is for the router's operators."
_BAD_FORM = (
    "This form expired or did not come from this site, so nothing was done. "
    "Go back, reload the page and try again."
)
