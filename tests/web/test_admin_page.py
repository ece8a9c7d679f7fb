"""The status page at /admin/ through Flask's test client: login, session cookie, CSRF,
what it shows (escaped), and its buttons, against a real Redis and the stand-ins."""

from __future__ import annotations

import re

import pytest
from helpers import ADMIN_TOKEN, csrf_token, finan_puts, issue, make_failed, run_worker

from bridge.config import load_settings
from bridge.store.records import Event, Record, fingerprint, provider_invoice_id
from bridge.web.app import create_app


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=f"{ADMIN_TOKEN},second-admin-token")


def log_in(client, token=ADMIN_TOKEN, next_path=""):
    form = client.get("/admin/login").get_data(as_text=True)
    return client.post(
        "/admin/login",
        data={"csrf_token": csrf_token(form), "token": token, "next": next_path},
    )


@pytest.fixture
def operator(client):
    assert log_in(client).status_code == 303
    return client


def page(client, path) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


# --- logging in ---


def test_pages_need_a_login_and_come_back_after_it(client):
    response = client.get("/admin/invoice/17?x=1")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")
    logged = log_in(client, next_path="/admin/?state=failed")
    assert (logged.status_code, logged.headers["Location"]) == (303, "/admin/?state=failed")
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("next_path", ["/admin/\r\nX-Evil: 1", "/admin/\x00", "/admin/\t"])
def test_a_next_path_with_a_control_character_goes_to_the_index(client, next_path):
    logged = log_in(client, next_path=next_path)
    assert (logged.status_code, logged.headers["Location"]) == (303, "/admin/")


