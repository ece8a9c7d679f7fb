"""The status page in a real browser: headless Chromium (Debian's) driven by Playwright.

A live bridge (a real HTTP server thread on loopback) talks to the stand-ins. An invoice is
made ``failed`` (Finan's stand-in refuses it once); the browser logs in with an admin token,
searches for the invoice, opens it, clicks "Re-sync" and sees it become issued. Screenshots
of each step (a laptop and a phone width) are saved under ``test-artifacts/admin-browser/``.

Chromium comes from Debian's ``chromium`` package: the set-up installs it with apt-get when
it is missing (Playwright's own browser download is not used). It never skips: without a
browser the test fails, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from helpers import ADMIN_TOKEN, CRM_TOKEN
from playwright.sync_api import Browser, expect, sync_playwright

from bridge.config import load_settings
from bridge.sandbox.loopback import LoopbackServer
from bridge.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin-browser"
# Flags for a closed network and a root user: no sandbox (root), no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_TIMEOUT_SECONDS = 900


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get if missing; fail (never skip) if it can't."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            f"{CHROMIUM} is missing and this user can't install it: run "
            "'apt-get install -y chromium' as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
        )
        if done.returncode != 0:
            pytest.fail(f"'{' '.join(command)}' failed:\n{done.stdout[-2000:]}{done.stderr}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is not there")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def live_bridge(environ, redis):
    settings = load_settings({**environ, "BRIDGE_ADMIN_TOKENS": ADMIN_TOKEN})
    with LoopbackServer(create_app(settings, redis)) as server:
        yield server


def crm_issue(bridge_url: str, invoice_id: int) -> requests.Response:
    return requests.post(
        f"{bridge_url}/api/v1/invoices/{invoice_id}/issue",
        headers={"Authorization": f"Bearer {CRM_TOKEN}"},
        timeout=30,
    )


def test_an_operator_finds_a_failed_invoice_and_resyncs_it(browser: Browser, live_bridge, finan):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = live_bridge.url
    for invoice_id in (17, 18, 19):
        assert crm_issue(url, invoice_id).status_code == 201
    finan.state.fail_next("client_error")
    assert crm_issue(url, 20).status_code == 502  # Finan refused it: failed

    # An English browser (the page is Vietnamese by default: tests/web/test_operator_day.py).
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(f"{url}/admin/")
    expect(page).to_have_url(f"{url}/admin/login?next=/admin/")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button:text-is('Log in')")
    expect(page.locator("a[data-state=failed] strong")).to_have_text("1")
    expect(page.locator("a[data-state=issued] strong")).to_have_text("3")
    page.screenshot(path=ARTIFACTS / "1-status.png", full_page=True)

    cookie = next(c for c in context.cookies() if c["name"] == "bridge_admin")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

    page.fill("input[name=q]", "hd020")
    page.select_option("select[name=state]", "failed")
    page.click("button:text-is('Search')")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("invalid invoice")
    page.click("tbody a:text-is('20')")
    expect(page.locator("h1 .state")).to_have_text("failed")
    expect(page.locator("dd.error-text")).to_contain_text("104001: invalid invoice")
    page.screenshot(path=ARTIFACTS / "2-failed-invoice.png", full_page=True)

    page.click("button:text-is('Re-sync')")
    expect(page.locator(".flash-ok")).to_contain_text("Invoice re-synced")
    expect(page.locator("h1 .state")).to_have_text("issued")
    expect(page.locator("table.history tbody tr").first).to_contain_text("operator")
    page.screenshot(path=ARTIFACTS / "3-resynced.png", full_page=True)
    assert [r["outcome"] for r in finan.state.requests if r["method"] == "PUT"][-1] == "created"

    page.goto(f"{url}/admin/")
    expect(page.locator("a[data-state=failed] strong")).to_have_text("0")
    expect(page.locator("a[data-state=issued] strong")).to_have_text("4")
    context.close()

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, locale="en-US"
    )
    phone_page = phone.new_page()
    phone_page.goto(f"{url}/admin/login")
    phone_page.fill("#token", ADMIN_TOKEN)
    phone_page.click("button:text-is('Log in')")
    expect(phone_page.locator("a[data-state=issued] strong")).to_have_text("4")
    # Readable on a phone: the page itself does not scroll sideways (the table may).
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    phone_page.screenshot(path=ARTIFACTS / "4-status-phone.png", full_page=True)
    phone.close()
    for name in ("1-status", "2-failed-invoice", "3-resynced", "4-status-phone"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 5000
