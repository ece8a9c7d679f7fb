"""``GET /metrics`` (no auth, Prometheus text format) and the count of every request."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bridge.observability.metrics import (
    KNOWN_METHODS,
    REQUEST_DURATION,
    REQUESTS,
    UNMATCHED_ENDPOINT,
    scrape_registry,
)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format (or the newer format a scraper asks for in ``Accept``)."""
    registry = scrape_registry(current_app.extensions.get("bridge_metrics"))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)


def init_app(app: Flask, state: Collector | None = None) -> None:
    """Serve /metrics and count every request by its URL rule and status.

    A request's duration runs from ``g.request_started``, which
    ``bridge.web.request_logging.init_app`` sets for its own closing line (``create_app``
    calls it first); without it, a request is counted but not timed.
    """
    app.extensions["bridge_metrics"] = state
    app.register_blueprint(bp)

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
