"""The Flask app factory, the wiring of the bridge's parts, and the one error handler."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from bridge import logs, metrics
from bridge.clients.finan import FinanClient
from bridge.clients.tourwell import TourwellClient
from bridge.config import Settings, load_settings
from bridge.encryption import Cipher
from bridge.errors import BridgeError, RedisUnavailable
from bridge.idempotency import IdempotencyStore
from bridge.mapping import MappingConfig
from bridge.operations import InvoiceOperations
from bridge.records import RecordStore
from bridge.redis_connection import connect

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # DESIGN.md section 3: 413 above 1 MiB

# werkzeug's own errors, said the way the rest of the bridge says things.
_HTTP_MESSAGES = {
    404: "no such endpoint; the bridge's API is listed in its README",
    405: "this endpoint does not accept that method",
    413: f"the body is over {MAX_BODY_BYTES // 1024} KiB (1 MiB)",
}


@dataclass(frozen=True)
class Services:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    redis: redis.Redis
    records: RecordStore
    idempotency: IdempotencyStore
    operations: InvoiceOperations


def build_services(settings: Settings, connection: redis.Redis | None = None) -> Services:
    logs.register_secrets(  # for web processes and queue workers alike
        *settings.crm_tokens,
        *settings.admin_tokens,
        settings.tourwell_api_token,
        settings.provider_secret_key,
        *settings.encryption_keys,
    )
    connection = connection or connect(settings)
    records = RecordStore(connection, settings.tourwell_base_url, Cipher(settings.encryption_keys))
    return Services(
        settings=settings,
        redis=connection,
        records=records,
        idempotency=IdempotencyStore(connection, settings.idempotency_ttl),
        operations=InvoiceOperations(
            connection,
            records,
            TourwellClient(settings, connection),
            FinanClient(settings),
            MappingConfig.from_settings(settings),
            settings.retry_schedule,
        ),
    )


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """Build the app from ``settings`` (default: the environment, validated)."""
    settings = settings or load_settings(os.environ)
    if not logging.getLogger().handlers:  # gunicorn (deploy/gunicorn.conf.py) sets its own
        logs.configure_logging()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # keep envelopes in the order their schemas declare
    app.json.ensure_ascii = False  # Vietnamese names stay readable in answers and logs
    services = build_services(settings, connection)
    app.extensions["bridge"] = services

    from bridge import admin_page
    from bridge.admin_api import bp as admin_api
    from bridge.api import bp as crm_api
    from bridge.health import bp as health
    from bridge.openapi import bp as openapi

    app.register_blueprint(crm_api)
    app.register_blueprint(admin_api)
    app.register_blueprint(health)
    app.register_blueprint(openapi)
    admin_page.init_app(app)  # the status page at /admin/, its session and CSRF protection
    logs.init_app(app)
    metrics.init_app(app, metrics.RedisStateCollector(services.redis, services.records))
    _register_error_handlers(app)
    return app


def error_response(status: int, message: str, errors: dict[str, Any] | None = None) -> Response:
    response = jsonify({"success": False, "message": message, "errors": errors or {}})
    response.status_code = status
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BridgeError)
    def bridge_error(exc: BridgeError) -> Response:
        metrics.count_refusal(exc)
        logs.note_refusal(exc.reason)
        response = error_response(exc.status, exc.message, exc.errors)
        response.headers.update(exc.headers())
        return response

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
