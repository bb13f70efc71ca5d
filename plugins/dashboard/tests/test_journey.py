"""The whole user journey in a real browser: headless Chromium (Debian's, driven by Playwright)
against the real router with a fake OpenAI upstream and the fake Stripe (hosted Checkout page,
signed webhook). Sign up → create keys → call with the openai SDK → buy credits → see the
balance and the usage chart → revoke a key (401) → delete the account (sign-in fails, keys dead).

A screenshot of every page is saved under ``test-artifacts/dashboard/`` (``$LMROUTER_ARTIFACTS``
to move it). Every page is also checked for unlabelled form fields in the accessibility tree, and
the usage page for horizontal overflow on a phone-sized screen."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_stripe.testing import FakeStripe

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("LMROUTER_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"
EMAIL = "journey@example.com"
STRIPE_KEY = "sk_test_dashboard_journey"
WEBHOOK_SECRET = "whsec_dashboard_journey"
HELLO = [{"role": "user", "content": "Hello!"}]
# an unlabelled field shows in the accessibility tree as its role with no name after it
UNNAMED = re.compile(r"^\s*- (textbox|combobox|checkbox|spinbutton|searchbox)\s*(\[.*\])?:?\s*$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # expect(…) waits for its condition; its 5 s default is a clock, and a busy machine's
    # Chromium can take longer to render a page. The bound only catches what never comes.
    expect.set_options(timeout=60_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[FakeStripe]:
    fake = FakeStripe(api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET)
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def shop(
    kit, tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, stripe_fake: FakeStripe
) -> Iterator[RouterServer]:
    """The router with the stripe plugin configured against the fake Stripe."""
    stripe = {
        "secret_key": STRIPE_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "api_base": stripe_fake.base_url,
    }
    server = kit.start(tmp_path_factory.mktemp("journey"), fake.base_url, stripe=stripe)
    stripe_fake.webhook_url = f"{server.url}/v1/billing/stripe/webhook"
    try:
        yield server
    finally:
        server.stop()


# WCAG 2 contrast of every element with text of its own (SVG charts aside): at least 4.5:1,
# 3:1 for large text. The background is the nearest ancestor's that is not transparent.
CONTRAST = """() => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("svg")) continue;
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(behind(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${el.tagName} "${text}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""


class Pages:
    """Each page visited: a screenshot, and a check of its accessibility tree."""

    def __init__(self, page: Page, shots: list[str]) -> None:
        self.page = page
        self.shots = shots  # shared by every browser tab of the test: one numbering
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def saw(self, name: str) -> None:
        tree = self.page.locator("body").aria_snapshot()
        unnamed = [line for line in tree.splitlines() if UNNAMED.match(line)]
        assert not unnamed, (name, unnamed)
        low = self.page.evaluate(CONTRAST)
        assert not low, (name, low)
        self.shots.append(name)
        path = ARTIFACTS / f"{len(self.shots):02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)


def test_the_whole_journey_in_a_browser(
    kit, shop: RouterServer, browser: Browser, stripe_fake: FakeStripe
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    for stale in ARTIFACTS.glob("*.png"):  # only this run's pictures
        stale.unlink(missing_ok=True)  # another test process in this folder may be at it too
    shots: list[str] = []
    pages = Pages(page, shots)
    base = f"{shop.url}/dashboard"

    # -- signing up -----------------------------------------------------------------------------
    page.goto(shop.url)  # the address the server prints first
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name="help@example.com")).to_be_visible()
    pages.saw("sign-in")
    # keyboard order: the skip link first, then the form top to bottom
    focused = []
    for _ in range(10):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate("document.activeElement.id || document.activeElement.innerText")
        )
    expected = ["Skip to content", "LMRouter", "Sign in", "Sign up", "email", "password"]
    assert focused[:7] == [*expected, "Sign in"], focused  # the last: the form's button
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password", exact=False).first.fill("short")
    page.get_by_label("Password again").fill("short")
    page.get_by_label("I accept the").check()
    # the browser's own check stops a too-short password; the server's rules are tested too
    page.locator("#password").evaluate("e => e.removeAttribute('minlength')")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("alert")).to_contain_text("at least 12 characters")
    pages.saw("sign-up-refused")
    page.locator("#password").fill(kit.PASSWORD)
    page.get_by_label("Password again").fill(kit.PASSWORD)
    page.get_by_label("I accept the").check()
    page.get_by_role("button", name="Sign up").click()

    # -- keys -----------------------------------------------------------------------------------
    expect(page).to_have_url(f"{base}/keys")
    pages.saw("keys-empty")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    first = page.get_by_label(re.compile("Your new key")).input_value()
    assert re.fullmatch(r"sk-lmr-[A-Za-z0-9_-]{32}", first)
    expect(page.locator("tbody")).to_contain_text(first[:12] + "…")
    expect(page.locator("tbody")).to_contain_text("laptop")
    pages.saw("key-created")
    page.get_by_label("Name").fill("server")
    page.get_by_role("button", name="Create key").click()
    second = page.get_by_label(re.compile("Your new key")).input_value()
    page.goto(f"{base}/keys")  # the secret is never shown again
    assert first not in page.content() and second not in page.content()
    expect(page.get_by_role("button", name=re.compile("Revoke key"))).to_have_count(2)

    # -- the key works, but there are no credits yet ---------------------------------------------
    sdk = kit.sdk(shop, first)
    with pytest.raises(openai.APIStatusError) as broke:
        sdk.chat.completions.create(model="gpt-x", messages=HELLO)
    assert broke.value.status_code == 402

    # -- buying credits through Stripe Checkout ----------------------------------------------------
    page.get_by_role("link", name="Credits").click()
    expect(page.locator("#balance")).to_have_text("$0")
    expect(page.locator("#fee")).to_contain_text("$20.00 of credit costs $21.31")
    pages.saw("credits-empty")
    amount = page.get_by_label(re.compile("Amount in US dollars"))
    amount.evaluate("e => e.removeAttribute('min')")  # past the browser's own check
    amount.fill("2")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("alert")).to_contain_text("between 5.00 and 1000.00 USD")
    page.get_by_label(re.compile("Amount in US dollars")).fill("20")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(re.escape(stripe_fake.base_url)))
    pages.saw("stripe-checkout")
    page.get_by_role("button", name="Pay").click()
    expect(page).to_have_url(re.compile(r"/dashboard/credits\?checkout=success&session_id=cs_"))
    expect(page.get_by_role("status").first).to_contain_text("Payment received: $20.00")
    expect(page.locator("#balance")).to_have_text("$20")
    expect(page.locator("tbody")).to_contain_text("purchase")
    pages.saw("credits-bought")

    # -- using the key, and seeing it on the usage page --------------------------------------------
    for model in ("gpt-x", "gpt-x", "gpt-y"):
        reply = sdk.chat.completions.create(model=model, messages=HELLO)
        assert reply.usage.prompt_tokens == 1000
    kit.sdk(shop, second).chat.completions.create(model="gpt-y", messages=HELLO)
    requests = page.locator("table").last.locator("tbody tr")

    def usage_shown() -> bool:
        # the spend and the request rows are written in the background, not always in the
        # same batch: the page is static, so reload until both are there (the bound only
        # catches what never comes)
        page.goto(f"{base}/usage")
        return "$0.0044" in page.content() and requests.count() == 5

    kit.within(60, usage_shown)
    expect(page.locator("#spent")).to_have_text("$0.0044")  # 4 x (1000 x $1 + 50 x $2) / 1M
    chart = page.get_by_role("img", name="Daily spend by model")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() == 2  # today's bar: one segment per model
    expect(page.get_by_role("img", name="Daily tokens by model")).to_be_visible()
    expect(page.locator(".legend")).to_contain_text("gpt-x")
    expect(requests).to_have_count(5)  # the refused one too, with its status
    expect(requests.last).to_contain_text("402")
    pages.saw("usage")
    page.get_by_label("Key").select_option(label=f"server ({second[:12]}…)")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#spent")).to_have_text("$0.0011")
    page.goto(f"{base}/usage?model=gpt-y")
    expect(page.locator("#spent")).to_have_text("$0.0022")
    pages.saw("usage-filtered")
    page.goto(f"{base}/credits")
    expect(page.locator("#balance")).to_have_text("$19.9956")

    # -- readable on a phone -----------------------------------------------------------------------
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    phone.add_cookies(context.cookies())
    small = phone.new_page()
    small.goto(f"{base}/usage")
    overflow = small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the usage page is {overflow}px wider than a phone"
    small.screenshot(path=ARTIFACTS / "phone-usage.png", full_page=True)
    phone.close()

    # -- other pages -------------------------------------------------------------------------------
    page.goto(base)
    expect(page.locator("#balance")).to_have_text("$19.9956")
    pages.saw("overview")
    page.get_by_role("link", name="Provider keys").click()
    page.get_by_label("Your up key").fill("sk-my-own-up-key")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    assert "sk-my-own-up-key" not in page.content()
    pages.saw("provider-keys")
    page.get_by_role("button", name="Remove your up key").click()
    mistyped = page.goto(f"{base}/kyes")
    assert mistyped is not None and mistyped.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    pages.saw("not-found")
    page.goto(f"{base}/terms")
    expect(page.locator(".terms")).to_contain_text("Use the router kindly.")
    pages.saw("terms")

    # -- revoking a key ----------------------------------------------------------------------------
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("button", name=f"Revoke key {first[:12]}").click()
    expect(page.get_by_role("heading", name="Revoke the key laptop?")).to_be_visible()
    pages.saw("key-revoke-confirm")
    page.get_by_role("link", name="Cancel").click()  # nothing happened yet
    sdk.chat.completions.create(model="gpt-x", messages=HELLO)
    page.get_by_role("button", name=f"Revoke key {first[:12]}").click()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    expect(page.locator("tbody")).to_contain_text("revoked")
    pages.saw("key-revoked")
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-x", messages=HELLO)
    kit.sdk(shop, second).chat.completions.create(model="gpt-x", messages=HELLO)

    # -- the operator's view -----------------------------------------------------------------------
    admin = browser.new_context()
    operator = admin.new_page()
    operator_pages = Pages(operator, shots)
    operator.goto(f"{base}/operator")
    operator.get_by_label("Operator key").fill(kit.OPERATOR)
    operator.get_by_role("button", name="Sign in").click()
    expect(operator.locator("tbody")).to_contain_text(EMAIL)
    operator_pages.saw("admin-users")
    operator.get_by_role("button", name=f"Suspend {EMAIL}").click()
    expect(operator.get_by_role("heading", name=f"Suspend {EMAIL}?")).to_be_visible()
    operator_pages.saw("admin-suspend-confirm")
    operator.get_by_role("link", name="Cancel").click()
    expect(operator.locator("tbody")).to_contain_text("active")
    kit.sdk(shop, second).chat.completions.create(model="gpt-x", messages=HELLO)
    operator.get_by_role("link", name="Recent errors").click()
    expect(operator.locator("tbody")).to_contain_text("insufficient_credits")
    operator_pages.saw("admin-errors")
    admin.close()

    # -- deleting the account ----------------------------------------------------------------------
    page.get_by_role("link", name="Account").click()
    pages.saw("account")
    page.get_by_label("Yes, delete my account").check()
    page.get_by_label("Your password").fill("not my password")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The password is wrong: the account is not deleted."
    )
    page.get_by_label("Yes, delete my account").check()
    page.get_by_label("Your password").fill(kit.PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login\?done=deleted"))
    expect(page.get_by_role("status")).to_contain_text("Your account is deleted")
    pages.saw("deleted")
    with pytest.raises(openai.AuthenticationError):
        kit.sdk(shop, second).chat.completions.create(model="gpt-x", messages=HELLO)
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password").fill(kit.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match an account")
    pages.saw("sign-in-after-delete")
    page.goto(f"{base}/keys")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    context.close()
    assert len(list(ARTIFACTS.glob("*.png"))) == len(shots) + 1 >= 22  # and the phone's


WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
def no_stripe(
    kit, tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI
) -> Iterator[RouterServer]:
    """A router where buying is off and each new account gets a sign-up grant."""
    server = kit.start(
        tmp_path_factory.mktemp("no-stripe"), fake.base_url, credits={"signup_grant_usd": 2.5}
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_without_stripe_a_new_user_has_the_signup_grant_and_knows_whom_to_ask(
    kit, no_stripe: RouterServer, browser: Browser, width: str
) -> None:
    context = browser.new_context(viewport=WIDTHS[width], is_mobile=width == "phone")
    page = context.new_page()
    pages = Pages(page, [])
    base = f"{no_stripe.url}/dashboard"
    page.goto(f"{base}/signup")
    page.get_by_label("E-mail address").fill(f"granted-{width}@example.com")
    page.locator("#password").fill(kit.PASSWORD)
    page.get_by_label("Password again").fill(kit.PASSWORD)
    page.get_by_label("I accept the").check()
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(f"{base}/keys")
    key = page.get_by_label("Name")
    key.fill("first")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label(re.compile("Your new key")).input_value()
    pages.saw(f"keys-{width}")
    # each SDK, with the base URL the page gives for it
    openai_base = page.locator("#openai-base").inner_text()
    reply = openai.OpenAI(base_url=openai_base, api_key=secret).chat.completions.create(
        model="gpt-x", messages=HELLO
    )
    assert reply.choices[0].message.content  # the grant pays for the first call
    claude = anthropic.Anthropic(
        base_url=page.locator("#anthropic-base").inner_text(), api_key=secret
    )
    answer = claude.messages.create(model="gpt-x", max_tokens=50, messages=HELLO)
    assert answer.content[0].text

    page.goto(base)
    expect(page.get_by_role("link", name=re.compile("Buy credits"))).to_have_count(0)
    page.get_by_role("link", name="Your credits and how to get more").click()
    expect(page.get_by_role("heading", name="Buy credits")).to_have_count(0)
    expect(page.locator("#ask")).to_contain_text("Ask help@example.com for credits")
    expect(page.locator("tbody")).to_contain_text("grant (sign-up grant)")
    expect(page.locator("tbody")).to_contain_text("$2.5")
    pages.saw(f"credits-granted-{width}")
    page.goto(f"{base}/credits?checkout=success&session_id=cs_test_made_up")
    expect(page.get_by_text("Payment received")).to_have_count(0)
    context.close()


OVERFLOW = "document.documentElement.scrollWidth"  # a phone's window widens to the content
# the on-screen height of the charts' smallest text, and the token axis' labels
CHART_TEXT = """() => {
  const texts = [...document.querySelectorAll("svg.chart text")];
  return Math.min(...texts.map(t => t.getBoundingClientRect().height));
}"""
TOKEN_AXIS = """() => [...document.querySelectorAll("#chart-tokens-t ~ text")]
  .map(t => t.textContent).filter(t => !t.includes("-"))"""


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_a_phone_and_a_desktop(
    kit, no_stripe: RouterServer, browser: Browser, width: str
) -> None:
    context = browser.new_context(viewport=WIDTHS[width], is_mobile=width == "phone")
    page = context.new_page()
    pages = Pages(page, [])
    base = f"{no_stripe.url}/dashboard"
    email = f"fits-{width}@example.com"
    page.goto(f"{base}/signup")
    page.get_by_label("E-mail address").fill(email)
    page.locator("#password").fill(kit.PASSWORD)
    page.get_by_label("Password again").fill(kit.PASSWORD)
    page.get_by_label("I accept the").check()
    page.get_by_role("button", name="Sign up").click()

    def fits(name: str) -> None:
        wide = page.evaluate(OVERFLOW)
        assert wide <= WIDTHS[width]["width"], f"{name} is {wide}px wide on the {width} screen"
        pages.saw(f"{width}-{name}")

    page.goto(f"{base}/usage")  # no data yet
    assert page.evaluate(CHART_TEXT) >= 11, "chart text too small to read"
    assert page.evaluate(TOKEN_AXIS) == ["0", "1", "2", "3", "4"]
    fits("usage-empty")

    page.goto(f"{base}/keys")
    page.get_by_label("Name").fill("a name long enough to take some room")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label(re.compile("Your new key")).input_value()
    revoke = page.get_by_role("button", name=re.compile("Revoke key")).bounding_box()
    assert revoke is not None and revoke["x"] + revoke["width"] <= WIDTHS[width]["width"]
    fits("keys")

    sdk = kit.sdk(no_stripe, secret)
    sdk.chat.completions.create(model="gpt-x", messages=HELLO)
    with pytest.raises(openai.APIStatusError):
        sdk.chat.completions.create(model="broken", messages=HELLO)
    kit.within(5, lambda: page.goto(f"{base}/usage") and "gpt-x" in page.content())
    assert page.evaluate(CHART_TEXT) >= 11
    fits("usage")
    for name in ("credits", "byok", "account", ""):
        page.goto(f"{base}/{name}")
        fits(name or "overview")

    operator = browser.new_context(viewport=WIDTHS[width], is_mobile=width == "phone")
    page = operator.new_page()
    pages = Pages(page, [])
    page.goto(f"{base}/operator")
    page.get_by_label("Operator key").fill(kit.OPERATOR)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("tbody")).to_contain_text(email)
    fits("admin-users")
    page.goto(f"{base}/admin/errors")
    row = page.locator("tbody tr", has_text=email).first
    expect(row).to_contain_text("502")
    expect(page.locator("tbody")).not_to_contain_text("user:")  # callers by e-mail
    if width == "desktop":  # the whole table, its messages too, without scrolling its box
        box = page.locator(".scroll").first
        assert box.evaluate("e => e.scrollWidth - e.clientWidth") <= 0
    fits("admin-errors")
    operator.close()
    context.close()
