"""The operator's day on the status page, in Vietnamese and in English, in a real browser.

A live bridge (a real HTTP server thread on loopback) talks to the stand-ins. Five invoices
are issued: two of them refused by Finan (failed), one never confirmed (dead: Finan
unavailable until its retry schedule, of zeros, ran out in the worker). The operator "lan"
(a named entry of BRIDGE_ADMIN_TOKENS), once with a Vietnamese browser and once with an
English one: logs in and is named in the header, finds an invoice by its customer's name
(typed without accents in Vietnamese), reads it (customer, items, totals in đồng, times in
Vietnam time), compares it (the CRM now, what Finan last accepted, what Finan holds now,
the differing cells marked), previews a re-sync, re-syncs it (one invoice, then every dead
one in bulk through the confirmation page and its warning, in Vietnamese; every failed one
in bulk in English), exports the list as CSV (checked cell by cell), switches language and
logs out; the session cookie it had is then refused. On every page axe-core (the
axe.min.js that ``axe-playwright-python`` ships) must find no WCAG 2.0/2.1 A or AA
violation, and a screenshot of every page in each language is saved under
``test-artifacts/operator-day/``.

Chromium is Debian's, installed when missing (``ensure_chromium``, shared with
test_admin_browser.py). It never skips.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from helpers import ADMIN_TOKEN, run_worker
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_admin_browser import CHROMIUM_ARGS, crm_issue, ensure_chromium

from bridge.config import load_settings
from bridge.sandbox.loopback import LoopbackServer
from bridge.web.app import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "operator-day"
WCAG_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
VN_TIME = re.compile(r"^\d\d/\d\d/20\d\d \d\d:\d\d$")
UTC_INSTANT = re.compile(r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CSV_HEADERS = {
    "vi": ["Mã hóa đơn", "Số hóa đơn", "Khách hàng", "Tổng tiền", "Trạng thái", "Cập nhật lúc"],
    "en": ["Invoice id", "Code", "Customer", "Total", "State", "Updated at"],
}
# What each language calls things on the page (the catalog's words, checked as the
# operator reads them).
WORDS = {
    "vi": {
        "login": "Đăng nhập",
        "logout": "Đăng xuất",
        "search": "Tìm kiếm",
        "invoices": "Hóa đơn",
        "customer": "Khách hàng",
        "failed": "bị từ chối",
        "issued": "đã phát hành",
        "resynced": "Đã đồng bộ lại hóa đơn",
        "preview": "Finan đã có đúng nội dung này",
        "other": "English",
        "logged_in": "Đăng nhập: lan",
        "dead_warning": "Hãy kiểm tra trên CRM trước.",
    },
    "en": {
        "login": "Log in",
        "logout": "Log out",
        "search": "Search",
        "invoices": "Invoices",
        "customer": "Customer",
        "failed": "failed",
        "issued": "issued",
        "resynced": "Invoice re-synced",
        "preview": "Finan already holds exactly this",
        "other": "Tiếng Việt",
        "logged_in": "Logged in as lan",
        "dead_warning": "Check the CRM first.",
    },
}
# Who re-synced, in an invoice's history: "operator (lan)".
BY_LAN = re.compile(r"\(lan\)")
BROWSER_LOCALES = {"vi": "vi-VN", "en": "en-US"}
_axe = Axe()


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
    settings = load_settings(
        {
            **environ,
            "BRIDGE_ADMIN_TOKENS": f"lan={ADMIN_TOKEN}",  # a named operator
            "BRIDGE_RETRY_SCHEDULE": "0,0,0",  # queued attempts due at once: run_worker
        }
    )
    app = create_app(settings, redis)
    with LoopbackServer(app) as server:
        server.bridge_app = app  # for run_worker and the records
        yield server


def check(page: Page, lang: str, name: str) -> None:
    """The page is in ``lang``, axe finds no WCAG A/AA violation, and it is photographed."""
    expect(page.locator("html")).to_have_attribute("lang", lang)
    results = _axe.run(
        page,
        options={"runOnly": {"type": "tag", "values": WCAG_A_AA}, "resultTypes": ["violations"]},
    )
    assert results.violations_count == 0, f"{lang} {name}:\n{results.generate_report()}"
    page.screenshot(path=ARTIFACTS / f"{lang}-{name}.png", full_page=True)


def operator_day(browser: Browser, url: str, lang: str, finan, app) -> None:
    words = WORDS[lang]
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale=BROWSER_LOCALES[lang]
    )
    page = context.new_page()

    # Log in: the browser's language decides (no switch used yet).
    page.goto(f"{url}/admin/")
    expect(page.locator("h1")).to_have_text(words["login"])
    check(page, lang, "1-login")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[data-action=login]")
    expect(page.locator("h1")).to_have_text(words["invoices"])
    expect(page.locator("header .operator")).to_have_text(words["logged_in"])
    expect(page.locator("a[data-state=failed] strong")).to_have_text("2" if lang == "vi" else "1")
    check(page, lang, "2-invoices")

    # Find an invoice by its customer: without accents in Vietnamese, a company in English.
    query, invoice_id, code = (
        ("tran thi mai", 20, "HD020") if lang == "vi" else ("sao việt", 18, "HD018")
    )
    page.fill("input[name=q]", query)
    page.click("button[data-action=search]")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.customer")).to_have_text(
        "Trần Thị Mai" if lang == "vi" else "Công ty TNHH Phần mềm Sao Việt"
    )
    changed = rows.first.locator("time")
    assert VN_TIME.match(changed.inner_text()), changed.inner_text()
    assert UTC_INSTANT.match(changed.get_attribute("datetime"))
    assert changed.get_attribute("title") == changed.get_attribute("datetime") + " UTC"
    check(page, lang, "3-search-by-customer")

    # Read it.
    page.click(f"tbody a:text-is('{invoice_id}')")
    expect(page.locator("h1")).to_contain_text(code)
    if lang == "vi":  # failed: Finan accepted nothing yet, so no items to read
        expect(page.locator("h1 .state")).to_have_text(words["failed"])
    else:
        expect(page.locator("table.items tbody tr").first).to_be_visible()
        total = page.locator("table.items td.total").inner_text()
        assert re.fullmatch(r"\d{1,3}(,\d{3})*\u00a0₫", total), total
        expect(page.locator("dd.customer")).to_have_text("Công ty TNHH Phần mềm Sao Việt")
        expect(page.locator("details pre")).to_be_hidden()  # the JSON, one click away
        page.click("details summary >> nth=-1")
        expect(page.locator("details pre").last).to_be_visible()
    check(page, lang, "4-invoice")

    # Compare: the CRM now, what Finan last accepted, what Finan holds now (asked on demand).
    page.click("a[data-action=compare]")
    expect(page.locator("table.compare thead th")).to_have_count(4)
    crm_customer = page.locator("tr[data-field='customer.name'] td[data-side=crm]")
    if lang == "vi":  # failed: Finan never accepted it; the CRM's side is still read
        expect(crm_customer).to_have_text("Trần Thị Mai")
        expect(page.locator("tr.problems td[data-side=accepted]")).not_to_be_empty()
    else:  # someone changed the price of its first item in Finan
        expect(crm_customer).to_have_text("Công ty TNHH Phần mềm Sao Việt")
        changed = page.locator("tr[data-field='items.0.price'] td[data-side=finan]")
        expect(changed).to_have_class(re.compile(r"\bdiffers\b"))
        expect(changed).to_contain_text("1\u00a0₫")
        expect(page.locator("tr[data-field='items.0.price'] td.differs")).to_have_count(1)
        expect(page.locator("details[data-side=finan] pre")).to_be_hidden()  # one click away
        page.click("details[data-side=finan] summary")
        expect(page.locator("details[data-side=finan] pre")).to_be_visible()
    check(page, lang, "4b-compare")
    page.goto(f"{url}/admin/invoice/{invoice_id}")

    # Preview.
    page.click("a[data-action=preview]")
    expect(page.locator("p.flash[role=status]")).to_be_visible()
    if lang == "en":
        expect(page.locator("p.flash")).to_contain_text(words["preview"])
    check(page, lang, "5-preview")

    # Re-sync one (vi: the failed invoice), or every failed one in bulk (en).
    if lang == "vi":
        page.click("button[data-action=resync]")
        expect(page.locator(".flash-ok")).to_contain_text(words["resynced"])
        expect(page.locator("h1 .state")).to_have_text(words["issued"])
        expect(page.locator("table.items tbody tr").first).to_be_visible()
        total = page.locator("table.items td.total").inner_text()
        assert re.fullmatch(r"\d{1,3}(\.\d{3})*\u00a0₫", total), total
        expect(page.locator("table.history tbody")).to_contain_text(BY_LAN)
        check(page, lang, "6-resynced")

        # Every dead invoice, in bulk: the confirmation page warns to check the CRM first.
        page.goto(f"{url}/admin/")
        page.click("button[data-bulk=dead]")
        expect(page.locator("[role=alert]")).to_contain_text(words["dead_warning"])
        expect(page.locator("main table tbody tr")).to_have_count(1)
        expect(page.locator("main table tbody tr td").first).to_have_text("19")
        check(page, lang, "6b-bulk-dead-confirm")
        page.click("button[data-action=bulk-confirmed]")
        expect(page).to_have_url(re.compile(r"/admin/batch/"))
        run_worker(app)  # the batch runs in the worker
        page.reload()
        expect(page.locator("dl.fields")).to_contain_text("lan (status page)")  # who started it
        check(page, lang, "6c-bulk-dead-resync")
        page.goto(f"{url}/admin/invoice/19")
        expect(page.locator("h1 .state")).to_have_text(words["issued"])
    else:
        page.goto(f"{url}/admin/")
        page.click("button[data-bulk=failed]")
        confirm = page.locator("button[data-action=bulk-confirmed]")
        if confirm.count():  # the bulk re-sync lists the invoices and asks first
            expect(page.locator("main table tbody tr")).to_have_count(1)
            check(page, lang, "6a-bulk-confirm")
            confirm.click()
        expect(page).to_have_url(re.compile(r"/admin/batch/"))
        check(page, lang, "6-bulk-resync")

    # Export the list (all of it) as CSV: what the list shows, in the page's language.
    page.goto(f"{url}/admin/")
    href = page.locator("a.csv").get_attribute("href")
    answer = context.request.get(f"{url}{href}")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/csv")
    raw = answer.body()
    assert raw.startswith("\ufeff".encode())  # Excel reads the Vietnamese right
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert table[0] == CSV_HEADERS[lang]
    by_id = {row[0]: row for row in table[1:]}
    assert sorted(by_id) == ["17", "18", "19", "20", "21"]
    assert by_id["17"][1:3] == ["HD017", "Phạm Văn Long"]
    assert by_id["18"][2] == "Công ty TNHH Phần mềm Sao Việt"
    assert all(VN_TIME.match(row[5]) for row in table[1:])
    assert by_id["20"][4] == words["issued"]
    # The filters go with it: a day long past lists nothing.
    page.fill("input[name=from]", "2020-01-01")
    page.fill("input[name=to]", "2020-01-31")
    page.click("button[data-action=search]")
    # The list is the page's first table (en: the invoice found out of sync is listed below).
    expect(page.locator("main table").first.locator("tbody tr")).to_have_count(1)  # "none"
    href = page.locator("a.csv").get_attribute("href")
    assert "from=2020-01-01" in href and "to=2020-01-31" in href
    past = context.request.get(f"{url}{href}").body().decode("utf-8-sig").splitlines()
    assert past == [",".join(CSV_HEADERS[lang])]
    check(page, lang, "7-filtered-by-date")

    # The switch: the other language, kept for the next page; then back.
    page.click(f"a:text-is('{words['other']}')")
    other = "en" if lang == "vi" else "vi"
    expect(page.locator("html")).to_have_attribute("lang", other)
    page.goto(f"{url}/admin/")
    expect(page.locator("html")).to_have_attribute("lang", other)
    page.goto(f"{url}/admin/?lang={lang}")
    expect(page.locator("html")).to_have_attribute("lang", lang)

    # Log out; the session cookie the browser had is refused afterwards.
    (old_cookie,) = [c for c in context.cookies() if c["name"] == "bridge_admin"]
    page.click(f"button:text-is('{words['logout']}')")
    expect(page.locator("h1")).to_have_text(words["login"])
    check(page, lang, "8-logged-out")
    context.close()
    replayed = requests.get(
        f"{url}/admin/",
        cookies={old_cookie["name"]: old_cookie["value"]},
        allow_redirects=False,
        timeout=30,
    )
    assert replayed.status_code == 302
    assert replayed.headers["Location"].startswith("/admin/login")
    fresh = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale=BROWSER_LOCALES[lang]
    )
    fresh.add_cookies([old_cookie])
    page = fresh.new_page()
    page.goto(f"{url}/admin/invoice/18")
    expect(page.locator("h1")).to_have_text(words["login"])
    expect(page.locator("header .operator")).to_have_count(0)
    check(page, lang, "9-old-cookie-refused")
    fresh.close()


def test_the_operators_day_in_vietnamese_and_english(browser: Browser, live_bridge, finan):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = live_bridge.url
    app = live_bridge.bridge_app
    for invoice_id in (17, 18):
        assert crm_issue(url, invoice_id).status_code == 201
    for invoice_id in (20, 21):
        finan.state.fail_next("client_error")
        assert crm_issue(url, invoice_id).status_code == 502  # Finan refused it: failed
    # Dead: Finan unavailable for the three inline tries and the three queued attempts (of
    # three tries each) of the schedule.
    finan.state.fail_next("unavailable", count=12)
    assert crm_issue(url, 19).status_code == 202  # queued
    run_worker(app)
    assert app.extensions["bridge"].records.get(19).state == "dead"
    assert finan.state.pending_faults() == []
    # Someone changes the price of invoice 18's first item in Finan (the comparison shows it).
    held = app.extensions["bridge"].records.get(18).provider_invoice_id
    finan.state.change(held, {"items.0.price": 1})

    operator_day(browser, url, "vi", finan, app)
    operator_day(browser, url, "en", finan, app)

    shots = sorted(ARTIFACTS.glob("*.png"))
    assert len(shots) >= 23, shots
    assert all(shot.stat().st_size > 5000 for shot in shots)