def test_the_session_cookie_is_httponly_strict_and_limited_to_the_page(client):
    response = log_in(client)

    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("bridge_admin=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http here


def test_the_session_is_opened_only_under_the_pages_path(app):
    from flask import session

    seen = {}

    @app.get("/administrators")  # shares the page's prefix, not its cookie path
    def beside_the_page():
        seen["null"] = app.session_interface.is_null_session(session)
        return "ok"

    client = app.test_client()
    log_in(client)
    client.set_cookie("bridge_admin", client.get_cookie("bridge_admin", path="/admin").value)

    assert client.get("/administrators").status_code == 200
    assert seen["null"] is True  # the cookie was sent, but this is not the page
    assert client.get("/admin/").status_code == 200  # the page still reads its session


def test_the_session_cookie_is_secure_behind_tls(client):
    form = client.get("/admin/login", base_url="https://localhost").get_data(as_text=True)
    response = client.post(
        "/admin/login",
        base_url="https://localhost",
        data={"csrf_token": csrf_token(form), "token": ADMIN_TOKEN},
        headers={"Referer": "https://localhost/admin/login"},  # checked over https
    )

    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize("token", ["wrong", "test-crm-token", ""])
def test_a_wrong_or_crm_token_does_not_log_in(client, token):
    response = log_in(client, token)

    assert response.status_code == 401
    assert "BRIDGE_ADMIN_TOKENS" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_forms_without_the_csrf_token_are_refused(operator, crm_headers, finan):
    make_failed(operator, crm_headers, finan, 20)

    refused = operator.post("/admin/invoice/20/resync", data={})
    forged = operator.post("/admin/invoice/20/resync", data={"csrf_token": "forged"})

    assert refused.status_code == 403 and forged.status_code == 403
    assert len(finan_puts(finan)) == 1  # nothing was re-sent
    assert operator.get("/admin/").status_code == 302  # and the session is gone


def test_removing_a_token_ends_its_sessions(environ, redis):
    app = create_app(load_settings({**environ, "BRIDGE_ADMIN_TOKENS": ADMIN_TOKEN}), redis)
    client = app.test_client()
    assert log_in(client).status_code == 303
    cookie = client.get_cookie("bridge_admin", path="/admin")

    rotated = create_app(load_settings({**environ, "BRIDGE_ADMIN_TOKENS": "new-token"}), redis)
    other = rotated.test_client()
    other.set_cookie("bridge_admin", cookie.value, path="/admin")

    assert other.get("/admin/").status_code == 302


def test_logging_out_ends_the_session(operator):
    form = page(operator, "/admin/")

    response = operator.post("/admin/logout", data={"csrf_token": csrf_token(form)})

    assert response.status_code == 303
    assert operator.get("/admin/").status_code == 302


# --- what it shows ---


def test_the_page_shows_counts_and_a_searchable_table(operator, crm_headers, finan):
    for invoice_id in (17, 18):
        assert issue(operator, crm_headers, invoice_id).status_code == 201
    make_failed(operator, crm_headers, finan, 20)

    everything = page(operator, "/admin/")
    failed = page(operator, "/admin/?state=failed&q=")
    searched = page(operator, "/admin/?q=hd018")

    assert re.search(r"<strong>2</strong>issued", everything)
    assert re.search(r"<strong>1</strong>failed", everything)
    assert "104001: invalid invoice" in failed
    assert 'href="/admin/invoice/20"' in failed and 'href="/admin/invoice/17"' not in failed
    assert 'href="/admin/invoice/18"' in searched and 'href="/admin/invoice/17"' not in searched
    assert "Re-sync all 1 failed" in everything
    assert operator.get("/admin/?state=bogus").status_code == 422


def test_paging_links_keep_the_page_size_and_a_unicode_digit_finds_nothing(operator, crm_headers):
    for invoice_id in (17, 18, 19):
        assert issue(operator, crm_headers, invoice_id).status_code == 201

    first = page(operator, "/admin/?per_page=2")
    second = page(operator, "/admin/?per_page=2&page=2")
    searched = page(operator, "/admin/?q=%C2%B2")  # "²": a digit to str.isdigit, not to int

    assert 'href="/admin/?per_page=2&amp;page=2"' in first
    assert 'href="/admin/invoice/17"' in second and 'href="/admin/invoice/19"' not in second
    assert 'href="/admin/invoice/' not in searched
    assert 'href="/admin/?page=2"' not in page(operator, "/admin/")  # one page: no link


def test_an_invoice_shows_its_history_and_last_body(operator, crm_headers):
    issue(operator, crm_headers, 17)

    html = page(operator, "/admin/invoice/17")

    assert "Invoice 17 · HD017" in html
    assert "&#34;reference_code&#34;: &#34;HD017&#34;" in html  # escaped quotes
    assert "<td>issue</td><td>crm</td>" in html
    assert "Force re-sync" in html and "Preview" in html
    assert operator.get("/admin/invoice/999").status_code == 404


def test_everything_shown_is_escaped(operator, app, redis):
    store = app.extensions["bridge"].records
    record = Record(17, provider_invoice_id("http://x", 17), state="failed")
    record.code = "<script>alert(1)</script>"
    record.last_error = {"code": 104001, "message": '<img src=x onerror="alert(2)">'}
    record.last_body = '{"customer": {"name": "<b>Lan</b>"}}'
    record.fingerprint = fingerprint(record.last_body)  # Finan accepted that body before
    store.save(record, Event("issue", "crm", "failed", "<i>bad</i>", 104001))

    listing = page(operator, "/admin/")
    detail = page(operator, "/admin/invoice/17")

    for html in (listing, detail):
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
        assert "<img" not in html
    assert "&lt;b&gt;Lan&lt;/b&gt;" in detail and "&lt;i&gt;bad&lt;/i&gt;" in detail
    response = operator.get("/admin/invoice/17")
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


# --- the buttons ---


def test_preview_shows_the_diff_and_sends_nothing(operator, crm_headers, finan, tourwell):
    issue(operator, crm_headers, 17)
    tourwell.state.invoices[17]["request_info"]["company_address"] = "<1 Lê Lợi>"

    html = page(operator, "/admin/invoice/17/preview")

    assert "A re-sync would send this invoice: Finan holds a different version" in html
    assert '<span class="add">+    &#34;address&#34;: &#34;&lt;1 Lê Lợi&gt;&#34;' in html
    assert len(finan_puts(finan)) == 1


def test_resync_and_force_buttons(operator, crm_headers, finan, redis):
    make_failed(operator, crm_headers, finan, 20)
    form = page(operator, "/admin/invoice/20")

    done = operator.post("/admin/invoice/20/resync", data={"csrf_token": csrf_token(form)})
    unchanged = operator.post("/admin/invoice/20/resync", data={"csrf_token": csrf_token(form)})
    forced = operator.post(  # confirm=1: a force re-sync is confirmed first (on purpose)
        "/admin/invoice/20/resync",
        data={"csrf_token": csrf_token(form), "force": "1", "confirm": "1"},
    )

    assert done.status_code == 303 and done.headers["Location"] == "/admin/invoice/20"
    assert unchanged.status_code == 303 and forced.status_code == 303
    assert [r["outcome"] for r in finan_puts(finan)] == ["fault:client_error", "created", "updated"]
    html = page(operator, "/admin/invoice/20")
    assert 'class="state state-issued"' in html
    assert "Invoice re-synced" in html  # the last flashed message (the forced one)


def test_a_rejected_resync_is_said_on_the_page(operator, crm_headers, finan):
    make_failed(operator, crm_headers, finan, 20)
    finan.state.fail_next("client_error")
    form = page(operator, "/admin/invoice/20")

    operator.post("/admin/invoice/20/resync", data={"csrf_token": csrf_token(form)})

    assert "Re-sync did not go through" in page(operator, "/admin/invoice/20")


def test_bulk_resync_of_failed_from_the_page(operator, crm_headers, finan, redis):
    for invoice_id in (18, 20):
        make_failed(operator, crm_headers, finan, invoice_id)
    form = page(operator, "/admin/")

    asked = operator.post(  # a bulk re-sync lists the invoices and asks first (on purpose)
        "/admin/bulk-resync", data={"csrf_token": csrf_token(form), "state": "failed"}
    )
    ids = re.search(r'name="ids" value="([^"]*)"', asked.get_data(as_text=True)).group(1)
    response = operator.post(
        "/admin/bulk-resync",
        data={"csrf_token": csrf_token(form), "state": "failed", "confirm": "1", "ids": ids},
    )

    assert response.status_code == 303
    batch_page = response.headers["Location"]
    assert "running" in page(operator, batch_page)
    run_worker(operator.application)
    html = page(operator, batch_page)
    assert "<strong>2 / 2</strong>" in html and "finished" in html
    assert re.search(r"<strong>0</strong>failed", page(operator, "/admin/"))
    bad = operator.post(
        "/admin/bulk-resync", data={"csrf_token": csrf_token(form), "state": "issued"}
    )
    assert bad.status_code == 422
