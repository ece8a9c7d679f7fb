"""Service endpoints, no auth: liveness and readiness for probes and load balancers."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app, jsonify

from schemas.bridge import health_schema, readiness_schema

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving (says nothing about its dependencies)."""
    return jsonify(health_schema.dump({}))


@bp.get("/readyz")
def readyz() -> Response:
    """Ready for traffic: settings were valid at start (or the app would not exist) and
    Redis answers. The CRM and Finan are not checked: their outages are handled per
    request, and a probe must not spend the CRM's rate limit."""
    try:
        current_app.extensions["bridge"].redis.ping()
    except redis.RedisError:
        response = jsonify(readiness_schema.dump({"status": "unavailable", "redis": "unreachable"}))
        response.status_code = 503
        return response
    return jsonify(readiness_schema.dump({"status": "ok", "redis": "ok"}))
