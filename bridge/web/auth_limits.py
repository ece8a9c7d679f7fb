"""Failed authentications, limited (docs/contract/http.md#too-many-failures).

A wrong or missing Bearer token on the CRM API or the admin API, and a wrong token on the
status page's login form, is a failure (``401``). Failures are counted per client address
and for the bridge as a whole (Flask-Limiter, fixed windows of a minute, in the bridge's
Redis); only failures count, so the CRM's rate of correct calls is never limited:

- per client (``BRIDGE_AUTH_FAILURES_PER_CLIENT_PER_MIN``, 10): once an address has had
  that many failures in the current minute, every authenticated request from it (the right
  token too: else the answers would tell an attacker which guess was right) is refused
  with ``429`` and ``Retry-After`` until the minute is over;
- overall (``BRIDGE_AUTH_FAILURES_PER_MIN``, 100): once the bridge has had that many
  failures in the minute, from any number of addresses, it refuses the same way every
  address that has not authenticated within the last day
  (``bridge/store/authenticated_clients.py``): the CRM and the operators on duty keep
  working through an attack spread over many addresses.

The client address is the connection's, or with ``BRIDGE_TRUSTED_PROXIES`` set, the one
werkzeug's ``ProxyFix`` takes from that many proxies' ``X-Forwarded-For`` (``app.py``).
Every shipped deploy (deploy/) sets it to 1; a request with ``X-Forwarded-For`` while it is
unset logs a warning, once per process: a proxy is in front, and its clients all count as
one address.
Without Redis the limits can't be checked, and the request is refused (``503``): a limit
that failed open would let the guessing go on.
"""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from bridge.config import Settings
from bridge.errors import TooManyFailures
from bridge.store.authenticated_clients import AuthenticatedClients
from bridge.store.connection import AUTH_LIMIT_PREFIX

log = logging.getLogger(__name__)

PER_CLIENT_MESSAGE = "too many failed tokens or logins from this address"
OVERALL_MESSAGE = "too many failed tokens or logins at the bridge"

# Every request of these blueprints authenticates with a Bearer token...
TOKEN_BLUEPRINTS = ("crm", "admin_api")
# ...and of this one, the POSTs: the login form (the page's other forms need a session).
LOGIN_BLUEPRINT = "admin_page"
LOGIN_ENDPOINT = "admin_page.login"


def failed(response: Response) -> bool:
    return response.status_code == 401


def authenticated(response: Response) -> bool:
    """A token matched in this request (``bridge.web.http.token_matched``: a Bearer token,
    or the login form's). A status alone proves nothing: Flask answers an OPTIONS 200
    without any token."""
    if response.status_code >= 500:  # perhaps Redis is down: nothing to remember then
        return False
    return bool(g.get("token_matched"))


def init_app(app: Flask, settings: Settings, connection: redis.Redis) -> Limiter:
    """Limit the failures of ``app``'s blueprints (call after registering them)."""
    clients = AuthenticatedClients(connection)
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri="redis://",
        storage_options={
            "connection_pool": connection.connection_pool,
            "key_prefix": AUTH_LIMIT_PREFIX,
        },
        strategy="fixed-window",  # a test is one GET: a correct call costs one round trip
        headers_enabled=False,  # no X-RateLimit-* on every answer; Retry-After on a 429
    )

    def limit(blueprint: Blueprint, methods: list[str] | None) -> None:
        limiter.shared_limit(
            f"{settings.auth_failures_per_client_per_min} per minute",
            scope="auth-failures",
            deduct_when=failed,
            methods=methods,
            error_message=PER_CLIENT_MESSAGE,
        )(blueprint)
        limiter.shared_limit(
            f"{settings.auth_failures_per_min} per minute",
            scope="auth-failures-overall",
            key_func=lambda: "all",
            deduct_when=failed,
            exempt_when=lambda: clients.known(get_remote_address()),
            methods=methods,
            error_message=OVERALL_MESSAGE,
        )(blueprint)

    for name in TOKEN_BLUEPRINTS:
        limit(app.blueprints[name], None)
    limit(app.blueprints[LOGIN_BLUEPRINT], ["POST"])

    @app.after_request
    def remember_authenticated(response: Response) -> Response:
        if request.blueprint and authenticated(response):
            clients.mark(get_remote_address())
        return response

    if not settings.trusted_proxies:
        warn_of_untrusted_proxy(app)

    app.extensions["bridge_auth_limiter"] = limiter
    return limiter


UNTRUSTED_PROXY_WARNING = (
    "a request came with X-Forwarded-For but BRIDGE_TRUSTED_PROXIES is not set: every "
    "client seems to be the proxy's address, so one client's failed logins lock out all "
    "(the CRM included); set BRIDGE_TRUSTED_PROXIES to the number of proxies in front "
    "(docs/deploy.md)"
)


def warn_of_untrusted_proxy(app: Flask) -> None:
    """Log a warning, once for ``app`` (a web process has one), at the first request
    that carries ``X-Forwarded-For`` while the header is ignored: a proxy stands in front,
    and the limits count all its clients as one address."""
    warned = False

    @app.before_request
    def warn_once() -> None:
        nonlocal warned
        if not warned and "X-Forwarded-For" in request.headers:
            warned = True
            log.warning(UNTRUSTED_PROXY_WARNING)


def refusal(exc: RateLimitExceeded) -> TooManyFailures:
    """The bridge's error for a breached limit, with the seconds until its window ends."""
    limiter: Limiter = current_app.extensions["bridge_auth_limiter"]
    breached = limiter.current_limit
    if breached is None:
        wait = 60
    else:  # reset_at is rounded up to the next second: never past the window's end
        wait = round(breached.reset_at - time.time())
        wait = max(1, min(wait, breached.limit.get_expiry()))
    return TooManyFailures(f"{exc.description}; try again in {wait} s", retry_after=wait)
