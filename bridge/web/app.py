"""The Flask app factory: the blueprints, logging, metrics and the one error handler."""

from __future__ import annotations

import logging
import os

import redis
from flask import Flask, Response
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from bridge.config import Settings, load_settings
from bridge.errors import BridgeError, RedisUnavailable
from bridge.integrations.http import DEFAULT_SLEEP, Sleep
from bridge.observability import logs, metrics
from bridge.observability.state_gauges import RedisStateCollector
from bridge.services import build_services
from bridge.web import (
    admin_compare,  # noqa: F401  (its page, on admin_page's blueprint)
    admin_page,
    auth_limits,
    metrics_endpoint,
    openapi,
    request_logging,
)
from bridge.web.admin_api import bp as admin_api
from bridge.web.crm_api import bp as crm_api
from bridge.web.health import bp as health
from bridge.web.http import error_response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # docs/contract/http.md#body-limits: 413 above 1 MiB

# werkzeug's own errors, said the way the rest of the bridge says things.
_HTTP_MESSAGES = {
    404: "no such endpoint; the bridge's API is listed in its README",
    405: "this endpoint does not accept that method",
    413: f"the body is over {MAX_BODY_BYTES // 1024} KiB (1 MiB)",
}

# On every JSON answer (the page's own headers include them): nothing kept by a cache or a
# browser, and the declared type is the type (docs/contract/http.md#headers).
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class AsciiIdConverter(IntegerConverter):
    """``<int:...>`` in the bridge's paths: ids in ASCII digits, from 1, without leading
    zeros; one spelling per id, every other is 404. (werkzeug's own takes any Unicode
    digit: ``/api/v1/invoices/١٧`` was invoice 17.)"""

    regex = r"[1-9][0-9]*"


def id_parameter_schema(converter: AsciiIdConverter) -> dict[str, object]:
    return {"type": "integer", "minimum": 1}


def create_app(
    settings: Settings | None = None,
    connection: redis.Redis | None = None,
    retry_sleep: Sleep = DEFAULT_SLEEP,
) -> Flask:
    """Build the app from ``settings`` (default: the environment, validated). ``retry_sleep``
    spends the waits between inline retries (``time.sleep``; tests record them instead)."""
    settings = settings or load_settings(os.environ)
    if not logging.getLogger().handlers:  # gunicorn (deploy/gunicorn.conf.py) sets its own
        logs.configure_logging()
    app = Flask(__name__)
    app.url_map.converters["int"] = AsciiIdConverter  # before any route is added
    if settings.trusted_proxies:  # the client's address from X-Forwarded-For, that deep
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # keep envelopes in the order their schemas declare
    app.json.ensure_ascii = False  # Vietnamese names stay readable in answers and logs
    services = build_services(settings, connection, retry_sleep)
    app.extensions["bridge"] = services

    # Each blueprint through the API object, which documents its views (GET /openapi.json).
    api = openapi.init_app(app)
    api.register_converter(AsciiIdConverter, id_parameter_schema)
    api.register_blueprint(crm_api)
    api.register_blueprint(admin_api)
    api.register_blueprint(health)
    admin_page.init_app(app, api)  # the status page at /admin/, its session and CSRF protection
    auth_limits.init_app(app, settings, services.redis)  # failed tokens and logins: 429s
    request_logging.init_app(app)
    metrics_endpoint.init_app(app, api, RedisStateCollector(services.redis, services.records))
    _register_error_handlers(app)  # the only ones: flask-smorest's is not registered

    @app.after_request
    def json_headers(response: Response) -> Response:
        if response.mimetype == "application/json":
            for name, value in JSON_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BridgeError)
    def bridge_error(exc: BridgeError) -> Response:
        metrics.count_refusal(exc)
        request_logging.note_refusal(exc.reason)
        response = error_response(exc.status, exc.message, exc.errors)
        response.headers.update(exc.headers())
        return response

    @app.errorhandler(RateLimitExceeded)
    def too_many_failures(exc: RateLimitExceeded) -> Response:
        return bridge_error(auth_limits.refusal(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, _HTTP_MESSAGES.get(status, exc.description or ""))
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(redis.RedisError)
    def redis_error(exc: redis.RedisError) -> Response:
        # Fail closed: without Redis there are no locks or records, so nothing is sent.
        log.warning("Redis unavailable: %s", type(exc).__name__)
        return bridge_error(
            RedisUnavailable("the bridge's Redis is unavailable; try again shortly", retry_after=5)
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # A bug: log it with its trace for us, and answer without one.
        log.exception("unhandled error")
        return error_response(500, "internal error; the bridge's operators have the details")
