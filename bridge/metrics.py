"""Prometheus metrics: what the bridge counts, and ``GET /metrics`` (no auth, text format).

Under gunicorn each worker is its own process, so counters are kept in files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) and a scrape adds up
every process's files. The variable must be set before ``prometheus_client`` is first
imported (``deploy/gunicorn.conf.py`` sees to it); without it (tests, a single process) the
default in-memory registry is used.

Queue depth and records by state are not counted as things happen: a collector reads them
from Redis at scrape time, so every process answers the same and nothing drifts.

Labels carry only fixed vocabularies (URL rules, statuses, outcomes, states), never a raw
path, an invoice id, a token or anything a caller sent.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bridge.errors import BridgeError, TotalsMismatch
from bridge.queue import bridge_queue
from bridge.records import STATES, RecordStore

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# The clients' read timeout is 10 s (bridge.clients.http); the top buckets catch the slow tail.
FINAN_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)

REQUESTS = Counter(
    "bridge_http_requests",
    "HTTP requests answered, by endpoint (the URL rule), method and status.",
    ["endpoint", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "bridge_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint (the URL rule) and method.",
    ["endpoint", "method"],
)
FINAN_CALLS = Counter(
    "bridge_finan_calls",
    "update-invoice calls to Finan by outcome, after the inline retries: "
    "accepted, rejected (client-class code), unavailable, error (a bug).",
    ["outcome"],
)
FINAN_REQUEST_DURATION = Histogram(
    "bridge_finan_request_duration_seconds",
    "Time of each HTTP request to Finan (every inline try), answered or not.",
    buckets=FINAN_LATENCY_BUCKETS,
)
RETRIES = Counter(
    "bridge_inline_retries",
    "Inline retries of a call to an outside system (timeouts, resets, 429, server errors).",
    ["system"],
)
IDEMPOTENT_REPLAYS = Counter(
    "bridge_idempotent_replays",
    "Stored answers replayed for a repeated Idempotency-Key.",
)
TOTALS_REFUSALS = Counter(
    "bridge_totals_refusals",
    "Invoices refused (422) because the total Finan would compute differs from the CRM's.",
)

UNMATCHED_ENDPOINT = "unmatched"  # no URL rule matched (404, 405): never the raw path
# Any token is a valid HTTP method: others are counted together so a caller can't grow
# the number of series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_refusal(exc: BridgeError) -> None:
    """Count the refusals that have their own metric (called by the error handler)."""
    if isinstance(exc, TotalsMismatch):
        TOTALS_REFUSALS.inc()


class RedisStateCollector:
    """Queue depth and records by state, read from Redis when Prometheus scrapes."""

    def __init__(self, connection: redis.Redis, records: RecordStore) -> None:
        self._redis = connection
        self._records = records

    def collect(self) -> Iterator[Metric]:
        queue = bridge_queue(self._redis)
        try:
            # cleanup=False: RQ's registry clean-up writes (and may re-run jobs); a scrape
            # only reads.
            depth = {
                "queued": queue.count,
                "scheduled": queue.scheduled_job_registry.get_job_count(cleanup=False),
                "started": queue.started_job_registry.get_job_count(cleanup=False),
            }
            by_state = self._records.count_by_state()
        except redis.RedisError as exc:
            # The counters are still worth serving; the gap in these two shows the outage.
            log.warning("metrics: Redis unavailable for queue and record counts (%s)", exc)
            return
        jobs = GaugeMetricFamily(
            "bridge_queue_depth",
            "Jobs in the retry queue: queued (ready to run), scheduled (waiting for their "
            "retry time), started (running).",
            labels=["status"],
        )
        for status, count in depth.items():
            jobs.add_metric([status], count)
        yield jobs
        records = GaugeMetricFamily("bridge_records", "Invoice records by state.", labels=["state"])
        for state in STATES:
            records.add_metric([state], by_state.get(state, 0))
        yield records


class _DefaultRegistry:
    """The in-memory registry as one collector of a scrape's registry (single process)."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def scrape_registry(state: Collector | None) -> CollectorRegistry:
    """Everything one scrape shows: this process's or all processes' counters, plus state."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    if state is not None:
        registry.register(state)
    return registry


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format (or the newer format a scraper asks for in ``Accept``)."""
    registry = scrape_registry(current_app.extensions.get("bridge_metrics"))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)


def init_app(app: Flask, state: Collector | None = None) -> None:
    """Serve /metrics and count every request by its URL rule and status.

    A request's duration runs from ``g.request_started``, which ``bridge.logs.init_app``
    sets for its own closing line (``create_app`` calls it first); without it, a request is
    counted but not timed.
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
