"""``GET /metrics`` (no auth, Prometheus text format) and the count of every request."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from flask_smorest import Api
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bridge.observability.metrics import (
    KNOWN_METHODS,
    REQUEST_DURATION,
    REQUESTS,
    UNMATCHED_ENDPOINT,
    scrape_registry,
)
from bridge.web.openapi import REQUEST_ID_HEADERS, SERVICE_TAG, Blueprint

bp = Blueprint("metrics", __name__, tag=SERVICE_TAG)

_METRICS = "Prometheus text format (or OpenMetrics, if asked for in Accept)."


@bp.get("/metrics")
@bp.doc(
    operationId="getMetrics", summary="Prometheus metrics", security=[], parameters=["RequestId"]
)
@bp.response(
    200,
    {"type": "string"},
    content_type="text/plain",
    description=_METRICS,
    headers=REQUEST_ID_HEADERS,
)
@bp.alt_response(
    200,
    schema={"type": "string"},
    content_type="application/openmetrics-text",
    description=_METRICS,
    headers=REQUEST_ID_HEADERS,
)
def metrics() -> Response:
    """Prometheus text format (or the newer format a scraper asks for in ``Accept``)."""
    registry = scrape_registry(current_app.extensions.get("bridge_metrics"))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)


def init_app(app: Flask, api: Api, state: Collector | None = None) -> None:
    """Serve /metrics (documented in ``api``) and count every request by its URL rule and
    status.

    A request's duration runs from ``g.request_started``, which
    ``bridge.web.request_logging.init_app`` sets for its own closing line (``create_app``
    calls it first); without it, a request is counted but not timed.
    """
    app.extensions["bridge_metrics"] = state
    api.register_blueprint(bp)

    @app.after_request
    def count_request(response: Response) -> Response:
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else UNMATCHED_ENDPOINT
        method = request.method if request.method in KNOWN_METHODS else "other"
        REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            REQUEST_DURATION.labels(endpoint, method).observe(time.perf_counter() - started)
        return response
