"""A fake of the Stripe API endpoints the plugin calls, and signed webhook deliveries, for tests
(ours and third parties': it ships with the package).

- ``POST /v1/checkout/sessions`` (form-encoded, as the official library sends it) validated like
  Stripe (API key, required and unknown parameters, integer amounts, one currency) with Stripe's
  error bodies, answering a realistic ``checkout.session``; ``GET /v1/checkout/sessions/{id}``.
- The hosted payment page at ``session["url"]``: a small HTML page whose "Pay" button (a form
  POST, so it works in a real browser) pays the session, delivers a signed
  ``checkout.session.completed`` to :attr:`FakeStripe.webhook_url` when set, and redirects
  (303) to the ``success_url`` with ``{CHECKOUT_SESSION_ID}`` filled in, as Stripe does.
- What happens later at Stripe, as events to deliver: :meth:`~FakeStripe.complete` (paid, or
  unpaid for a bank debit), :meth:`~FakeStripe.async_succeeded`, :meth:`~FakeStripe.refund`,
  :meth:`~FakeStripe.dispute`; :meth:`~FakeStripe.deliver` signs and posts one (and
  :meth:`~FakeStripe.pay` = complete + deliver).

Signatures use Stripe's scheme (:func:`sign`), written here independently of the ``stripe``
library, so a test that the plugin accepts them checks the two against each other.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import html
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from lmrouter.testing.fakeserver import FakeServer, random_alnum

__all__ = ["Behavior", "Delivery", "FakeStripe", "event", "sign"]

API_VERSION = "2026-10-28.endive"
SESSION_PARAMS = frozenset(
    {
        "mode", "line_items", "success_url", "cancel_url", "client_reference_id", "metadata",
        "payment_intent_data", "customer_email", "customer", "expand", "payment_method_types",
        "currency", "ui_mode", "expires_at", "allow_promotion_codes", "locale",
    }
)  # fmt: skip
_KEY_PART = re.compile(r"^([^\[\]]+)|\[([^\[\]]*)\]")


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header of ``payload``: ``t=…,v1=HMAC-SHA256(secret, "t.body")``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(type: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """An event shaped like Stripe's (a snapshot of ``obj``)."""
    return {
        "id": "evt_" + random_alnum(24),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": copy.deepcopy(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }


@dataclass(slots=True)
class Behavior:
    """How the API answers: ``fail_status`` makes every API call fail with that status and a
    Stripe ``api_error`` body (the pages still work)."""

    fail_status: int | None = None


@dataclass(slots=True)
class Delivery:
    """One webhook delivery: the event, and what the endpoint answered."""

    event: dict[str, Any]
    status: int
    body: bytes


class StripeError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "type": "invalid_request_error",
                "message": message,
                **({"param": param} if param else {}),
                **extra,
            }
        }


