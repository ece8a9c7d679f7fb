"""Service endpoints, no auth: liveness and readiness for probes and load balancers."""

from __future__ import annotations

import redis
from flask import Response, current_app, jsonify

from bridge.web.openapi import REQUEST_ID_HEADERS, SERVICE_TAG, Blueprint
from schemas.bridge import HealthSchema, ReadinessSchema, health_schema, readiness_schema

bp = Blueprint("health", __name__, tag=SERVICE_TAG)


@bp.get("/healthz")
@bp.doc(
    operationId="getHealth",
    summary="Liveness: the process is serving",
    security=[],
    parameters=["RequestId"],
)
@bp.response(200, HealthSchema, description="Alive.", headers=REQUEST_ID_HEADERS)
def healthz() -> Response:
    """The process is alive and serving (says nothing about its dependencies)."""
    return jsonify(health_schema.dump({}))


@bp.get("/readyz")
@bp.doc(
    operationId="getReadiness",
    summary="Readiness: settings were valid at start and Redis answers",
    security=[],
    parameters=["RequestId"],
)
@bp.response(200, ReadinessSchema, description="Ready.", headers=REQUEST_ID_HEADERS)
@bp.alt_response(
    503, schema=ReadinessSchema, description="Redis does not answer.", headers=REQUEST_ID_HEADERS
)
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
