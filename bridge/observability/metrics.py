"""Prometheus metrics: what the bridge counts, and the registry a scrape reads.

Under gunicorn each worker is its own process, so counters are kept in files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) and a scrape adds up
every process's files. The variable must be set before ``prometheus_client`` is first
imported (``deploy/gunicorn.conf.py`` sees to it); without it (tests, a single process) the
default in-memory registry is used.

Queue depth and records by state are not counted as things happen: a collector
(``bridge.observability.state_gauges``) reads them from Redis at scrape time, so every
process answers the same and nothing drifts. ``GET /metrics`` is
``bridge.web.metrics_endpoint``.

Labels carry only fixed vocabularies (URL rules, statuses, outcomes, states), never a raw
path, an invoice id, a token or anything a caller sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bridge.errors import BridgeError, TotalsMismatch

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# The clients' read timeout is 10 s (bridge.integrations.http); the top buckets catch the slow tail.
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
FINAN_DETAIL_CALLS = Counter(
    "bridge_finan_detail_calls",
    "GET detail calls to Finan (what Finan holds: checks and reconciliation) by outcome, "
    "after the inline retries: found, not_found, rejected, unavailable, error (a bug).",
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

CRM_RATE_LIMIT = Counter(
    "bridge_crm_rate_limit",
    "Calls to the CRM that found the shared per-minute window full: waited (for a slot, "
    "then went ahead) or refused (no slot within the wait: the caller got CRM unavailable).",
    ["outcome"],
)

# Every label value known in advance starts at 0, so a rate or an alert on it has a series
# before the first event (increase(...{outcome="rejected"}[5m]) is 0, not absent).
FINAN_OUTCOMES = ("accepted", "rejected", "unavailable", "error")
FINAN_DETAIL_OUTCOMES = ("found", "not_found", "rejected", "unavailable", "error")
RETRY_SYSTEMS = ("finan", "tourwell")
CRM_RATE_LIMIT_OUTCOMES = ("waited", "refused")
for _outcome in FINAN_OUTCOMES:
    FINAN_CALLS.labels(_outcome)
for _outcome in FINAN_DETAIL_OUTCOMES:
    FINAN_DETAIL_CALLS.labels(_outcome)
for _system in RETRY_SYSTEMS:
    RETRIES.labels(_system)
for _outcome in CRM_RATE_LIMIT_OUTCOMES:
    CRM_RATE_LIMIT.labels(_outcome)

UNMATCHED_ENDPOINT = "unmatched"  # no URL rule matched (404, 405): never the raw path
# Any token is a valid HTTP method: others are counted together so a caller can't grow
# the number of series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_refusal(exc: BridgeError) -> None:
    """Count the refusals that have their own metric (called by the error handler)."""
    if isinstance(exc, TotalsMismatch):
        TOTALS_REFUSALS.inc()


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
