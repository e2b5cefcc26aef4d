"""The dashboard in a real headless browser: Debian's Chromium (/usr/bin/chromium, `make browser` installs it) driven
by Playwright for Python, against a paper daemon subprocess on the built-in market (60x from a fixed session,
semi-live, a strategy tuned to signal often: the settings of tests/test_operator_e2e.py).

Log in (a wrong token first), see the state; a manual order placed with the CLI shows up as a position; a pending
signal's Approve click becomes an order; Halt through its prompt and confirm dialogs; log out and in again; the
"disconnected" banner once the daemon is gone. Screenshots (desktop and phone widths) go to test-artifacts/.
Playwright never downloads a browser here: `executable_path` is the system Chromium.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Dialog, Page, expect, sync_playwright

from trader.control.dashboard import SESSION_COOKIE

import helpers
from helpers import CONTROL_TOKEN, Daemon, daemon_env, next_pending, ok, open_positions, order_by_id, wait_until

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START = "2026-11-25T09:25"  # a Wednesday session; the clock runs from here at 60x
WAIT_MS = 60_000  # a loaded 2-core machine runs the daemon, the CLI and Chromium at once


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONTROL__TOKEN", CONTROL_TOKEN)  # what the CLI in this process reads


def test_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make browser` installs Debian's chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []  # script errors and CSP violations seen by the browser

    def watch_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    dialogs: list[tuple[str, str]] = []

    def answer_dialog(dialog: Dialog) -> None:
        dialogs.append((dialog.type, dialog.message))
        if dialog.type == "prompt":
            dialog.accept("halted by the browser test")
        else:
            dialog.accept()

    env = daemon_env(tmp_path / "data", TRADER_CONTROL__APPROVAL_EXPIRY_SECONDS="3600")  # a minute of wall time
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900}, timeout=WAIT_MS)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.on("console", watch_console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("dialog", answer_dialog)
            with helpers.running_daemon(tmp_path / "data", ["--speed", "60", "--start", START,
                                                            "--no-auto-execution"], env) as daemon:
                drive(page, daemon)
                # Logged out, the cookie no longer opens the API; logging in again does.
                page.get_by_test_id("logout").click()
                expect(page.get_by_test_id("login")).to_be_visible()
                assert context.request.get(daemon.url + "/status").status == 401
                log_in(page, CONTROL_TOKEN)
                expect(page.get_by_test_id("state")).to_have_text("HALTED")
            # The daemon has stopped: the page says so instead of showing old figures as if they were live.
            expect(page.get_by_test_id("banner")).to_contain_text("Disconnected")
            page.screenshot(path=str(ARTIFACTS / "dashboard-disconnected.png"))
        finally:
            context.close()
    assert not problems, problems
    assert [kind for kind, _ in dialogs] == ["prompt", "confirm", "confirm"], dialogs  # halt's two, flatten's one
    assert not any(CONTROL_TOKEN in str(line) for line in daemon.lines), "the token reached the daemon's log"


def log_in(page: Page, token: str) -> None:
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("login-button").click()


def drive(page: Page, daemon: Daemon) -> None:
    page.goto(daemon.url + "/")
    expect(page.get_by_test_id("login")).to_be_visible()
    expect(page.get_by_test_id("dashboard")).to_be_hidden()

    # A wrong token: the API's message, no cookie.
    log_in(page, "wrong-token-0123456789")
    expect(page.get_by_test_id("login-error")).to_contain_text("wrong token")
    page.screenshot(path=str(ARTIFACTS / "dashboard-login.png"))
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]

    log_in(page, CONTROL_TOKEN)
    expect(page.get_by_test_id("dashboard")).to_be_visible()
    expect(page.get_by_test_id("state")).to_have_text("ACTIVE")
    expect(page.get_by_test_id("mode")).to_have_text("paper")
    expect(page.get_by_test_id("health")).not_to_be_empty()
    expect(page.get_by_test_id("equity")).to_contain_text("₹")
    # Times for people are IST, whatever zone the phone is set to (the browser here is UTC).
    expect(page.get_by_test_id("updated")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d IST$"))
    # Rupees with Indian grouping (lakhs, crores), two decimals, the sign before the ₹.
    shown = page.evaluate("[1234567.891, -999.5, 100000, 0.004, -0.004, 123456789.5].map(inr)")
    assert shown == ["₹12,34,567.89", "-₹999.50", "₹1,00,000.00", "₹0.00", "₹0.00", "₹12,34,56,789.50"], shown
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/", cookie
    assert CONTROL_TOKEN not in cookie["value"]
    hours = (cookie["expires"] - time.time()) / 3600
    assert 11.5 < hours <= 12.01, cookie  # control.session_hours (12 by default)
    # The page's script cannot read the cookie (HttpOnly), and nothing the page holds is the token.
    assert page.evaluate("document.cookie") == ""
    assert CONTROL_TOKEN not in page.content()

    # A manual order through the CLI: a position row and an order row, with Indian-grouped rupees.
    placed = ok(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")
    symbol = placed["order"]["tradingsymbol"]
    row = page.locator(f'[data-testid="position-row"][data-symbol="{symbol}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("₹")
    expect(page.locator(f'[data-testid="order-row"][data-intent-id="{placed["order"]["intent_id"]}"]')) \
        .to_contain_text("COMPLETE")

    # A pending semi-live signal: its Approve button sends it to the risk gate, and it becomes an order.
    seen: set[str] = set()
    pending: dict[str, Any] = next_pending(daemon, seen)
    intent_id = pending["intent_id"]
    approve = page.get_by_test_id(f"approve-{intent_id}")
    expect(approve).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})  # on a phone the buttons fit on the screen, unscrolled
    box = approve.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390, box
    page.get_by_test_id("signals-card").screenshot(path=str(ARTIFACTS / "dashboard-signal-phone.png"))
    page.set_viewport_size({"width": 1280, "height": 900})
    approve.click()
    expect(page.get_by_test_id("message")).to_contain_text(f"Approve {intent_id}")
    order = wait_until("the approved order", lambda: order_by_id(daemon, intent_id))
    assert order["purpose"] == "ENTRY" and order["status"] not in ("REFUSED", "REJECTED"), order
    approval = next(a for a in ok(daemon, "signals")["decided"] if a["intent_id"] == intent_id)
    assert approval["status"] == "APPROVED", approval
    expect(page.locator(f'[data-testid="order-row"][data-intent-id="{intent_id}"]')).to_be_visible()

    # Halt: a prompt for the reason, then a confirm; the state turns HALTED on the page and in the daemon.
    page.get_by_test_id("halt").click()
    expect(page.get_by_test_id("state")).to_have_text("HALTED")
    expect(page.get_by_test_id("message")).to_contain_text("HALTED")
    status = ok(daemon, "status")
    assert status["trading_state"] == "HALTED" and "halted by the browser test" in status["state_reason"], status
    expect(page.get_by_test_id("chart").locator("svg")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # Flatten (allowed while halted) closes every position; the page empties its table.
    page.get_by_test_id("flatten").click()
    expect(page.get_by_test_id("message")).to_contain_text("Flatten:")
    wait_until("flat", lambda: open_positions(daemon) == [])
    expect(page.locator('[data-testid="position-row"]')).to_have_count(0)
    # An act the daemon refuses shows the API's own message: an approval while HALTED names the state check.
    refused = next_pending(daemon, seen)["intent_id"]
    page.get_by_test_id(f"approve-{refused}").click()
    expect(page.get_by_test_id("message")).to_contain_text(f"Approve {refused} failed")
    expect(page.get_by_test_id("message")).to_contain_text("HALTED")
    expect(page.get_by_test_id("message")).to_have_class("message error")
