"""Findings of a security review of the status page and the limits on failures, each
tested with the request that showed it."""

from __future__ import annotations

import logging
import re

import pytest
from helpers import ADMIN_TOKEN

from bridge.web import auth_limits

SESSION_KEYS = "bridge:admin_session:*"


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


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