class FakeStripe(FakeServer[Behavior]):
    """``FakeStripe(api_key="sk_test_…", webhook_secret="whsec_…")``; point the plugin's
    ``[stripe] api_base`` (or ``StripeClient(base_addresses={"api": …})``) at :attr:`base_url`
    and set :attr:`webhook_url` to the router's ``/v1/billing/stripe/webhook``."""

    _behavior_type = Behavior
    _thread_name = "fake-stripe"

    def __init__(
        self,
        api_key: str | None = "sk_test_fake",
        *,
        webhook_secret: str = "whsec_fake",
        webhook_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(api_key, host=host, port=port)
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.sessions: dict[str, dict[str, Any]] = {}
        """Every Checkout Session, by id, as the API shows it."""
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        """Charges by the session id they paid."""
        self.deliveries: list[Delivery] = []

    # -- what happens at Stripe after checkout: events ------------------------------------------

    def complete(self, session_id: str, *, paid: bool = True) -> dict[str, Any]:
        """The customer finished checkout: ``checkout.session.completed``, with
        ``payment_status`` ``paid`` (a card) or ``unpaid`` (a bank debit still clearing)."""
        session = self.sessions[session_id]
        session["status"] = "complete"
        session["payment_status"] = "paid" if paid else "unpaid"
        session["payment_intent"] = session["payment_intent"] or "pi_" + random_alnum(24)
        if paid:
            self._charge(session)
        return event("checkout.session.completed", session)

    def async_succeeded(self, session_id: str) -> dict[str, Any]:
        """A delayed payment cleared: ``checkout.session.async_payment_succeeded``."""
        session = self.sessions[session_id]
        session["payment_status"] = "paid"
        self._charge(session)
        return event("checkout.session.async_payment_succeeded", session)

    def refund(self, session_id: str, amount: int | None = None) -> dict[str, Any]:
        """The operator refunded ``amount`` cents (default: all): ``charge.refunded``."""
        charge = self.charges[session_id]
        charge["amount_refunded"] += charge["amount"] if amount is None else amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return event("charge.refunded", charge)

    def dispute(self, session_id: str, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder disputed the charge: ``charge.dispute.created``."""
        charge = self.charges[session_id]
        charge["disputed"] = True
        dispute = {
            "id": "dp_" + random_alnum(24),
            "object": "dispute",
            "amount": charge["amount"],
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "livemode": False,
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        }
        return event("charge.dispute.created", dispute)

    def _charge(self, session: dict[str, Any]) -> dict[str, Any]:
        charge = self.charges.get(session["id"])
        if charge is None:
            charge = self.charges[session["id"]] = {
                "id": "ch_" + random_alnum(24),
                "object": "charge",
                "amount": session["amount_total"],
                "amount_captured": session["amount_total"],
                "amount_refunded": 0,
                "created": int(time.time()),
                "currency": session["currency"],
                "disputed": False,
                "livemode": False,
                "metadata": {},
                "paid": True,
                "payment_intent": session["payment_intent"],
                "refunded": False,
                "status": "succeeded",
            }
        return charge

    # -- deliveries -----------------------------------------------------------------------------

    def signed(
        self,
        evt: dict[str, Any],
        *,
        url: str | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[str, bytes, dict[str, str]]:
        """What Stripe would send for ``evt``: (url, body, headers with its signature)."""
        target = url or self.webhook_url
        if target is None:
            raise RuntimeError("FakeStripe.webhook_url is not set")
        body = orjson.dumps(evt)
        signature = sign(body, self.webhook_secret if secret is None else secret, timestamp)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "stripe-signature": signature,
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        return target, body, headers

    def deliver(self, evt: dict[str, Any], **how: Any) -> Delivery:
        """Sign ``evt`` and POST it (blocking) to :attr:`webhook_url`; ``how``: the ``url``,
        ``secret`` and ``timestamp`` to use instead (see :meth:`signed`)."""
        target, body, headers = self.signed(evt, **how)
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                delivery = Delivery(evt, response.status, response.read())
        except urllib.error.HTTPError as exc:
            delivery = Delivery(evt, exc.code, exc.read())
        self.deliveries.append(delivery)
        return delivery

    async def deliver_async(self, evt: dict[str, Any], **how: Any) -> Delivery:
        """:meth:`deliver` without blocking the event loop."""
        target, body, headers = self.signed(evt, **how)
        async with (
            aiohttp.ClientSession() as http,
            http.post(target, data=body, headers=headers) as response,
        ):
            delivery = Delivery(evt, response.status, await response.read())
        self.deliveries.append(delivery)
        return delivery

    def pay(self, session_id: str) -> Delivery:
        """Pay ``session_id`` by card and deliver ``checkout.session.completed``."""
        return self.deliver(self.complete(session_id))

    async def pay_async(self, session_id: str) -> Delivery:
        return await self.deliver_async(self.complete(session_id))

    # -- the API --------------------------------------------------------------------------------

    async def _answer(
        self, request: web.BaseRequest, parsed: Any, bad_json: bool, at: float
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith("/c/pay/"):
            return await self._page(request, path.removeprefix("/c/pay/"))
        try:
            self._authenticate(request)
            if self.default.fail_status is not None:
                raise StripeError(
                    self.default.fail_status, "An unknown error occurred", type="api_error"
                )
            if path == "/v1/checkout/sessions" and request.method == "POST":
                body = await request.read()
                return _json(self._create_session(parse_form(body.decode())))
            match = re.fullmatch(r"/v1/checkout/sessions/([^/]+)", path)
            if match and request.method == "GET":
                session = self.sessions.get(match.group(1))
                if session is None:
                    raise StripeError(
                        404,
                        f"No such checkout.session: '{match.group(1)}'",
                        "session",
                        code="resource_missing",
                    )
                return _json(session)
            raise StripeError(404, f"Unrecognized request URL ({request.method}: {path}).")
        except StripeError as exc:
            return _json(exc.body, exc.status)

    def _authenticate(self, request: web.BaseRequest) -> None:
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_"
                "SECRET_KEY').",
            )
        if self.api_key is not None and key != self.api_key:
            raise StripeError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")

    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in params:
            if name not in SESSION_PARAMS:
                raise StripeError(400, f"Received unknown parameter: {name}", name)
        if params.get("mode") != "payment":
            raise StripeError(
                400, "Missing required param: mode." if "mode" not in params else
                "This fake supports only `mode=payment`.", "mode",
            )  # fmt: skip
        for name in ("success_url", "cancel_url"):
            value = params.get(name)
            if name == "success_url" and value is None:
                raise StripeError(400, "Missing required param: success_url.", name)
            if value is not None and not str(value).startswith(("http://", "https://")):
                raise StripeError(400, "Not a valid URL", name)
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise StripeError(400, "Missing required param: line_items.", "line_items")
        total, currencies, stored = 0, set(), []
        for index, item in enumerate(items):
            at = f"line_items[{index}]"
            data = item.get("price_data") if isinstance(item, dict) else None
            if not isinstance(data, dict):
                raise StripeError(400, f"Missing required param: {at}[price_data].", at)
            currency = data.get("currency")
            if not currency:
                raise StripeError(400, "Missing required param: currency.", f"{at}[price_data]")
            currencies.add(currency)
            unit = _integer(data.get("unit_amount"), f"{at}[price_data][unit_amount]", minimum=0)
            quantity = _integer(item.get("quantity"), f"{at}[quantity]", minimum=1)
            product = data.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                raise StripeError(
                    400,
                    "Missing required param: product_data[name].",
                    f"{at}[price_data][product_data][name]",
                )
            total += unit * quantity
            stored.append({"name": product["name"], "unit_amount": unit, "quantity": quantity})
        if len(currencies) > 1:
            raise StripeError(400, "All line items must use the same currency.", "line_items")
        if total < 50:  # Stripe's minimum charge in USD
            raise StripeError(400, "The Checkout Session's total amount due must add up to at "
                              "least $0.50 usd", "line_items")  # fmt: skip
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict) or any(
            len(k) > 40 or not isinstance(v, str) or len(v) > 500 for k, v in metadata.items()
        ):
            raise StripeError(400, "Invalid metadata: keys up to 40, values up to 500 characters",
                              "metadata")  # fmt: skip
        session_id = f"cs_test_{random_alnum(58)}"
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currencies.pop(),
            "customer": None,
            "customer_email": params.get("customer_email"),
            "expires_at": now + 86_400,
            "livemode": False,
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,  # made when the customer pays (API 2022-08-01 and later)
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params["success_url"],
            "ui_mode": "hosted",
            "url": f"{self.base_url}/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        self.line_items[session_id] = stored
        return session

    # -- the hosted payment page ----------------------------------------------------------------

    async def _page(self, request: web.BaseRequest, session_id: str) -> web.StreamResponse:
        session = self.sessions.get(session_id)
        if session is None:
            return web.Response(status=404, text="Something went wrong: no such session")
        if request.method == "POST":
            if session["status"] == "open":
                evt = self.complete(session_id)
                if self.webhook_url:
                    await self.deliver_async(evt)
            target = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
            return web.Response(status=303, headers={"location": target})
        return web.Response(text=self._page_html(session), content_type="text/html")

    def _page_html(self, session: dict[str, Any]) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(item['name'])}</td>"
            f"<td>{_money(item['unit_amount'] * item['quantity'])}</td></tr>"
            for item in self.line_items[session["id"]]
        )
        if session["status"] != "open":
            action = "<p>This Checkout Session is no longer active.</p>"
        else:
            cancel = html.escape(session["cancel_url"] or "", quote=True)
            action = (
                f'<form method="post" action="/c/pay/{session["id"]}">'
                '<button type="submit" id="pay">Pay</button></form>'
                + (f'<a href="{cancel}" id="cancel">Cancel</a>' if cancel else "")
            )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Checkout (fake Stripe)"
            "</title></head><body><h1>Pay</h1><table>"
            f"{rows}<tr><th>Total</th><th id='total'>{_money(session['amount_total'])}</th>"
            f"</tr></table>{action}</body></html>"
        )


def _money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


def _integer(value: Any, param: str, *, minimum: int) -> int:
    if value is None:
        raise StripeError(400, f"Missing required param: {param}.", param)
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeError(400, f"Invalid integer: {value}", param)
    number = int(value)
    if number < minimum:
        raise StripeError(400, f"This value must be greater than or equal to {minimum}.", param)
    return number


def parse_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) as nested dicts and lists of strings."""
    root: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        parts = [m.group(1) or m.group(2) for m in _KEY_PART.finditer(key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={"request-id": "req_" + random_alnum(14), "stripe-version": API_VERSION},
    )
