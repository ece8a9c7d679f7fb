"""The status page's sessions end: server-side in Redis (the cookie only a random id),
ended by logging out, by removing the token, by an idle timeout and by an absolute cap;
each tested with the attack that found it: a cookie saved before, replayed after."""

from __future__ import annotations

import re
import time

import pytest
from helpers import ADMIN_TOKEN, csrf_token

SESSION_KEYS = "bridge:admin_session:*"


def log_in(client, token=ADMIN_TOKEN):
    page = client.get("/admin/login").get_data(as_text=True)
    form = page[page.index('action="/admin/login"') :]  # not the header's logout form
    return client.post("/admin/login", data={"csrf_token": csrf_token(form), "token": token})


def saved_cookie(client) -> str:
    return client.get_cookie("bridge_admin", path="/admin").value


def replayed(app, cookie: str):
    """A fresh browser (the attacker's) that presents a saved cookie."""
    other = app.test_client()
    other.set_cookie("bridge_admin", cookie, path="/admin")
    return other


def wait_for(condition, what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def app(make_app):
    return make_app(BRIDGE_ADMIN_TOKENS=f"{ADMIN_TOKEN},second-admin-token")


@pytest.fixture
def client(app):
    return app.test_client()


def test_the_cookie_holds_only_a_random_id_and_the_session_is_in_redis(client, redis):
    assert log_in(client).status_code == 303
    cookie = saved_cookie(client)

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)  # 32 random bytes, nothing signed in it
    keys = [key.decode() for key in redis.scan_iter(SESSION_KEYS)]
    assert len(keys) == 1  # the anonymous session of the login form was replaced
    assert cookie not in keys[0] and cookie.encode() not in redis.get(keys[0])


def test_a_cookie_saved_before_logout_is_refused_after_it(app, client, redis):
    """The attack: an admin session cookie saved before logout still opened /admin/."""
    assert log_in(client).status_code == 303
    cookie = saved_cookie(client)
    assert replayed(app, cookie).get("/admin/").status_code == 200  # the copy works, for now

    form = client.get("/admin/").get_data(as_text=True)
    assert client.post("/admin/logout", data={"csrf_token": csrf_token(form)}).status_code == 303

    refused = replayed(app, cookie).get("/admin/")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/admin/login")
    assert list(redis.scan_iter(SESSION_KEYS)) == []


def test_logging_in_again_issues_a_new_id(app, client):
    """Session fixation: an id seen before a login is worth nothing after it, even the id
    of a live session (another operator logging in from the same browser). The login form
    itself opens no session (tests/web/test_security_review.py)."""
    assert log_in(client).status_code == 303
    before = saved_cookie(client)

    assert log_in(client, "second-admin-token").status_code == 303

    assert saved_cookie(client) != before
    assert replayed(app, before).get("/admin/").status_code == 302


def test_removing_the_token_ends_the_sessions_it_opened(make_app, redis):
    app = make_app(BRIDGE_ADMIN_TOKENS=f"{ADMIN_TOKEN},second-admin-token")
    first, second = app.test_client(), app.test_client()
    assert log_in(first).status_code == 303
    assert log_in(second, "second-admin-token").status_code == 303
    saved = saved_cookie(first), saved_cookie(second)

    without_first = make_app(BRIDGE_ADMIN_TOKENS="second-admin-token")

    assert replayed(without_first, saved[0]).get("/admin/").status_code == 302
    assert replayed(without_first, saved[1]).get("/admin/").status_code == 200
    # and the refused one is deleted, not only refused: putting the token back revives nothing
    assert replayed(app, saved[0]).get("/admin/").status_code == 302


def test_an_idle_session_ends(make_app, redis):
    app = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN, BRIDGE_ADMIN_SESSION_IDLE_MINUTES="0.02")
    client = app.test_client()
    assert log_in(client).status_code == 303
    cookie = saved_cookie(client)

    # Nothing is asked meanwhile (a request would renew it): the session's key expires.
    wait_for(lambda: not list(redis.scan_iter(SESSION_KEYS)), "the idle session to expire")

    assert replayed(app, cookie).get("/admin/").status_code == 302


def test_a_busy_session_ends_at_the_cap(make_app):
    app = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN, BRIDGE_ADMIN_SESSION_MAX_MINUTES="0.03")
    client = app.test_client()
    assert log_in(client).status_code == 303
    logged_in_at = time.monotonic()

    # Used without pause, the session still ends once 1.8 s have passed since the login.
    wait_for(lambda: client.get("/admin/").status_code == 302, "the session to reach its cap")

    assert time.monotonic() - logged_in_at >= 1.8 * 0.95


def test_the_default_timeouts_are_30_minutes_idle_and_8_hours_in_all(make_app, redis):
    app = make_app(BRIDGE_ADMIN_TOKENS=ADMIN_TOKEN)
    client = app.test_client()
    assert log_in(client).status_code == 303

    (key,) = redis.scan_iter(SESSION_KEYS)
    assert 29 * 60 < redis.pttl(key) / 1000 <= 30 * 60
    expires = client.get_cookie("bridge_admin", path="/admin").expires
    assert 8 * 3600 - 60 < expires.timestamp() - time.time() <= 8 * 3600


def test_csrf_still_guards_the_forms(client):
    assert log_in(client).status_code == 303

    assert client.post("/admin/logout", data={}).status_code == 403
    assert client.post("/admin/logout", data={"csrf_token": "forged"}).status_code == 403


def test_the_cookie_flags_are_kept(client):
    client.get("/admin/login")
    response = log_in(client)

    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http here (over https: test_admin_page.py)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf"])
def test_a_bad_timeout_setting_is_named(environ, value):
    from bridge.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as refused:
        load_settings({**environ, "BRIDGE_ADMIN_SESSION_IDLE_MINUTES": value})
    assert "BRIDGE_ADMIN_SESSION_IDLE_MINUTES" in refused.value.problems


def test_without_redis_the_page_is_503_and_the_login_too(environ):
    import redis as redis_lib

    from bridge.config import load_settings
    from bridge.web.app import create_app

    dead = redis_lib.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    app = create_app(load_settings({**environ, "BRIDGE_ADMIN_TOKENS": ADMIN_TOKEN}), dead)
    client = app.test_client()
    client.set_cookie("bridge_admin", "a" * 43, path="/admin")

    page = client.get("/admin/")
    form = client.get("/admin/login")

    assert page.status_code == 503 and form.status_code == 503
    assert "Redis" in page.get_data(as_text=True)
    # A first visit (no cookie yet): refused the same way, never a 500.
    assert app.test_client().get("/admin/login").status_code == 503
